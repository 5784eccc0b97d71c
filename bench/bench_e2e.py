"""End-to-end performance on the real local stack (Kafka 127.0.0.1:19092, Elasticsearch 127.0.0.1:19200).

One run measures, on the same N CloudTrail records (Panther's labelled records, re-stamped with unique eventIDs
and today's times):

1. **Elasticsearch ceiling** — the exact bulk actions the detect stage would send for those records (built
   offline by ``DetectStage.process``: ECS events plus the alerts some of them trigger, orjson-serialized), bulk
   indexed with the pipeline's own sink (``ingest.service.make_sink``: ``BulkSink`` + ``ElasticsearchBulkTransport``,
   same max_actions/max_bytes) into an isolated index prefix whose templates ``ingest.service.setup`` installed.
   One synchronous request at a time, as the pipeline's stage loop sends them.
2. **End-to-end rate** — the raw records are produced to an isolated raw topic first (timed separately), then
   ``build_service`` starts the stages and the clock runs from ``Service.start()`` until the detect stage has had
   every event and alert acknowledged by Elasticsearch (its bulk acknowledgements; a final ``_count`` checks).
   The rate is also given from the first record consumed (without the consumer group join).
3. **Latency** — with the pipeline still running, a child process produces at a fixed rate (2,000 events/s) for
   ~25 s; every 20th record is an ``AttachUserPolicy`` of ``arn:aws:iam::aws:policy/AdministratorAccess`` that
   fires ``sigma_rules/rules/aws_cloudtrail/aws_iam_policy_attached_admin.yml``. Its eventID carries the produce
   wall time; the child polls Elasticsearch with realtime multi-GET (every ~50 ms) for the alert's deterministic id
   (sha256(rule id, event id)). Latency = time the alert is first found (acknowledged by ES and readable by id;
   search visibility adds up to ``refresh_interval``) − wall time just before ``producer.send``. Polling adds
   ~25 ms on average.

Settings: the pipeline's defaults (``PipelineSettings``) unless overridden by flags; the figures name them.
Targets: end-to-end >= 80% of the ceiling; latency p99 <= 2 s. A missed target prints MISSED; exit code stays 0.

    .venv/bin/python bench/bench_e2e.py [--events 50000] [--stages detect,correlate] [--latency-seconds 25]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

sys.dont_write_bytecode = True  # no __pycache__ in bench/ from importing the helper module
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from e2e_support import (  # noqa: E402
    benchmark_records,
    delete_topics,
    latency_child,
    new_tag,
    panther_cloudtrail_records,
)
from elasticsearch import Elasticsearch  # noqa: E402
from kafka import KafkaProducer  # noqa: E402

from correlation.detection.engine import RuleSetHolder  # noqa: E402
from correlation.windows.router import CorrelationRouter  # noqa: E402
from indexing.bulk import BulkAction  # noqa: E402
from indexing.client import make_client  # noqa: E402
from indexing.templates import component_templates, index_templates  # noqa: E402
from ingest.correlation_rules import compile_correlations  # noqa: E402
from ingest.detect import DetectStage  # noqa: E402
from ingest.detector import SigmaDetector  # noqa: E402
from ingest.kafka_io import pipeline_topics  # noqa: E402
from ingest.service import Service, StageName, build_service, make_sink, setup  # noqa: E402
from parsers.base import SourceRecord  # noqa: E402
from parsers.registry import build_parsers  # noqa: E402
from siem.config import ElasticsearchSettings, KafkaSettings, PipelineSettings, Settings  # noqa: E402

TARGET_RATIO = 0.80
TARGET_P99_S = 2.0
STOP_TIMEOUT_S = 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=50_000, help="N records for the ceiling and the end-to-end rate")
    ap.add_argument("--stages", default="detect,correlate", help="stages the service runs (default: both, as siem run)")
    ap.add_argument("--latency-seconds", type=float, default=25.0)
    ap.add_argument("--rate", type=float, default=2000.0, help="events/s of the latency phase")
    ap.add_argument("--trigger-every", type=int, default=20, help="one record in this many fires the admin-policy rule")
    ap.add_argument(
        "--alert-fraction",
        type=float,
        default=0.01,
        help="fraction of the N records that fire a rule (Panther test cases that do)",
    )
    ap.add_argument("--partitions", type=int, default=None, help="partitions of the isolated topics (default: 3)")
    ap.add_argument(
        "--detect-processes",
        type=int,
        default=1,
        help="run the detect stage in this many processes (one consumer group): the service's own, plus this many "
        "minus one that run only the detect stage, as several `siem run --stage detect` would",
    )
    ap.add_argument("--skip-latency", action="store_true")
    # Pipeline / index overrides, to try settings (the figures say which were used).
    ap.add_argument("--bulk-max-actions", type=int)
    ap.add_argument("--bulk-max-bytes", type=int)
    ap.add_argument("--bulk-flush-interval-s", type=float)
    ap.add_argument("--poll-max-records", type=int)
    ap.add_argument("--poll-timeout-ms", type=int)
    ap.add_argument(
        "--no-eager-flush", action="store_true", help="bulk batches wait for size or age even when caught up"
    )
    ap.add_argument("--refresh-interval", help="index refresh interval of the isolated templates (default 1s)")
    return ap.parse_args(argv)


def make_settings(prefix: str, args: argparse.Namespace) -> Settings:
    pipeline: dict[str, Any] = {"metrics_port": 0}
    for name in ("bulk_max_actions", "bulk_max_bytes", "bulk_flush_interval_s", "poll_max_records", "poll_timeout_ms"):
        value = getattr(args, name)
        if value is not None:
            pipeline[name] = value
    if args.no_eager_flush:
        pipeline["bulk_eager_flush"] = False
    kafka: dict[str, Any] = {
        "raw_topics": {
            f"{prefix}.raw.cloudtrail": "cloudtrail",
            f"{prefix}.raw.k8s": "k8s_audit",
            f"{prefix}.raw.app": "app",
        },
        "alerts_topic": f"{prefix}.alerts",
        "dlq_topic": f"{prefix}.dlq",
        "detect_group_id": f"{prefix}-detect",
        "correlate_group_id": f"{prefix}-correlate",
    }
    if args.partitions:
        kafka["topic_partitions"] = args.partitions
    es: dict[str, Any] = {"index_prefix": prefix}
    if args.refresh_interval:
        es["refresh_interval"] = args.refresh_interval
    return Settings(
        kafka=KafkaSettings(**kafka), elasticsearch=ElasticsearchSettings(**es), pipeline=PipelineSettings(**pipeline)
    )


def ensure_stack(settings: Settings) -> None:
    es = Elasticsearch(**settings.elasticsearch.client_options())
    for _ in range(3):  # the machine is shared and busy: one slow answer is not a stopped stack
        try:
            es.cluster.health(timeout="10s")
            return
        except Exception:  # noqa: BLE001
            time.sleep(2)
    print("local stack not reachable; running `siem stack up` (idempotent)", flush=True)
    subprocess.run([str(ROOT / ".venv" / "bin" / "siem"), "stack", "up"], check=True)


def raw_topic(settings: Settings) -> str:
    return next(t for t, p in settings.kafka.raw_topics.items() if p == "cloudtrail")


# -- phase 0: records Elasticsearch accepts ---------------------------------------------------------------


def classify_templates(settings: Settings, es: Elasticsearch) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """The Panther records whose documents the index template accepts, split into (quiet, alerting), and how
    many were left out. Each is indexed once into the ceiling prefix, then the indices are deleted.

    A few make documents that conflict with the mapping (the pipeline sends those to the DLQ); kept in, they would
    make the ceiling and the pipeline do different work. Panther's records are rule test cases, so most of them
    fire one of the project's rules; a live stream alerts far less, so the quiet and alerting ones are mixed at
    ``--alert-fraction``. (The rule set is read at run time, so this follows rules added since.)
    """
    templates = panther_cloudtrail_records()
    raw = benchmark_records(len(templates), "probe", time.time(), templates)
    actions, _ = build_actions(settings, raw)
    sink = make_sink(settings, es)
    refused: set[int] = set()
    firing = {a.token.offset for a in actions if a.token.kind == "alert"}
    for action in actions:
        sink.add(action)
    while sink.pending:
        report = sink.flush()
        refused.update(r.action.token.offset for r in report.rejected)
        if report.request_error or report.retrying:
            time.sleep(0.2)
    es.indices.delete(index=f"{settings.elasticsearch.index_prefix}-*", ignore_unavailable=True, allow_no_indices=True)
    quiet = [t for i, t in enumerate(templates) if i not in refused and i not in firing]
    alerting = [t for i, t in enumerate(templates) if i not in refused and i in firing]
    return quiet, alerting, len(refused)


# -- phase 1: the ceiling ------------------------------------------------------------------------------------


def build_detect_stage(settings: Settings) -> DetectStage:
    """The detect stage as the service builds it (rules, correlation routing), reading the CloudTrail raw topic."""
    rules = RuleSetHolder.from_settings(settings.rules)
    correlations = compile_correlations(rules.current)
    router = CorrelationRouter(correlations, settings.correlation.entity_fields) if correlations else None
    return DetectStage(
        {raw_topic(settings): build_parsers(settings.parsers)["cloudtrail"]},
        SigmaDetector(rules, router, settings.rules.alert_incident_level),
        settings.elasticsearch,
        settings.pipeline,
        settings.kafka.alerts_topic,
        settings.kafka.dlq_topic,
    )


def build_actions(settings: Settings, raw: list[bytes]) -> tuple[list[BulkAction], float]:
    """The bulk actions the detect stage makes from ``raw`` (events + alerts), and the offline stage rate."""
    stage = build_detect_stage(settings)
    topic = raw_topic(settings)
    actions: list[BulkAction] = []
    started = time.perf_counter()
    for offset, value in enumerate(raw):
        actions.extend(stage.process(SourceRecord(topic, 0, offset, value)).actions)
    return actions, len(raw) / (time.perf_counter() - started)


def bulk_ceiling(settings: Settings, client: Elasticsearch, actions: list[BulkAction]) -> tuple[float, int]:
    """Seconds to bulk-index ``actions`` with the pipeline's sink, one request at a time; and requests sent."""
    sink = make_sink(settings, client)
    delivered = requests = 0
    started = time.perf_counter()
    for action in actions:
        sink.add(action)
        if sink.full:
            report = sink.flush()
            requests += report.latency_s is not None  # a request answered
            delivered += len(report.delivered)
            if report.rejected:
                raise SystemExit(f"ceiling: ES refused {len(report.rejected)} docs: {report.rejected[0].reason}")
    while sink.pending:
        report = sink.flush(force=True)  # waits for the request in flight, then sends the rest
        requests += report.latency_s is not None
        delivered += len(report.delivered)
        if report.rejected:
            raise SystemExit(f"ceiling: ES refused {len(report.rejected)} docs: {report.rejected[0].reason}")
        if report.request_error:
            time.sleep(0.2)
    elapsed = time.perf_counter() - started
    if delivered != len(actions):
        raise SystemExit(f"ceiling: {delivered} of {len(actions)} delivered")
    return elapsed, requests


