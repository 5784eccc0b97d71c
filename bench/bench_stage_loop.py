"""The detect stage's loop on one core, with Kafka and Elasticsearch replaced by answers that cost nothing.

``bench_e2e.py`` measures the whole pipeline against the real stack, where the host's noise moves the figures by
+-10%. This one measures only the pipeline's own per-record work in the stage thread, as ``siem run`` does it, with
the runner the service builds (``build_detect_runner``): ``StageRunner`` polls pre-built records, the real
``DetectStage`` parses, matches the project's rules and builds the bulk actions and alert messages, the real
``BulkSink`` builds each request body (inline), and the offset tracker acknowledges. The fakes: a consumer that
hands out the records in poll batches, a transport that answers 201 for every document, a producer that drops the
messages. Kafka's record decoding and ``send`` (~12 and ~5 µs per record, measured in session 8), the correlate
stage and the HTTP client come on top in the running pipeline.

Records: the same mix as ``bench_e2e.py`` (Panther's CloudTrail test records, 1 in 100 firing a rule). Figures:
the stage alone (``DetectStage.process`` in a loop, the floor of this loop) and the whole loop, both in µs per
record, best of ``--rounds`` after a warm-up round. ``bench_cpu_budget.py`` measured what the 80% end-to-end
target allows for the whole pipeline: about 60 µs of CPU per document.

    taskset -c 1 .venv/bin/python bench/bench_stage_loop.py [--events 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in bench/ from importing the helper modules
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_e2e import build_actions, build_detect_stage, make_settings, raw_topic  # noqa: E402
from bench_e2e import parse_args as e2e_args  # noqa: E402
from e2e_support import benchmark_records, panther_cloudtrail_records  # noqa: E402

from correlation.detection.engine import RuleSetHolder  # noqa: E402
from indexing.bulk import BulkSink, ItemStatus  # noqa: E402
from ingest.kafka_io import Partition  # noqa: E402
from ingest.service import build_detect_runner  # noqa: E402
from parsers.base import SourceRecord  # noqa: E402
from siem.config import Settings  # noqa: E402

CREATED = ItemStatus(201)


class AcceptingTransport:
    """Elasticsearch that indexes everything at once."""

    def send(self, lines: Sequence[bytes]) -> list[ItemStatus]:
        return [CREATED] * (len(lines) // 2)


class ListConsumer:
    """Kafka that hands out a list of records, in poll batches."""

    def __init__(self, records: list[SourceRecord]) -> None:
        self.records = records
        self.position = 0

    def poll(self, timeout_ms: int, max_records: int) -> list[SourceRecord]:
        batch = self.records[self.position : self.position + max_records]
        self.position += len(batch)
        return batch

    def pause_all(self) -> None:
        pass

    def resume_all(self) -> None:
        pass

    def commit(self, positions: dict[Partition, int]) -> None:
        pass

    def assignment(self) -> set[Partition]:
        return {(record.topic, record.partition) for record in self.records[:3]}

    def lag(self) -> dict[Partition, int]:
        return {}

    def close(self) -> None:
        pass


class DroppingProducer:
    def __init__(self) -> None:
        self.sent = 0

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.sent += 1

    def flush(self, timeout_s: float) -> None:
        pass

    def close(self) -> None:
        pass


def bench_records(settings: Settings, events: int) -> list[SourceRecord]:
    """``events`` records of bench_e2e's mix: quiet Panther records, one in 100 taken from those that fire a rule
    (told apart offline here; bench_e2e also leaves out the few Elasticsearch refuses)."""
    templates = panther_cloudtrail_records()
    probe = benchmark_records(len(templates), "probe", time.time(), templates)
    firing = {a.token.offset for a in build_actions(settings, probe)[0] if a.token.kind == "alert"}
    quiet = [t for i, t in enumerate(templates) if i not in firing]
    alerting = [t for i, t in enumerate(templates) if i in firing]
    raw = benchmark_records(events, "loop", time.time(), quiet, alerting, 100)
    topic = raw_topic(settings)
    return [SourceRecord(topic, offset % 3, offset, value) for offset, value in enumerate(raw)]


def stage_alone(settings: Settings, records: list[SourceRecord]) -> float:
    stage = build_detect_stage(settings)
    started = time.process_time()
    for record in records:
        stage.process(record)
    stage.end_batch()
    return time.process_time() - started


def whole_loop(settings: Settings, records: list[SourceRecord]) -> tuple[float, int, int]:
    """CPU seconds for the stage loop to take every record through; (seconds, documents acknowledged, messages)."""
    p = settings.pipeline
    sink = BulkSink(
        AcceptingTransport(),
        max_actions=p.bulk_max_actions,
        max_bytes=p.bulk_max_bytes,
        flush_interval_s=p.bulk_flush_interval_s,
        backoff_max_s=p.bulk_backoff_max_s,
        background=False,
    )
    consumer = ListConsumer(records)
    producer = DroppingProducer()
    rules = RuleSetHolder.from_settings(settings.rules)
    runner = build_detect_runner(settings, rules, sink, consumer_factory=lambda on_revoked: consumer, producer=producer)
    started = time.process_time()
    while consumer.position < len(records) or sink.pending:
        runner.step()
    seconds = time.process_time() - started
    return seconds, runner.stats.indexed + runner.stats.alerts, producer.sent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    settings = make_settings("loop", e2e_args([]))
    records = bench_records(settings, args.events)
    n = len(records)
    stage_alone(settings, records[:5000])  # warm-up: caches, allocator, the first rule evaluations
    whole_loop(settings, records[:5000])
    alone, loop = [], []
    for _ in range(args.rounds):
        alone.append(1e6 * stage_alone(settings, records) / n)
        seconds, documents, messages = whole_loop(settings, records)
        loop.append(1e6 * seconds / n)
    print(f"{n} CloudTrail records -> {documents} documents, {messages} alert messages; rounds: {args.rounds}")
    print(f"detect stage alone   {min(alone):6.1f} µs per record  (rounds: {', '.join(f'{x:.1f}' for x in alone)})")
    print(f"whole stage loop     {min(loop):6.1f} µs per record  (rounds: {', '.join(f'{x:.1f}' for x in loop)})")
    print(f"loop overhead        {min(loop) - min(alone):6.1f} µs per record (runner, bulk bodies, offsets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
