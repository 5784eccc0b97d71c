"""Correlation engine: sliding windows, lateness, timers, eviction, deterministic ids (exact outputs)."""

from __future__ import annotations

from datetime import UTC, datetime

from correlation.windows.engine import CorrelationEngine, replay
from correlation.windows.messages import CorrelationInput, match_id
from correlation.windows.router import CorrelationRouter
from correlation.windows.rules import load_correlations_from_yaml

BASE = """
title: Failed login
id: 5638f7c0-ac70-491d-8465-2a65075e0d86
name: failed_login
logsource: {product: windows, service: security}
detection:
    selection: {EventID: 4625}
    condition: selection
"""


def corr(body: str, cid: str = "0e95725d-7320-415d-80f7-004da920fc11") -> str:
    return f"""
title: Correlation
id: {cid}
name: the_correlation
level: high
tags: [attack.credential-access, attack.t1110]
correlation:
{body}
---
{BASE}"""


def t(hms: str) -> int:
    """Epoch ms of 2025-01-01T<hms>Z."""
    return int(datetime.fromisoformat(f"2025-01-01T{hms}+00:00").astimezone(UTC).timestamp() * 1000)


def setup(body: str, lateness_ms: int = 5 * 60_000):
    _, compiled = load_correlations_from_yaml(corr(body))
    router = CorrelationRouter(compiled, entity_fields=["source.ip"])
    engine = CorrelationEngine(compiled, allowed_lateness_ms=lateness_ms, router=router, timer_resolution_ms=1)
    return compiled[0], router, engine


def alert(router, ts: int, user: str = "alice", n: int = 0, rule: str = "failed_login", **fields):
    event = {"User": user, "source.ip": "10.0.0.1", **fields}
    rule_id = "5638f7c0-ac70-491d-8465-2a65075e0d86" if rule == "failed_login" else rule
    return router.route(rule_id, rule, event.get, ts, alert_id=f"a{n}", event_id=f"e{n}")


COUNT5 = """
    type: event_count
    rules: [failed_login]
    group-by: [User]
    timespan: 1m
    condition: {gte: 5}
"""


def feed(engine, router, times, user="alice"):
    out = []
    for n, ts in enumerate(times):
        for inp in alert(router, ts, user, n):
            out.extend(engine.process(inp))
    return out


def test_burst_straddling_a_minute_boundary_is_detected_once():
    rule, router, engine = setup(COUNT5)
    times = [t("12:00:50"), t("12:00:52"), t("12:00:55"), t("12:00:58"), t("12:01:02"), t("12:01:03")]
    matches = feed(engine, router, times)
    assert len(matches) == 1
    m = matches[0]
    assert m.id == match_id(rule.id, ("alice",), t("12:00:50"))
    assert (m.window_start_ms, m.window_end_ms, m.aggregate, m.input_count) == (
        t("12:00:50"), t("12:01:02"), 5.0, 5)
    assert m.alert_ids == ("a0", "a1", "a2", "a3", "a4")
    assert m.event_ids == ("e0", "e1", "e2", "e3", "e4")
    assert m.group_fields == (("User", "alice"),)
    assert m.entities == (("source.ip", "10.0.0.1"),)


def test_sliding_window_needs_all_events_within_timespan():
    _, router, engine = setup(COUNT5)
    times = [t("12:00:00"), t("12:00:20"), t("12:00:40"), t("12:00:59"), t("12:01:01")]
    assert feed(engine, router, times) == []
    # one more inside the window that ends at 12:01:05 -> [12:00:05, 12:01:05] holds 4 + this = 5
    assert [m.window_start_ms for m in feed(engine, router, [t("12:01:05")])] == [t("12:00:20")]


def test_groups_are_separate():
    _, router, engine = setup(COUNT5)
    times = [t("12:00:00"), t("12:00:01"), t("12:00:02")]
    assert feed(engine, router, times, "alice") + feed(engine, router, times, "bob") == []
    assert engine.group_count() == 2


def test_out_of_order_within_lateness_completes_window():
    rule, router, engine = setup(COUNT5, lateness_ms=15 * 60_000)
    times = [t("12:00:10"), t("12:00:20"), t("12:00:30"), t("12:00:40"), t("12:05:00")]
    assert feed(engine, router, times) == []
    late = alert(router, t("12:00:05"), n=9)  # 5 minutes late, lateness 15 minutes: still correlated
    matches = engine.process(late[0])
    assert [(m.id, m.window_start_ms, m.window_end_ms, m.input_count) for m in matches] == [
        (match_id(rule.id, ("alice",), t("12:00:05")), t("12:00:05"), t("12:00:40"), 5)
    ]
    assert engine.stats.late == 0