# -- phase 2: end to end -------------------------------------------------------------------------------------


def produce_raw(settings: Settings, raw: list[bytes]) -> float:
    producer = KafkaProducer(
        **settings.kafka.client_options(),
        acks="all",
        linger_ms=20,
        batch_size=512 * 1024,
        max_request_size=32 * 1024 * 1024,
    )
    topic = raw_topic(settings)
    started = time.perf_counter()
    try:
        for value in raw:
            producer.send(topic, value=value)
        producer.flush(timeout=120)
    finally:
        producer.close()
    return time.perf_counter() - started


def extra_detect_process(settings: Settings, shared: dict[str, Any]) -> None:
    """One more detect stage in its own process (``--detect-processes``), started when ``go`` is set; publishes
    its counts and CPU time for the parent until ``stop`` is set."""
    service = build_service(settings, ("detect",))
    detect = next(r for r in service.runners if r.name == "detect")
    shared["ready"].set()
    shared["go"].wait()
    cpu_started = time.process_time()
    service.start()
    try:
        while not shared["stop"].is_set():
            shared["records"].value = detect.stats.records
            shared["indexed"].value = detect.stats.indexed
            shared["pending"].value = detect.sink.pending
            shared["cpu_s"].value = time.process_time() - cpu_started
            time.sleep(0.005)
    finally:
        service.stop(timeout_s=STOP_TIMEOUT_S)


