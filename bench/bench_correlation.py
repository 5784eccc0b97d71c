"""Correlation throughput (alerts/s on one core) and memory per active group key.

Run pinned to one core:  taskset -c 1 .venv/bin/python bench/bench_correlation.py [--keys 1000000]

- throughput: two passes over ``--keys`` distinct keys of an event_count (gte 5, 5 m) correlation, so
  every key is created and then appended to, plus a hot-key pass where bursts fire matches; the timed
  loop is ``engine.process`` on prebuilt inputs (decoding from Kafka is not included).
- memory: a fresh engine under tracemalloc, inputs generated on the fly (so only what the engine keeps
  is counted: group dicts, windows, and the retained inputs with their ids); bytes / active keys.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Iterator

from correlation.windows.engine import CorrelationEngine
from correlation.windows.messages import CorrelationInput
from correlation.windows.rules import CompiledCorrelation, load_correlations_from_yaml

RULES = """
title: Many failed logins per user
id: 0e95725d-7320-415d-80f7-004da920fc11
level: high
correlation:
    type: event_count
    rules: [failed_login]
    group-by: [user.name]
    timespan: 5m
    condition: {gte: 5}
---
title: Failed login
id: 5638f7c0-ac70-491d-8465-2a65075e0d86
name: failed_login
logsource: {product: test}
detection: {sel: {x: 1}, condition: sel}
"""
T0 = 1_735_732_800_000


def inputs(rule: CompiledCorrelation, keys: int, start_ms: int, step_us: int = 50) -> Iterator[CorrelationInput]:
    for i in range(keys):
        yield CorrelationInput(
            correlation_id=rule.id,
            group_key=(f"user-{i}",),
            rule_id=rule.rule_ids[0],
            rule_name="failed_login",
            ref_index=0,
            timestamp_ms=start_ms + i * step_us // 1000,
            alert_id=f"{start_ms + i:032x}",
            event_id=f"{i:032x}",
        )


def throughput(rule: CompiledCorrelation, keys: int) -> tuple[float, int]:
    engine = CorrelationEngine([rule], allowed_lateness_ms=15 * 60_000)
    batches = [list(inputs(rule, keys, T0)), list(inputs(rule, keys, T0 + 60_000))]
    hot = [CorrelationInput(rule.id, (f"hot-{i % 1000}",), rule.rule_ids[0], "failed_login", 0,
                            T0 + 120_000 + i // 100, f"h{i:031x}", None) for i in range(keys // 2)]
    batches.append(hot)
    gc.collect()
    gc.disable()
    total, matches = 0, 0
    started = time.perf_counter()
    for batch in batches:
        process = engine.process
        for inp in batch:
            matches += len(process(inp))
        total += len(batch)
    elapsed = time.perf_counter() - started
    gc.enable()
    return total / elapsed, matches


def memory_per_key(rule: CompiledCorrelation, keys: int) -> tuple[float, int]:
    gc.collect()
    tracemalloc.start()
    engine = CorrelationEngine([rule], allowed_lateness_ms=15 * 60_000)
    baseline = tracemalloc.get_traced_memory()[0]
    for inp in inputs(rule, keys, T0):
        engine.process(inp)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    return used / engine.group_count(), engine.group_count()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--keys", type=int, default=1_000_000)
    args = parser.parse_args()
    _, [rule] = load_correlations_from_yaml(RULES)
    rate, matches = throughput(rule, args.keys)
    print(f"throughput: {rate:,.0f} alerts/s on one core ({matches} matches)")
    per_key, active = memory_per_key(rule, args.keys)
    print(f"memory: {per_key:,.0f} bytes per active key ({active:,} keys, tracemalloc)")
    print(f"targets: >= 100,000 alerts/s -> {'ok' if rate >= 100_000 else 'MISSED'}; "
          f"<= 1024 B/key -> {'ok' if per_key <= 1024 else 'MISSED'}")


if __name__ == "__main__":
    main()
