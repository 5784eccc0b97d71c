"""Correlation edge cases on the real stack: window edges, lateness and timer-decided (``lt``) windows.

Same harness as ``test_correlation_pipeline.py`` (its :class:`Pipeline` is reused: unique topics, groups and
index prefix per test, everything deleted afterwards); each test writes its Sigma rules to ``tmp_path`` and
produces realistic CloudTrail ``ConsoleLogin`` records from ``samples/`` re-timed to the instants the scenario
needs. Event time is what the engine reasons about; the wall clock only matters to the timer, whose watermark
is ``now - allowed_lateness``. Scenarios that depend on it (lateness, ``lt``) therefore time their records
relative to "now", taken once the pipeline owns its partitions.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from correlation.windows.documents import iso
from correlation.windows.engine import EngineStats
from correlation.windows.messages import match_id
from ingest.correlate import CorrelateRunner
from ingest.service import Service
from siem.config import CorrelationSettings
from stack.services import LocalStack
from tests.integration.test_correlation_pipeline import (
    ATTACKER_IP,
    BRUTE_FORCE,
    FAILED_LOGIN,
    LOGIN_RULES,
    Pipeline,
    _lines,
    epoch_ms,
    only,
)

pytestmark = pytest.mark.integration

ASSIGN_WAIT_S = 30.0

# The brute-force correlation of LOGIN_RULES, narrowed to one minute (the window-edge scenarios need it).
BURST_1M_RULES = LOGIN_RULES.replace("timespan: 10m", "timespan: 1m")
assert BURST_1M_RULES != LOGIN_RULES

SINGLE_LOGIN = "8a4f0d52-1c57-4d6e-9f0b-2d3b6c1e7a21"
SINGLE_LOGIN_SPAN_S = 10
SINGLE_LOGIN_RULE = f"""
title: AWS Console Login Not Followed By Another
id: {SINGLE_LOGIN}
name: aws_console_single_login
level: medium
tags: [attack.initial-access, attack.t1078.004]
correlation:
    type: event_count
    rules: [aws_console_login_success]
    group-by: [sourceIPAddress]
    timespan: {SINGLE_LOGIN_SPAN_S}s
    condition: {{lt: 2}}