class ExtraDetect:
    """The extra detect processes of a run, with their published counts summed."""

    def __init__(self, settings: Settings, count: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.go, self.stop = ctx.Event(), ctx.Event()
        self.shared: list[dict[str, Any]] = []
        self.processes: list[Any] = []
        for i in range(count):
            shared: dict[str, Any] = {
                "go": self.go,
                "stop": self.stop,
                "ready": ctx.Event(),
                "records": ctx.Value("q", 0),
                "indexed": ctx.Value("q", 0),
                "pending": ctx.Value("q", 0),
                "cpu_s": ctx.Value("d", 0.0),
            }
            process = ctx.Process(target=extra_detect_process, args=(settings, shared), name=f"detect-{i + 2}")
            process.start()
            self.shared.append(shared)
            self.processes.append(process)
        for shared in self.shared:  # built (rules compiled) before the clock starts, as the service's own stage
            if not shared["ready"].wait(120):
                raise SystemExit("an extra detect process did not start within 120 s")

    def total(self, name: str) -> Any:
        return sum(shared[name].value for shared in self.shared)

    def close(self) -> None:
        self.stop.set()
        for process in self.processes:
            process.join(STOP_TIMEOUT_S)
            if process.is_alive():
                process.kill()


def run_e2e(
    service: Service, events: int, extra: ExtraDetect | None = None, timeout_s: float = 240.0
) -> dict[str, float]:
    detect = next(r for r in service.runners if r.name == "detect")

    def indexed() -> int:
        return detect.stats.indexed + (extra.total("indexed") if extra else 0)

    def pending() -> int:
        return detect.sink.pending + (extra.total("pending") if extra else 0)

    def records() -> int:
        return detect.stats.records + (extra.total("records") if extra else 0)

    started = time.perf_counter()
    cpu_started = time.process_time()  # every thread of this process: the stages, kafka-python's, the bulk workers
    if extra:
        extra.go.set()
    service.start()
    first = None
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        if first is None and records() > 0:
            first = time.perf_counter()
        # Alerts are buffered right after their event: all events acknowledged and nothing pending means their
        # alerts are in too (the count is not used, a rule file edited meanwhile would change it). With several
        # detect processes, a rebalance may index some events twice (same ids): the sum can pass N early by as
        # many, which the _count below would show.
        if indexed() >= events and pending() == 0:
            break
        if service.errors:
            raise SystemExit(f"pipeline failed: {service.errors}")
        time.sleep(0.01)
    done = time.perf_counter()
    cpu_s = time.process_time() - cpu_started + (extra.total("cpu_s") if extra else 0.0)
    if indexed() < events:
        raise SystemExit(f"end-to-end: only {indexed()}/{events} indexed after {timeout_s:.0f} s")
    return {
        "total_s": done - started,
        "join_s": (first or started) - started,
        "steady_s": done - (first or started),
        "cpu_s": cpu_s,
    }


def es_count(es: Elasticsearch, index: str) -> int:
    es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    return int(es.count(index=index, ignore_unavailable=True, allow_no_indices=True)["count"])


# -- phase 3: latency ----------------------------------------------------------------------------------------


def run_latency(
    settings: Settings, args: argparse.Namespace, tag: str, templates: list[dict[str, Any]]
) -> dict[str, Any]:
    config = {
        "records": templates,
        "rate": args.rate,
        "seconds": args.latency_seconds,
        "trigger_every": args.trigger_every,
        "index_prefix": settings.elasticsearch.index_prefix,
        "tag": tag,
        "topic": raw_topic(settings),
        "es_options": settings.elasticsearch.client_options(),
        "kafka_options": settings.kafka.client_options(),
        "grace_s": 30.0,
    }
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=latency_child, args=(config, queue), name="latency-producer")
    child.start()
    try:
        result: dict[str, Any] = queue.get(timeout=args.latency_seconds + 90)
    finally:
        child.join(timeout=30)
        if child.is_alive():
            child.terminate()
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# -- cleanup -------------------------------------------------------------------------------------------------


