"""Incident store throughput against the local Elasticsearch (127.0.0.1:19200): alerts recorded per second.

The correlate stage records the incident-level alerts of a poll batch together (``IncidentStore.record_batch``:
one bulk write of the incidents the batch changed, one of the claims, one multi-get of claims it does not
remember). The floor of the same run is the same alerts recorded one at a time (``record``: the same three
requests per alert), which is what a stage that writes per alert pays.

    .venv/bin/python bench/bench_incidents.py [--alerts 3000] [--keys 50] [--batch 500]

Each mode gets its own index prefix; the indices are deleted at the end. The local stack is started if it is
not up (as the end-to-end benchmark does).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elasticsearch import Elasticsearch  # noqa: E402

from correlation.incidents.builder import Signal, signal_from_alert  # noqa: E402
from correlation.incidents.es_backend import ElasticsearchBackend  # noqa: E402
from correlation.incidents.store import IncidentStore  # noqa: E402
from indexing.client import make_client  # noqa: E402
from siem.config import IncidentSettings, Settings  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from bench_e2e import ensure_stack  # noqa: E402

T0 = int(time.time() * 1000) - 3_600_000


def alert_signals(count: int, keys: int, settings: IncidentSettings) -> list[Signal]:
    """``count`` high-level alerts, one second apart, spread round-robin over ``keys`` users."""
    signals: list[Signal] = []
    for n in range(count):
        doc: dict[str, Any] = {
            "@timestamp": T0 + n * 1000,
            "event": {"kind": "alert", "id": f"bench-alert-{uuid.uuid4().hex}"},
            "rule": {"id": "r-bench", "name": "Benchmark rule"},
            "siem": {"level": "high", "source_event": {"id": f"bench-event-{n}"}},
            "user": {"name": f"user-{n % keys}"},
            "source": {"ip": f"203.0.113.{n % 250}"},
        }
        signal = signal_from_alert(doc, settings, "high")
        assert signal is not None
        signals.append(signal)
    return signals


def store_for(client: Elasticsearch, prefix: str, settings: IncidentSettings) -> IncidentStore:
    backend = ElasticsearchBackend(
        client, f"{prefix}-incidents", refresh=False, claims_index=lambda day: f"{prefix}-incident-claims-{day}"
    )
    backend.ensure_index()
    return IncidentStore(backend, settings, lambda: int(time.time() * 1000))


def timed(store: IncidentStore, signals: list[Signal], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(signals), batch):
        store.record_batch(signals[start : start + batch])
    return time.perf_counter() - started


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=3000)
    ap.add_argument("--keys", type=int, default=50, help="distinct incident keys (users)")
    ap.add_argument("--batch", type=int, default=500, help="alerts per batch (a poll batch's incident signals)")
    args = ap.parse_args()
    settings = IncidentSettings(max_alert_ids=100_000)
    stack = Settings()
    ensure_stack(stack)
    client = make_client(stack.elasticsearch, request_timeout=60)
    tag = uuid.uuid4().hex[:8]
    figures: dict[str, float] = {}
    try:
        for mode, batch in (("one at a time", 1), (f"batches of {args.batch}", args.batch)):
            prefix = f"bi{tag}{batch}"
            store = store_for(client, prefix, settings)
            signals = alert_signals(args.alerts, args.keys, settings)
            elapsed = timed(store, signals, batch)
            figures[mode] = args.alerts / elapsed
            client.indices.refresh(index=f"{prefix}-incidents")
            counted = client.search(
                index=f"{prefix}-incidents", size=0, aggs={"alerts": {"sum": {"field": "alert_count"}}}
            )["aggregations"]["alerts"]["value"]
            print(
                f"{mode:>20}: {args.alerts} alerts over {args.keys} keys in {elapsed:.2f} s = "
                f"{figures[mode]:,.0f} alerts/s; incidents count {int(counted)} alerts",
                flush=True,
            )
            if int(counted) != args.alerts:
                print(f"MISMATCH: incidents counted {int(counted)} of {args.alerts} alerts")
                return 1
    finally:
        client.indices.delete(index=f"bi{tag}*", ignore_unavailable=True, allow_no_indices=True)
    modes = list(figures)
    print(f"batched / one at a time: {figures[modes[1]] / figures[modes[0]]:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