"""


# ---- records -------------------------------------------------------------------------------------------


def _template(outcome: str) -> dict[str, Any]:
    return next(
        r for r in _lines("cloudtrail.jsonl")
        if r.get("eventName") == "ConsoleLogin" and r["sourceIPAddress"] == ATTACKER_IP
        and r["responseElements"]["ConsoleLogin"] == outcome
    )


def login(outcome: str, ip: str, at: datetime, tag: str) -> dict[str, Any]:
    """A real ConsoleLogin record of the sample attacker, moved to ``ip`` and ``at`` (whole seconds, UTC)."""
    record = dict(_template(outcome))
    record["sourceIPAddress"] = ip
    record["eventTime"] = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    record["eventID"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}/{ip}/{record['eventTime']}"))
    return record


def now_s() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


# ---- harness -------------------------------------------------------------------------------------------


@pytest.fixture
def make_pipeline(local_stack: LocalStack, tmp_path: Path) -> Iterator[Callable[..., Pipeline]]:
    made: list[Pipeline] = []

    def make(rules: str, **correlation: Any) -> Pipeline:
        pipeline = Pipeline(local_stack, tmp_path / f"rules{len(made)}", rules)
        made.append(pipeline)
        if correlation:
            pipeline.settings = pipeline.settings.model_copy(
                update={"correlation": CorrelationSettings(**correlation)}
            )
        return pipeline

    yield make
    for pipeline in made:
        pipeline.close()


def correlator(service: Service) -> CorrelateRunner:
    return next(r for r in service.runners if isinstance(r, CorrelateRunner))


def engine_stats(service: Service) -> EngineStats:
    # the stage replaces its engine on every (re)assignment: always read the current one
    return correlator(service)._correlate.engine.stats


def start_assigned(p: Pipeline) -> Service:
    """Start detect + correlate and wait until both own all their partitions (so "now" means processing now)."""
    service = p.start()
    partitions = p.settings.kafka.topic_partitions
    expected = {"detect": partitions * len(p.settings.kafka.raw_topics), "correlate": partitions}
    p.wait_for(
        "both stages assigned",
        lambda: all(len(r.assignment()) == expected[r.name] for r in service.runners),
        timeout_s=ASSIGN_WAIT_S,
    )
    return service


def events(p: Pipeline, ids: list[str]) -> list[dict[str, Any]]:
    return p.search(f"{p.prefix}-events-*", {"ids": {"values": ids}})


# ---- scenarios -----------------------------------------------------------------------------------------


def test_burst_straddling_a_minute_edge_is_found_by_the_sliding_window(make_pipeline):
    """3 failures at hh:mm:57-59 and 2 at hh:(mm+1):00-02: no fixed minute holds 5, the sliding minute does.

    A second IP with 5 failures spread over 61 s (never 5 within any minute) must not correlate.
    """
    p = make_pipeline(BURST_1M_RULES)
    edge = now_s().replace(second=0) - timedelta(minutes=3)  # hh:(mm+1):00, well inside the 15 min lateness
    burst_ip, spread_ip = "203.0.113.71", "203.0.113.72"
    burst = [login("Failure", burst_ip, edge + timedelta(seconds=s), p.prefix) for s in (-3, -2, -1, 0, 2)]
    spread = [login("Failure", spread_ip, edge + timedelta(seconds=s), p.prefix) for s in (-61, -40, -20, -5, 0)]
    assert max(sum(r["eventTime"][:16] == m for r in burst) for m in {r["eventTime"][:16] for r in burst}) == 3
    p.start()
    p.produce("cloudtrail", burst + spread)

    found = only(p.wait_for("straddling burst correlation", lambda: p.correlations(BRUTE_FORCE)))
    p.wait_for("10 failed-login alerts", lambda: len(p.alerts(FAILED_LOGIN)) == 10)
    p.wait_for("correlate group committed", p.correlate_committed_all)
    p.settle()
    assert p.correlations(BRUTE_FORCE) == [found]  # and nothing for the spread-out IP
    assert found["_id"] == match_id(BRUTE_FORCE, (burst_ip,), epoch_ms(burst[0]["eventTime"]))
    corr = found["siem"]["correlation"]
    assert (corr["type"], corr["aggregate"], corr["input_count"]) == ("event_count", 5.0, 5)
    assert corr["group_by"] == {"sourceIPAddress": burst_ip}
    assert corr["timespan_ms"] == 60_000
    assert sorted(corr["event_ids"]) == sorted(r["eventID"] for r in burst)
    assert (found["event"]["start"], found["event"]["end"]) == (
        iso(epoch_ms(burst[0]["eventTime"])), iso(epoch_ms(burst[-1]["eventTime"])))
    assert (found["event"]["start"][17:19], found["event"]["end"][17:19]) == ("57", "02")

    incident = only(p.wait_for("incident", p.incidents))
    assert incident["key"] == f"corr:{BRUTE_FORCE}:sourceIPAddress={burst_ip}"
    assert incident["correlation_ids"] == [found["_id"]]



def test_late_alert_within_and_beyond_the_allowed_lateness(make_pipeline):
    """Allowed lateness 60 s. Two IPs get 4 failures each at t-30..t-27, then another IP's failure at t moves the
    watermark to t-60. Afterwards one more failure arrives for each IP: at t-35 (35 s late: within lateness, it
    completes 5-in-a-minute and the correlation fires) and at t-75 (75 s late: beyond, it is counted as late and
    not correlated although it would complete 5 within 48 s) -- but its event and its own alert are indexed."""
    p = make_pipeline(BURST_1M_RULES, allowed_lateness_s=60, timer_interval_s=1)
    service = start_assigned(p)
    t = now_s()
    within_ip, beyond_ip, newest_ip = "203.0.113.81", "203.0.113.82", "203.0.113.83"
    within = [login("Failure", within_ip, t - timedelta(seconds=s), p.prefix) for s in (30, 29, 28, 27)]
    beyond = [login("Failure", beyond_ip, t - timedelta(seconds=s), p.prefix) for s in (30, 29, 28, 27)]
    newest = login("Failure", newest_ip, t, p.prefix)
    p.produce("cloudtrail", within + beyond + [newest])
    # different group keys may sit on different partitions of siem.alerts: let phase 1 be fully correlated
    # before the stragglers are produced, so "the newest alert was seen first" holds.
    p.wait_for("phase 1 correlated", lambda: engine_stats(service).received == 9, timeout_s=20)
    assert (engine_stats(service).late, engine_stats(service).matches) == (0, 0)
    assert p.correlations(BRUTE_FORCE) == []

    late_within = login("Failure", within_ip, t - timedelta(seconds=35), p.prefix)
    late_beyond = login("Failure", beyond_ip, t - timedelta(seconds=75), p.prefix)
    p.produce("cloudtrail", [late_within, late_beyond])

    found = only(p.wait_for("correlation completed by the late alert", lambda: p.correlations(BRUTE_FORCE)))
    p.wait_for("phase 2 correlated", lambda: engine_stats(service).received == 11, timeout_s=20)
    p.wait_for("correlate group committed", p.correlate_committed_all)
    p.settle()
    assert p.correlations(BRUTE_FORCE) == [found]  # nothing for beyond_ip
    assert found["_id"] == match_id(BRUTE_FORCE, (within_ip,), epoch_ms(late_within["eventTime"]))
    corr = found["siem"]["correlation"]
    assert (corr["aggregate"], corr["input_count"], corr["group_by"]) == (5.0, 5, {"sourceIPAddress": within_ip})
    assert sorted(corr["event_ids"]) == sorted(r["eventID"] for r in [late_within, *within])
    assert (found["event"]["start"], found["event"]["end"]) == (
        iso(epoch_ms(late_within["eventTime"])), iso(epoch_ms(within[-1]["eventTime"])))
    stats = engine_stats(service)
    assert (stats.late, stats.matches, stats.suppressed) == (1, 1, 0)

    # the late record is not lost: detect indexed its event and its failed-login alert
    assert [e["_id"] for e in events(p, [late_beyond["eventID"]])] == [late_beyond["eventID"]]
    alerts = p.wait_for("11 failed-login alerts", lambda: (lambda a: a if len(a) == 11 else None)(
        p.alerts(FAILED_LOGIN)))
    by_event = {a["siem"]["source_event"]["id"]: a["_id"] for a in alerts}
    assert late_beyond["eventID"] in by_event
    assert sorted(corr["alert_ids"]) == sorted(by_event[r["eventID"]] for r in [late_within, *within])
    incident = only(p.wait_for("incident", p.incidents))
    assert incident["key"] == f"corr:{BRUTE_FORCE}:sourceIPAddress={within_ip}"


def test_lt_condition_is_decided_by_the_timer(make_pipeline):
    """``event_count lt 2`` per IP in 10 s: one IP logs in once, another twice. No further alert arrives; the
    wall-clock timer (watermark now - 10 s) closes both windows at t + 20 s: only the lone login fires."""
    lateness_s = 10
    p = make_pipeline(LOGIN_RULES + "---" + SINGLE_LOGIN_RULE, allowed_lateness_s=lateness_s, timer_interval_s=1)
    service = start_assigned(p)
    t = now_s()
    lone_ip, twice_ip = "203.0.113.91", "203.0.113.92"
    lone = login("Success", lone_ip, t, p.prefix)
    twice = [login("Success", twice_ip, t - timedelta(seconds=1), p.prefix), login("Success", twice_ip, t, p.prefix)]
    closes_at = t + timedelta(seconds=SINGLE_LOGIN_SPAN_S + lateness_s)
    p.produce("cloudtrail", [twice[0], lone, twice[1]])

    p.wait_for("3 inputs correlated", lambda: engine_stats(service).received == 3, timeout_s=lateness_s)
    assert engine_stats(service).late == 0
    assert p.correlations(SINGLE_LOGIN) == []  # an lt window is never decided on arrival
    assert datetime.now(UTC) < closes_at, "too slow to observe the window open"

    found = only(p.wait_for("timer-decided correlation", lambda: p.correlations(SINGLE_LOGIN), timeout_s=35))
    assert datetime.now(UTC) >= closes_at
    p.settle()
    assert p.correlations(SINGLE_LOGIN) == [found]
    assert found["_id"] == match_id(SINGLE_LOGIN, (lone_ip,), epoch_ms(lone["eventTime"]))
    corr = found["siem"]["correlation"]
    assert (corr["type"], corr["aggregate"], corr["input_count"]) == ("event_count", 1.0, 1)
    assert corr["group_by"] == {"sourceIPAddress": lone_ip}
    assert corr["event_ids"] == [lone["eventID"]]
    # decided when the window [t, t + 10 s] closed, not when its only alert arrived
    assert found["@timestamp"] == iso(epoch_ms(lone["eventTime"]) + SINGLE_LOGIN_SPAN_S * 1000)
    assert found["event"]["start"] == found["event"]["end"] == iso(epoch_ms(lone["eventTime"]))
    stats = engine_stats(service)
    assert (stats.received, stats.late, stats.matches) == (3, 0, 1)
    assert p.correlations(BRUTE_FORCE) == []
    incident = only(p.wait_for("incident", p.incidents))
    assert incident["key"] == f"corr:{SINGLE_LOGIN}:sourceIPAddress={lone_ip}"
    assert incident["correlation_ids"] == [found["_id"]]