def cleanup(es: Elasticsearch, settings: Settings) -> None:
    prefix = settings.elasticsearch.index_prefix
    try:
        es.indices.delete(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)
        for name in index_templates(settings.elasticsearch):
            es.options(ignore_status=404).indices.delete_index_template(name=name)
        for name in component_templates(settings.elasticsearch):
            es.options(ignore_status=404).cluster.delete_component_template(name=name)
    except Exception as exc:  # noqa: BLE001 - report, keep cleaning
        print(f"cleanup of indices/templates {prefix}-* failed: {exc}")
    try:
        delete_topics(
            settings.kafka.client_options(),
            pipeline_topics(settings.kafka),
            [settings.kafka.detect_group_id, settings.kafka.correlate_group_id],
        )
    except Exception as exc:  # noqa: BLE001
        print(f"cleanup of topics {prefix}.* failed: {exc}")


# -- main ----------------------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    stages = cast(tuple[StageName, ...], tuple(s.strip() for s in args.stages.split(",") if s.strip()))
    tag = new_tag()
    ceiling_settings = make_settings(f"bc{tag}", args)
    e2e_settings = make_settings(f"be{tag}", args)
    ensure_stack(e2e_settings)
    es = make_client(e2e_settings.elasticsearch)
    p = e2e_settings.pipeline
    print(
        f"bench_e2e {tag}: N={args.events} stages={','.join(stages)} bulk_max_actions={p.bulk_max_actions} "
        f"bulk_max_bytes={p.bulk_max_bytes} bulk_flush_interval_s={p.bulk_flush_interval_s} "
        f"poll_max_records={p.poll_max_records} poll_timeout_ms={p.poll_timeout_ms} "
        f"refresh_interval={e2e_settings.elasticsearch.refresh_interval} "
        f"partitions={e2e_settings.kafka.topic_partitions}",
        flush=True,
    )
    figures: dict[str, Any] = {}
    service: Service | None = None
    extra: ExtraDetect | None = None
    try:
        setup(ceiling_settings, es)
        templates, alerting, refused = classify_templates(ceiling_settings, es)
        alert_every = round(1 / args.alert_fraction) if args.alert_fraction > 0 else 0
        print(
            f"Panther CloudTrail records: {len(templates)} quiet + {len(alerting)} that fire a rule "
            f"(1 in {alert_every} of the records), {refused} left out (ES mapping conflicts)",
            flush=True,
        )
        raw = benchmark_records(args.events, tag, time.time(), templates, alerting, alert_every)
        actions, stage_rate = build_actions(ceiling_settings, raw)
        n_alerts = sum(1 for a in actions if a.token.kind == "alert")
        n_events = sum(1 for a in actions if a.token.kind == "event")
        mean_bytes = sum(len(a.source) for a in actions) / len(actions)
        print(
            f"records: {len(raw)} raw -> {n_events} events + {n_alerts} alerts "
            f"({len(actions)} docs, {mean_bytes:.0f} B/doc); detect stage offline: {stage_rate:,.0f} records/s",
            flush=True,
        )

        # 1. ceiling (measured again after the end-to-end run: Elasticsearch's own speed drifts by +-20% over
        # minutes on this machine, with merges and disk flushes; the ratio uses the mean of the two)
        ceiling_s, requests = bulk_ceiling(ceiling_settings, es, actions)
        figures["ceiling_before"] = len(actions) / ceiling_s
        print(
            f"[1] ES ceiling: {len(actions)} docs in {ceiling_s:.2f} s ({requests} bulk requests) = "
            f"{figures['ceiling_before']:,.0f} docs/s",
            flush=True,
        )

        # 2. end to end
        setup(e2e_settings, es)
        produce_s = produce_raw(e2e_settings, raw)
        print(
            f"[2] produced {len(raw)} raw records in {produce_s:.2f} s ({len(raw) / produce_s:,.0f}/s, not timed)",
            flush=True,
        )
        del raw
        if args.detect_processes > 1:
            extra = ExtraDetect(e2e_settings, args.detect_processes - 1)
        service = build_service(e2e_settings, stages)
        e2e = run_e2e(service, n_events, extra)
        detect = next(r for r in service.runners if r.name == "detect")
        if extra is None and detect.stats.alerts != n_alerts:
            print(f"    note: the pipeline indexed {detect.stats.alerts} alerts, the offline build {n_alerts}")
        docs = n_events + n_alerts
        figures["e2e"] = docs / e2e["total_s"]
        figures["e2e_steady"] = docs / e2e["steady_s"]
        figures["e2e_events"] = n_events / e2e["total_s"]
        in_es = es_count(es, f"{e2e_settings.elasticsearch.index_prefix}-events-*")
        print(
            f"[2] end-to-end: {n_events} events + {n_alerts} alerts indexed in {e2e['total_s']:.2f} s from start "
            f"= {figures['e2e']:,.0f} docs/s ({figures['e2e_events']:,.0f} events/s); "
            f"group join {e2e['join_s']:.2f} s, then {e2e['steady_s']:.2f} s = {figures['e2e_steady']:,.0f} docs/s; "
            f"_count events = {in_es}",
            flush=True,
        )
        figures["cpu_us_per_doc"] = 1e6 * e2e["cpu_s"] / docs
        print(
            f"    pipeline CPU {e2e['cpu_s']:.2f} s = {figures['cpu_us_per_doc']:.0f} µs per document "
            "(bench_cpu_budget.py measures what a budget per document allows)",
            flush=True,
        )
        # 1b. ceiling again, the pipeline now idle (caught up), on fresh indices of the ceiling prefix
        es.indices.delete(index=f"{ceiling_settings.elasticsearch.index_prefix}-*", allow_no_indices=True)
        ceiling_s, requests = bulk_ceiling(ceiling_settings, es, actions)
        figures["ceiling_after"] = len(actions) / ceiling_s
        figures["ceiling"] = (figures["ceiling_before"] + figures["ceiling_after"]) / 2
        print(
            f"[1b] ES ceiling again: {len(actions)} docs in {ceiling_s:.2f} s ({requests} bulk requests) = "
            f"{figures['ceiling_after']:,.0f} docs/s; mean {figures['ceiling']:,.0f} docs/s",
            flush=True,
        )
        del actions
        correlate = next((r for r in service.runners if r.name == "correlate"), None)
        figures["correlate_records"] = correlate.stats.records if correlate is not None else None
        if correlate is not None:
            print(
                f"    correlate stage at that moment: {correlate.stats.records} alert messages consumed, "
                f"{correlate.stats.indexed + correlate.stats.alerts} docs indexed",
                flush=True,
            )

        # 3. latency
        if not args.skip_latency:
            result = run_latency(e2e_settings, args, tag, templates)
            # An alert not found within the grace period counts as slower than every one found.
            lat = result["latencies"] + [float("inf")] * result["missing"]
            figures["latency"] = result
            if lat:
                figures["p50"] = percentile(lat, 0.50)
                figures["p99"] = percentile(lat, 0.99)
                print(
                    f"[3] latency: produced {result['produced']} at {result['achieved_rate']:,.0f}/s, "
                    f"{result['triggers']} triggers, {len(lat)} alerts found, {result['missing']} missing; "
                    f"p50 {fmt_s(figures['p50'])}, p99 {fmt_s(figures['p99'])}, max {fmt_s(max(lat))}",
                    flush=True,
                )
            if correlate is not None:
                print(
                    f"    correlate stage: {correlate.stats.records} alert messages consumed so far",
                    flush=True,
                )
    finally:
        if extra is not None:
            extra.close()
        if service is not None:
            stopping = time.perf_counter()
            service.stop(timeout_s=STOP_TIMEOUT_S)
            figures["stop_s"] = time.perf_counter() - stopping
            figures["stuck"] = service.alive()
        cleanup(es, ceiling_settings)
        cleanup(es, e2e_settings)
        if figures.get("stuck"):
            # The stuck stage still writes (incidents index, auto-created alerts topic): clean once more just
            # before the hard exit below.
            time.sleep(2)
            cleanup(es, e2e_settings)

    report(figures, args, stages, e2e_settings)
    if figures.get("stuck"):
        # A stage thread (non-daemon) that ignores the stop flag would keep the process alive for minutes.
        print(
            f"service.stop() gave up after {figures['stop_s']:.0f} s: a stage thread is still running "
            "(its topics are deleted); exiting without waiting for it",
            flush=True,
        )
        sys.stderr.flush()
        os._exit(0)
    print(f"service.stop() took {figures.get('stop_s', 0):.1f} s")
    return 0


