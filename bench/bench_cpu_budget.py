"""How much Python CPU per document a pipeline may spend and still reach a share of the Elasticsearch ceiling.

The end-to-end target (#5) compares the pipeline with Elasticsearch alone on the same machine. On a small machine
the two share the cores, so the pipeline's own CPU per document decides how much of the ceiling it can reach.
This benchmark measures that curve directly, on the real local node, with the same documents as
``bench_e2e.py``:

- **ceiling**: the documents bulk-indexed with the pipeline's sink, one request at a time (as ``bench_e2e.py``);
- **synthetic pipeline, P µs per document**: one thread spends P µs of pure-Python CPU per document (holding
  the interpreter lock, as parsing and matching do), in chunks of 100, and hands the documents to the
  pipeline's background ``BulkSink`` with the stage loop's flush policy (send as soon as the request in flight
  has its answer; wait when the buffer is full). No Kafka, no parsing: only the CPU cost is simulated.

Each round measures the ceiling, then every P, on fresh indices; ratios are against that round's ceiling. The
result says what per-document budget the 80% target leaves on this machine; compare it with the pipeline's own
CPU per document, which ``bench_e2e.py`` prints.

    .venv/bin/python bench/bench_cpu_budget.py [--events 30000] [--budgets 0,30,60,90,120] [--rounds 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in bench/ from importing the helper modules
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_e2e import (  # noqa: E402
    TARGET_RATIO,
    build_actions,
    bulk_ceiling,
    classify_templates,
    cleanup,
    ensure_stack,
    make_settings,
)
from bench_e2e import parse_args as e2e_args  # noqa: E402
from e2e_support import benchmark_records, new_tag  # noqa: E402
from elasticsearch import Elasticsearch  # noqa: E402

from indexing.bulk import BulkAction, FlushReport  # noqa: E402
from indexing.client import make_client  # noqa: E402
from ingest.service import make_sink, setup  # noqa: E402
from siem.config import Settings  # noqa: E402

CHUNK = 100  # documents per simulated slice of work; the stage loop looks at the sink every 100 records too


def spend(microseconds: float) -> None:
    """Busy Python for ``microseconds`` (the interpreter lock held, like parsing and rule matching)."""
    end = time.perf_counter() + microseconds / 1e6
    while time.perf_counter() < end:
        pass


def synthetic_pipeline(settings: Settings, client: Elasticsearch, actions: list[BulkAction], budget_us: float) -> float:
    """Seconds to index ``actions`` while spending ``budget_us`` of CPU per document before handing it over."""
    sink = make_sink(settings, client)  # background: one request in flight while the loop keeps working
    delivered = 0
    started = time.perf_counter()
    try:
        for start in range(0, len(actions), CHUNK):
            chunk = actions[start : start + CHUNK]
            spend(budget_us * len(chunk))
            for action in chunk:
                sink.add(action)
            while sink.full:  # as the stage loop: a full buffer waits for the request in flight
                delivered += _collect(sink.flush(force=True))
            if sink.due(eager=True):
                delivered += _collect(sink.flush(eager=True))
        while sink.pending:
            delivered += _collect(sink.flush(force=True))
    finally:
        sink.close()
    if delivered != len(actions):
        raise SystemExit(f"synthetic pipeline: {delivered} of {len(actions)} delivered")
    return time.perf_counter() - started


def _collect(report: FlushReport) -> int:
    if report.rejected:
        raise SystemExit(f"ES refused {len(report.rejected)} docs: {report.rejected[0].reason}")
    if report.request_error:
        time.sleep(0.2)
    return len(report.delivered)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=30_000)
    ap.add_argument("--budgets", default="0,30,60,90,120", help="µs of Python CPU per document, comma-separated")
    ap.add_argument("--rounds", type=int, default=2)
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    tag = new_tag()
    # bench_e2e's defaults: the pipeline's settings
    settings = make_settings(f"bb{tag}", e2e_args(["--events", str(args.events)]))
    ensure_stack(settings)
    es = make_client(settings.elasticsearch)
    prefix = settings.elasticsearch.index_prefix
    ratios: dict[float, list[float]] = {b: [] for b in budgets}
    try:
        setup(settings, es)
        templates, alerting, _ = classify_templates(settings, es)
        raw = benchmark_records(args.events, tag, time.time(), templates, alerting, 100)
        actions, _ = build_actions(settings, raw)
        del raw
        print(f"bench_cpu_budget {tag}: {len(actions)} docs (bench_e2e's records), chunks of {CHUNK}", flush=True)
        for round_no in range(1, args.rounds + 1):
            ceiling = len(actions) / bulk_ceiling(settings, es, actions)[0]
            es.indices.delete(index=f"{prefix}-*", allow_no_indices=True)
            line = f"round {round_no}: ceiling {ceiling:,.0f} docs/s"
            for budget in budgets:
                rate = len(actions) / synthetic_pipeline(settings, es, actions, budget)
                es.indices.delete(index=f"{prefix}-*", allow_no_indices=True)
                ratios[budget].append(rate / ceiling)
                line += f" | {budget:.0f} µs: {rate:,.0f} ({100 * rate / ceiling:.0f}%)"
            print(line, flush=True)
    finally:
        cleanup(es, settings)
    print("\n=== CPU budget per document ===")
    for budget in budgets:
        shares = ", ".join(f"{100 * r:.0f}%" for r in ratios[budget])
        print(f"{budget:5.0f} µs/doc -> {shares} of the ceiling")
    within = [b for b in budgets if min(ratios[b]) >= TARGET_RATIO]
    if within:
        print(f"largest budget that reached {TARGET_RATIO:.0%} in every round: {max(within):.0f} µs per document")
    else:
        print(f"no budget reached {TARGET_RATIO:.0%} in every round")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