def test_alert_later_than_allowed_lateness_is_counted_not_correlated():
    _, router, engine = setup(COUNT5, lateness_ms=60_000)
    feed(engine, router, [t("12:00:10"), t("12:00:20"), t("12:00:30"), t("12:00:40"), t("12:10:00")])
    assert engine.watermark == t("12:09:00")
    assert engine.process(alert(router, t("12:00:35"), n=7)[0]) == []
    assert engine.stats.late == 1


def test_lt_is_decided_by_the_timer_when_the_window_closes():
    body = """
    type: event_count
    rules: [failed_login]
    group-by: [User]
    timespan: 1m
    condition: {lt: 3}
"""
    rule, router, engine = setup(body, lateness_ms=30_000)
    assert feed(engine, router, [t("12:00:00"), t("12:00:10")]) == []
    assert engine.advance(t("12:01:30")) == []  # watermark 12:01:00 == window end: not closed yet
    matches = engine.advance(t("12:01:30") + 1)
    assert [(m.id, m.window_start_ms, m.window_end_ms, m.decided_ms, m.aggregate) for m in matches] == [
        (match_id(rule.id, ("alice",), t("12:00:00")), t("12:00:00"), t("12:00:10"), t("12:01:00"), 2.0)
    ]
    assert engine.group_count() == 0  # closed window, nothing buffered: evicted


def test_lt_not_satisfied_emits_nothing_and_evicts():
    body = """
    type: event_count
    rules: [failed_login]
    group-by: [User]
    timespan: 1m
    condition: {lte: 2}
"""
    _, router, engine = setup(body, lateness_ms=0)
    assert feed(engine, router, [t("12:00:00"), t("12:00:10"), t("12:00:20")]) == []
    assert engine.advance(t("12:05:00")) == []
    assert engine.group_count() == 0 and engine.stats.evicted_groups == 1


def test_state_is_evicted_after_timespan():
    _, router, engine = setup(COUNT5, lateness_ms=0)
    feed(engine, router, [t("12:00:00")], "alice")
    feed(engine, router, [t("12:00:30")], "bob")
    assert engine.group_count() == 2
    engine.advance(t("12:01:00") + 1)
    assert engine.group_count() == 1  # alice's only alert left her window
    engine.advance(t("12:01:31"))
    assert engine.group_count() == 0 and engine.buffered_inputs() == 0


def _inputs(router):
    times = [t("12:00:00"), t("12:00:01"), t("12:00:02"), t("12:00:03"), t("12:00:04"),
             t("12:00:30"), t("12:00:31"), t("12:00:32"), t("12:00:33"), t("12:00:34"), t("12:00:35")]
    out = []
    for n, ts in enumerate(times):
        out.extend(alert(router, ts, "alice" if n % 2 else "bob", n))
    return out


def test_restart_by_replay_yields_same_ids_and_no_reemission():
    _, router, first = setup(COUNT5)
    inputs = _inputs(router)
    all_matches = first.process_many(inputs)
    assert len(all_matches) == 2
    # a fresh engine given everything again produces identical ids
    _, router2, again = setup(COUNT5)
    assert [m.id for m in again.process_many(inputs)] == [m.id for m in all_matches]
    # restart after input 8: inputs 0..8 rebuild state silently, 9.. are live
    _, _, restarted = setup(COUNT5)
    assert replay(restarted, inputs[:9]) == 9
    live = restarted.process_many(inputs[9:])
    decided_after = [m.id for m in all_matches if m.window_end_ms >= inputs[9].timestamp_ms]
    assert [m.id for m in live] == decided_after


def test_input_bytes_round_trip_and_key():
    inp = CorrelationInput("c", ("a", "b"), "r", "n", 0, 5, "al", "ev", 1.5, (("user.name", "x"),))
    assert CorrelationInput.from_bytes(inp.to_bytes()) == inp
    assert inp.key == CorrelationInput("c", ("a", "b"), "r2", None, 1, 9, "z").key
    assert inp.key != CorrelationInput("c", ("a", "bb"), "r", None, 0, 5, "al").key