def fmt_s(seconds: float) -> str:
    return "> grace (not found)" if seconds == float("inf") else f"{seconds * 1000:,.0f} ms"


def report(figures: dict[str, Any], args: argparse.Namespace, stages: tuple[str, ...], settings: Settings) -> None:
    p = settings.pipeline
    print("\n=== end-to-end benchmark ===")
    print(
        f"N = {args.events} CloudTrail records; stages = {','.join(stages)}; bulk_max_actions={p.bulk_max_actions}, "
        f"bulk_max_bytes={p.bulk_max_bytes}, bulk_flush_interval_s={p.bulk_flush_interval_s}, "
        f"bulk_eager_flush={p.bulk_eager_flush}, "
        f"poll_max_records={p.poll_max_records}, poll_timeout_ms={p.poll_timeout_ms}, "
        f"refresh_interval={settings.elasticsearch.refresh_interval}, partitions={settings.kafka.topic_partitions}, "
        f"detect processes={args.detect_processes}"
    )
    if "ceiling" in figures and "e2e" in figures:
        ratio = figures["e2e"] / figures["ceiling"]
        ratio_steady = figures["e2e_steady"] / figures["ceiling"]
        verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
        print(
            f"ES ceiling          {figures['ceiling']:>10,.0f} docs/s (mean of {figures['ceiling_before']:,.0f} "
            f"before and {figures['ceiling_after']:,.0f} after the end-to-end run)"
        )
        print(
            f"end-to-end          {figures['e2e']:>10,.0f} docs/s ({figures['e2e_events']:,.0f} events/s) "
            f"from start; {figures['e2e_steady']:,.0f} docs/s after the group join"
        )
        print(
            f"ratio               {ratio:>10.1%} (after join {ratio_steady:.1%})   "
            f"target >= {TARGET_RATIO:.0%}: {verdict}"
        )
        print(f"pipeline CPU        {figures['cpu_us_per_doc']:>10.0f} µs per document (all threads and processes)")
    if "p99" in figures:
        result = figures["latency"]
        print(
            f"latency phase       {result['produced']} records produced at {result['achieved_rate']:,.0f}/s, "
            f"{result['triggers']} alerts expected, {result['missing']} not found within 30 s after the last send"
        )
        verdict = "met" if figures["p99"] <= TARGET_P99_S else "MISSED"
        print(
            f"latency @ {args.rate:,.0f}/s    p50 {fmt_s(figures['p50'])}, p99 {fmt_s(figures['p99'])}"
            f"   target p99 <= {TARGET_P99_S:.0f} s: {verdict}"
        )
    elif not args.skip_latency:
        print("latency: no alert was found — MISSED")


if __name__ == "__main__":
    sys.exit(main())
