"""Scheduled jobs: retention decisions, silent-source detection, rule hot reload, the scheduler's guard."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig
from elasticsearch import ConflictError
from prometheus_client import REGISTRY

from correlation.detection.engine import RuleSetHolder
from correlation.incidents.builder import signal_from_alert
from indexing.retention import expired_indices
from ingest.alert_messages import IncidentAlert, decode
from ingest.jobs import reload_rules, service_scheduler
from ingest.silence import RULE_ID, SilentSourceWatcher
from parsers.base import ParsedEvent
from siem.config import IncidentSettings, PipelineSettings, RulesSettings, Settings, load_settings
from siem.errors import ConfigError
from siem.scheduling import Job
from tests.unit.runtime_fakes import FakeProducer

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DAY_MS = 86_400_000
NOW_MS = int(NOW.timestamp() * 1000)


# ---- retention ---------------------------------------------------------------------------------------------


def test_retention_deletes_only_our_daily_indices_past_both_their_day_and_their_creation():
    created_long_ago = NOW_MS - 40 * DAY_MS
    indices = {
        "siem-events-aws.cloudtrail-2026.10.01": created_long_ago,  # expired
        "siem-alerts-2026.10.22": created_long_ago,  # 31 days before: expired
        "siem-incident-claims-2026.10.22": created_long_ago,  # the claims of those alerts: expired with them
        "siem-events-k8s.audit-2026.10.23": created_long_ago,  # exactly 30 days before: kept
        "siem-events-aws.cloudtrail-2026.11.22": NOW_MS,  # today
        "siem-events-aws.cloudtrail-2019.03.01": NOW_MS - DAY_MS,  # replayed yesterday from an archive: kept
        "siem-dlq": created_long_ago,
        "siem-incidents": created_long_ago,
        "siem-events-aws.cloudtrail-2026.13.45": created_long_ago,  # not a date
        "siemx-events-aws.cloudtrail-2026.01.01": created_long_ago,  # another prefix
        "siem-other-2026.01.01": created_long_ago,
    }
    assert expired_indices(indices, "siem", 30, NOW) == [
        "siem-alerts-2026.10.22",
        "siem-events-aws.cloudtrail-2026.10.01",
        "siem-incident-claims-2026.10.22",
    ]
    assert expired_indices(indices, "siem", 60, NOW) == []


# ---- silent sources ------------------------------------------------------------------------------------------


class FakeEndOffsets:
    def __init__(self) -> None:
        self.ends: dict[tuple[str, int], int] = {("raw.ct", 0): 5, ("raw.ct", 1): 7}
        self.calls = 0

    def __call__(self, topics: list[str]) -> dict[tuple[str, int], int]:
        self.calls += 1
        return {tp: end for tp, end in self.ends.items() if tp[0] in topics}


def _conflict() -> ConflictError:
    meta = ApiResponseMeta(409, "1.1", HttpHeaders(), 0.0, NodeConfig("http", "localhost", 9200))
    return ConflictError("version_conflict_engine_exception", meta, {})


class FakeEs:
    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}
        self.down = False

    def index(self, *, index: str, id: str, document: dict[str, Any], op_type: str) -> None:  # noqa: A002
        if self.down:
            raise ConnectionError("Elasticsearch unreachable")
        assert op_type == "create"
        if (index, id) in self.docs:
            raise _conflict()
        self.docs[(index, id)] = document


class Clock:
    def __init__(self) -> None:
        self.now = NOW.timestamp()

    def __call__(self) -> float:
        return self.now


def silence_settings(minutes: float = 30) -> Settings:
    return load_settings(
        kafka={"raw_topics": {"raw.ct": "cloudtrail", "raw.k8s": "k8s_audit"}, "alerts_topic": "al"},
        pipeline={"silent_sources": {"cloudtrail": minutes}, "metrics_port": 0},
    )


def make_watcher(owner: bool = True, minutes: float = 30):
    ends, es, producer, clock = FakeEndOffsets(), FakeEs(), FakeProducer(), Clock()
    owned = {"yes": owner}
    watcher = SilentSourceWatcher(
        silence_settings(minutes), ends, lambda tp: owned["yes"] and tp == ("raw.ct", 0), es, producer, clock
    )
    return watcher, ends, es, producer, clock, owned


def test_a_source_silent_for_its_minutes_raises_one_alert_and_one_incident_message():
    watcher, ends, es, producer, clock, _ = make_watcher()
    assert watcher.check() == []  # first look: the silence starts being measured now
    clock.now += 29 * 60
    assert watcher.check() == []
    clock.now += 60
    [alert] = watcher.check()
    siem = alert["siem"]
    assert (alert["rule"]["id"], siem["silent_source"], siem["level"]) == (RULE_ID, "cloudtrail", "high")
    assert siem["silence"]["topics"] == ["raw.ct"] and "raw.ct/1@7" in siem["silence"]["end_offsets"]
    assert list(es.docs) == [("siem-alerts-2026.11.22", alert["event"]["id"])]
    [(topic, key, value)] = producer.sent
    message = decode(value)
    assert topic == "al" and key == alert["event"]["id"].encode() and isinstance(message, IncidentAlert)
    signal = signal_from_alert(message.document, IncidentSettings(), "high")
    assert signal is not None and signal.key == "siem.silent_source=cloudtrail"
    clock.now += 3600
    assert watcher.check() == [], "one alert per silence"


def test_new_records_end_the_silence_and_a_later_silence_is_a_new_alert():
    watcher, ends, es, _, clock, _ = make_watcher(minutes=10)
    watcher.check()
    clock.now += 600
    [first] = watcher.check()
    ends.ends[("raw.ct", 0)] += 3  # the source is back
    clock.now += 60
    assert watcher.check() == []
    clock.now += 599
    assert watcher.check() == []
    clock.now += 1
    [second] = watcher.check()
    assert second["event"]["id"] != first["event"]["id"] and len(es.docs) == 2


def test_the_same_silence_seen_by_the_next_owner_is_the_same_alert():
    first, ends, es, producer, clock, _ = make_watcher(minutes=5)
    first.check()
    clock.now += 300
    [alert] = first.check()
    # after a rebalance another process watches the source; it sees the same end offsets
    second = SilentSourceWatcher(silence_settings(5), ends, lambda tp: True, es, producer, clock)
    second.check()
    clock.now += 300
    [again] = second.check()
    assert again["event"]["id"] == alert["event"]["id"] and len(es.docs) == 1, "indexed once (create, 409 kept)"


def test_only_the_owner_of_partition_zero_watches():
    watcher, ends, _, _, clock, owned = make_watcher(owner=False, minutes=1)
    for _ in range(3):
        clock.now += 120
        assert watcher.check() == []
    assert ends.calls == 0
    owned["yes"] = True
    watcher.check()
    clock.now += 60
    assert len(watcher.check()) == 1


def test_an_alert_that_could_not_be_written_is_raised_again_at_the_next_check():
    watcher, _, es, _, clock, _ = make_watcher(minutes=1)
    watcher.check()
    clock.now += 60
    es.down = True
    with pytest.raises(ConnectionError):
        watcher.check()
    es.down = False
    assert len(watcher.check()) == 1


def test_silent_sources_must_name_a_configured_source():
    with pytest.raises(ConfigError, match="pipeline.silent_sources: 'cloudtrial'"):
        load_settings(pipeline={"silent_sources": {"cloudtrial": 30}})
    with pytest.raises(ConfigError, match="positive"):
        load_settings(pipeline={"silent_sources": {"cloudtrail": 0}})
    assert PipelineSettings().silent_sources == {}, "no source is watched unless configured"


# ---- rule hot reload -----------------------------------------------------------------------------------------


def _rule(directory: Path, name: str, event_name: str) -> None:
    (directory / f"{name}.yml").write_text(
        f"title: {name}\nstatus: test\nlogsource:\n    product: aws\n    service: cloudtrail\n"
        f"detection:\n    selection:\n        eventName: '{event_name}'\n    condition: selection\nlevel: low\n"
    )


def test_reload_job_picks_up_changed_rule_files(tmp_path: Path):
    _rule(tmp_path, "first", "A")
    settings = Settings(rules=RulesSettings(directories=[tmp_path]))
    holder = RuleSetHolder.from_settings(settings.rules)
    event = ParsedEvent("e", "aws.cloudtrail", {}, {"eventName": "B"})
    assert holder.current.match(event) == [] and not reload_rules(holder, settings), "nothing changed"
    _rule(tmp_path, "second", "B")
    assert reload_rules(holder, settings)
    assert len(holder.current.match(event)) == 1
    # a broken edit: reported and left out, as at start; the other rules keep running
    (tmp_path / "second.yml").write_text("title: [broken\n")
    assert reload_rules(holder, settings)
    assert holder.current.match(event) == [] and len(holder.current.rules) == 1 and holder.current.problems
    # nothing loads at all: the running set stays
    (tmp_path / "first.yml").write_text("title: [broken\n")
    assert not reload_rules(holder, settings)
    assert holder.last_error and len(holder.current.rules) == 1


# ---- the scheduler -------------------------------------------------------------------------------------------


def test_a_failing_job_is_counted_and_does_not_stop_the_others():
    ran = threading.Event()
    runs: list[float] = []

    def failing() -> None:
        raise RuntimeError("Elasticsearch unreachable")

    def working() -> None:
        runs.append(time.monotonic())
        if len(runs) >= 3:
            ran.set()

    def failures() -> float:
        labels = {"stage": "jobs", "source": "flaky", "error_type": "job_error"}
        return REGISTRY.get_sample_value("siem_failures_total", labels) or 0.0

    before = failures()
    scheduler = service_scheduler([Job("flaky", failing, 0.05, at_start=True), Job("steady", working, 0.05)])
    scheduler.start()
    try:
        assert ran.wait(10), "the working job keeps running"
    finally:
        scheduler.stop()
    assert failures() - before >= 2  # the run at start and at least one interval run
    assert timedelta(seconds=runs[-1] - runs[0]) < timedelta(seconds=10)