def test_missing_group_by_field_skips_the_correlation():
    _, router, _ = setup(COUNT5)
    assert router.route("5638f7c0-ac70-491d-8465-2a65075e0d86", "failed_login", {}.get, 1, "a") == []
    assert router.skipped_missing_field == 1
    assert router.route("other", "other", {"User": "x"}.get, 1, "a") == []


def test_timer_wrapper_uses_injected_clock():
    from correlation.windows.clock import ManualClock
    from correlation.windows.runtime import CorrelationTimer

    body = COUNT5.replace("{gte: 5}", "{lt: 2}")
    _, router, engine = setup(body, lateness_ms=0)
    feed(engine, router, [t("12:00:00")])
    sunk: list[object] = []
    clock = ManualClock(t("12:00:30"))
    timer = CorrelationTimer(engine, sunk.extend, clock=clock)
    assert timer.tick() == []
    clock.set(t("12:01:00") + 1)
    assert [m.window_start_ms for m in timer.tick()] == [t("12:00:00")]
    assert len(sunk) == 1


# ---- rule reload: carry_over -------------------------------------------------------------------------------

LT3 = """
    type: event_count
    rules: [failed_login]
    group-by: [User]
    timespan: 1m
    condition: {lt: 3}
"""


def _reloaded(body: str, title: str = "Correlation", lateness_ms: int = 5 * 60_000):
    """The same correlation id loaded again (a rule reload), possibly with another body or title."""
    _, compiled = load_correlations_from_yaml(corr(body).replace("title: Correlation", f"title: {title}", 1))
    router = CorrelationRouter(compiled, entity_fields=["source.ip"])
    engine = CorrelationEngine(compiled, allowed_lateness_ms=lateness_ms, router=router, timer_resolution_ms=1)
    return compiled[0], router, engine


def test_a_reload_that_only_retitles_a_correlation_keeps_its_windows():
    _, router, engine = setup(COUNT5)
    assert feed(engine, router, [t("12:00:00"), t("12:00:01"), t("12:00:02"), t("12:00:03")]) == []
    rule, new_router, reloaded = _reloaded(COUNT5, title="Console brute force")
    assert reloaded.carry_over(engine) == 1
    assert reloaded.buffered_inputs() == 4
    (match,) = [m for inp in alert(new_router, t("12:00:04"), n=4) for m in reloaded.process(inp)]
    assert match.alert_ids == ("a0", "a1", "a2", "a3", "a4"), "the four alerts before the reload still count"
    assert match.id == match_id(rule.id, ("alice",), t("12:00:00"))


def test_a_reload_that_changes_a_correlation_starts_it_empty():
    _, router, engine = setup(COUNT5)
    feed(engine, router, [t("12:00:00"), t("12:00:01"), t("12:00:02"), t("12:00:03")])
    changed = COUNT5.replace("{gte: 5}", "{gte: 2}")
    _, new_router, reloaded = _reloaded(changed)
    assert reloaded.carry_over(engine) == 0
    assert reloaded.group_count() == 0
    assert [m for inp in alert(new_router, t("12:00:04"), n=4) for m in reloaded.process(inp)] == []
    (match,) = [m for inp in alert(new_router, t("12:00:05"), n=5) for m in reloaded.process(inp)]
    assert match.alert_ids == ("a4", "a5"), "only alerts routed after the reload count for the new definition"


def test_kept_windows_are_closed_by_the_new_engines_timer():
    _, router, engine = setup(LT3, lateness_ms=30_000)
    feed(engine, router, [t("12:00:00"), t("12:00:10")])
    rule, _, reloaded = _reloaded(LT3, title="Too few logins", lateness_ms=30_000)
    assert reloaded.carry_over(engine) == 1
    assert reloaded.watermark == engine.watermark
    (match,) = reloaded.advance(t("12:01:30") + 1)
    assert (match.id, match.aggregate) == (match_id(rule.id, ("alice",), t("12:00:00")), 2.0)
    assert reloaded.group_count() == 0, "closed and evicted by the new engine's wheel"


def test_a_consumed_window_still_suppresses_redelivered_alerts_after_a_reload():
    _, router, engine = setup(COUNT5)
    times = [t("12:00:00"), t("12:00:01"), t("12:00:02"), t("12:00:03"), t("12:00:04")]
    assert len(feed(engine, router, times)) == 1
    _, new_router, reloaded = _reloaded(COUNT5, title="Retitled")
    reloaded.carry_over(engine)
    assert [m for inp in alert(new_router, t("12:00:02"), n=2) for m in reloaded.process(inp)] == []
    assert reloaded.stats.suppressed == 1
