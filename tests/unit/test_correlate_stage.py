"""The correlate stage with fakes: envelopes, DLQ, correlation alert actions, incidents, timer tokens, rebuild."""

from __future__ import annotations

import threading
from typing import Any

import orjson
import pytest
from elastic_transport import ConnectionError as EsConnectionError

from correlation.detection.engine import RuleSetHolder
from correlation.incidents.store import IncidentStore, MemoryBackend
from correlation.windows.clock import ManualClock
from correlation.windows.messages import CorrelationInput, match_id
from correlation.windows.rules import load_correlations_from_yaml
from correlation.windows.runtime import CorrelationTimer
from indexing.bulk import BulkAction, BulkSink
from ingest.alert_messages import InputBatcher, decode, encode_correlation_input, encode_incident_alert
from ingest.correlate import (
    TIMER_TOKEN,
    TIMER_TOPIC,
    CorrelateStage,
    IncidentStoreUnavailable,
    RebuildingConsumer,
    TimerFedSink,
)
from ingest.correlation_rules import CorrelationsFollower
from ingest.detect import RecordOutputs, Token
from ingest.runner import StageRunner
from parsers.base import SourceRecord
from siem.config import CorrelationSettings, RulesSettings, Settings
from tests.unit.runtime_fakes import FakeConsumer, FakeProducer, FakeTransport

FAILED_ID = "5638f7c0-ac70-491d-8465-2a65075e0d86"
SUCCESS_ID = "0a1b2c3d-0000-4000-8000-000000000001"
BURST_ID = "0e95725d-7320-415d-80f7-004da920fc11"
CHAIN_ID = "1e95725d-7320-415d-80f7-004da920fc12"
QUIET_ID = "2e95725d-7320-415d-80f7-004da920fc13"

RULES = f"""
title: Failed console login
id: {FAILED_ID}
name: failed_login
logsource: {{product: aws, service: cloudtrail}}
detection:
    selection: {{eventName: ConsoleLogin}}
    condition: selection
---
title: Successful console login
id: {SUCCESS_ID}
name: success_login
logsource: {{product: aws, service: cloudtrail}}
detection:
    selection: {{eventName: ConsoleLogin}}
    condition: selection
---
title: Login burst
id: {BURST_ID}
name: login_burst
level: medium
tags: [attack.credential-access, attack.t1110]
correlation:
    type: event_count
    rules: [failed_login]
    group-by: [source.ip]
    timespan: 10m
    condition: {{gte: 3}}
---
title: Burst then success
id: {CHAIN_ID}
name: burst_then_success
level: high
correlation:
    type: temporal_ordered
    rules: [login_burst, success_login]
    group-by: [source.ip]
    timespan: 30m
---
title: Too few logins
id: {QUIET_ID}
name: too_few
level: low
correlation:
    type: event_count
    rules: [success_login]
    group-by: [user.name]
    timespan: 1m
    condition: {{lt: 2}}
"""

T0 = 1_790_000_000_000  # 2026-09-21T14:13:20Z


@pytest.fixture(scope="module")
def correlations():
    _, compiled = load_correlations_from_yaml(RULES)
    return compiled


def make_stage(correlations, **correlation):
    settings = Settings(correlation=CorrelationSettings(**correlation))
    backend = MemoryBackend()
    store = IncidentStore(backend, settings.incidents, clock_ms=lambda: T0)
    stage = CorrelateStage(settings, correlations, store, threading.Lock(), backoff_base_s=0.001)
    return stage, backend, settings


def failed_input(stage, n: int, ip: str = "203.0.113.66", offset_ms: int = 0) -> CorrelationInput:
    fields = {"source.ip": ip, "user.name": "alice.admin"}
    (inp,) = stage.router.route(FAILED_ID, "failed_login", fields.get, T0 + offset_ms + n * 1000, f"a{n}", f"e{n}")
    assert isinstance(inp, CorrelationInput)
    return inp


def record(value: bytes, offset: int = 0, partition: int = 0) -> SourceRecord:
    return SourceRecord("siem.alerts", partition, offset, value)


def input_record(inp: CorrelationInput, offset: int) -> SourceRecord:
    return record(encode_correlation_input(inp)[1], offset)


# ---- decoding and the DLQ ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "error_type"),
    [
        (b"\xff\xfe not json", "invalid_json"),
        (b"[1, 2]", "wrong_shape"),
        (b'{"type": "something_else"}', "wrong_shape"),
        (b'{"type": "correlation_input", "input": {"correlation_id": "x"}}', "wrong_shape"),
        (b'{"type": "incident_alert", "alert": "not an object"}', "wrong_shape"),
    ],
)
def test_undecodable_messages_go_to_the_dlq_and_never_raise(correlations, raw, error_type):
    stage, backend, settings = make_stage(correlations)
    outputs = stage.process(record(raw, offset=7))
    (action,) = outputs.actions
    assert action.index == settings.elasticsearch.dlq_index
    assert action.token == Token("siem.alerts", 0, 7, "dlq", "correlation")
    dlq = orjson.loads(action.source)["dlq"]
    assert (dlq["error_type"], dlq["stage"], dlq["offset"]) == (error_type, "correlate", 7)
    assert dlq["original_size"] == len(raw)
    ((topic, key, value),) = outputs.kafka_messages
    assert (topic, key, value) == (settings.kafka.dlq_topic, action.doc_id.encode(), action.source)
    assert backend.docs == {}


def test_incident_alert_envelope_opens_an_incident_without_bulk_actions(correlations):
    stage, backend, _ = make_stage(correlations)
    doc = {
        "@timestamp": "2026-09-21T14:13:20.000Z",
        "event": {"id": "alert-1", "kind": "alert"},
        "rule": {"id": "r1", "name": "Admin policy attached"},
        "siem": {"level": "high"},
        "user": {"name": "alice.admin"},
    }
    outputs = stage.process(record(encode_incident_alert("alert-1", doc)[1]))
    assert outputs.actions == [] and outputs.kafka_messages == []
    # the record is finished at the end of its poll batch, when the batch's incidents are written
    assert outputs.deferred and backend.docs == {}
    stage.end_batch()
    ((incident, _),) = backend.docs.values()
    assert (incident["key"], incident["alert_ids"], incident["severity"]) == (
        "user.name=alice.admin",
        ["alert-1"],
        "high",
    )
    stage.process(record(encode_incident_alert("alert-1", doc)[1]))  # redelivery: idempotent per alert id
    stage.end_batch()
    ((incident, _),) = backend.docs.values()
    assert incident["alert_count"] == 1


def test_incident_alert_below_the_level_is_ignored(correlations):
    stage, backend, _ = make_stage(correlations)
    doc = {"@timestamp": "2026-09-21T14:13:20.000Z", "event": {"id": "a"}, "siem": {"level": "low"},
           "user": {"name": "bob"}}
    outputs = stage.process(record(encode_incident_alert("a", doc)[1]))
    assert outputs.actions == [] and not outputs.deferred
    stage.end_batch()
    assert backend.docs == {}


# ---- correlation inputs -------------------------------------------------------------------------------


def test_match_becomes_alert_action_incident_and_chained_input(correlations):
    stage, backend, settings = make_stage(correlations)
    outputs = [stage.process(input_record(failed_input(stage, n), offset=n)) for n in range(3)]
    assert [o.actions for o in outputs[:2]] == [[], []]
    assert [o.deferred for o in outputs] == [False, False, True]
    stage.end_batch()
    (action,) = outputs[2].actions
    expected_id = match_id(BURST_ID, ("203.0.113.66",), T0)
    assert action.doc_id == expected_id
    assert action.index == settings.elasticsearch.alerts_index("2026.09.21")
    assert action.op_type == "index"
    assert action.token == Token("siem.alerts", 0, 2, "alert", "correlation")
    doc = orjson.loads(action.source)
    assert doc["event"]["id"] == expected_id
    assert doc["rule"]["id"] == BURST_ID
    assert doc["siem"]["correlation"]["alert_ids"] == ["a0", "a1", "a2"]
    assert doc["siem"]["correlation"]["aggregate"] == 3.0
    # chain_locally is false by default: the parent correlation's input is published back on siem.alerts
    ((topic, key, value),) = outputs[2].kafka_messages
    parent = decode(value)
    assert topic == settings.kafka.alerts_topic
    assert isinstance(parent, CorrelationInput)
    assert (parent.correlation_id, parent.group_key, parent.alert_id, parent.derived) == (
        CHAIN_ID,
        ("203.0.113.66",),
        expected_id,
        True,
    )
    assert key == parent.key
    ((incident, _),) = backend.docs.values()
    assert incident["key"] == f"corr:{BURST_ID}:source.ip=203.0.113.66"
    assert incident["correlation_ids"] == [expected_id]


def test_chained_input_completes_the_parent_correlation(correlations):
    stage, backend, _ = make_stage(correlations)
    chained = None
    for n in range(3):
        outputs = stage.process(input_record(failed_input(stage, n), offset=n))
    chained = outputs.kafka_messages[0][2]
    fields = {"source.ip": "203.0.113.66"}
    (success,) = stage.router.route(SUCCESS_ID, "success_login", fields.get, T0 + 60_000, "s1", "es1")
    # the success arrives before the chained burst input (it took a shorter path): still correlated
    assert stage.process(input_record(success, 3)).actions == []
    (action,) = stage.process(record(chained, 4)).actions
    assert action.doc_id == match_id(CHAIN_ID, ("203.0.113.66",), T0 + 2000)
    assert orjson.loads(action.source)["siem"]["level"] == "high"
    stage.end_batch()
    assert len(backend.docs) == 2


def test_chain_locally_emits_parent_match_without_kafka_messages(correlations):
    stage, _, _ = make_stage(correlations, chain_locally=True)
    fields = {"source.ip": "203.0.113.66"}
    (success,) = stage.router.route(SUCCESS_ID, "success_login", fields.get, T0 + 60_000, "s1", "es1")
    stage.process(input_record(success, 0))
    outputs = [stage.process(input_record(failed_input(stage, n), offset=n + 1)) for n in range(3)]
    assert outputs[2].kafka_messages == []
    assert [a.doc_id for a in outputs[2].actions] == [
        match_id(BURST_ID, ("203.0.113.66",), T0),
        match_id(CHAIN_ID, ("203.0.113.66",), T0 + 2000),
    ]


# ---- incident store failures ----------------------------------------------------------------------------


class FlakyBackend(MemoryBackend):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def get(self, incident_id):
        self._maybe_fail()
        return super().get(incident_id)

    def create(self, incident_id, doc):
        self._maybe_fail()
        return super().create(incident_id, doc)

    def find(self, flt):
        self._maybe_fail()
        return super().find(flt)

    def _maybe_fail(self):
        if self.failures:
            self.failures -= 1
            raise EsConnectionError("connection refused")


def test_incident_writes_are_retried_until_elasticsearch_answers(correlations):
    stage, _, settings = make_stage(correlations)
    backend = FlakyBackend(failures=3)
    stage._incidents = IncidentStore(backend, settings.incidents, clock_ms=lambda: T0)
    for n in range(3):
        stage.process(input_record(failed_input(stage, n), offset=n))
    stage.end_batch()
    assert backend.failures == 0
    assert len(backend.docs) == 1


def test_incident_store_down_at_shutdown_raises_so_the_offset_is_not_committed(correlations):
    stage, _, settings = make_stage(correlations)
    stage._incidents = IncidentStore(FlakyBackend(failures=10**6), settings.incidents, clock_ms=lambda: T0)
    stop = threading.Event()
    stop.set()
    stage.bind_stop(stop)
    outputs = [stage.process(input_record(failed_input(stage, n), offset=n)) for n in range(3)]
    assert outputs[2].deferred  # the match's record waits for its incident write
    with pytest.raises(IncidentStoreUnavailable):
        stage.end_batch()


# ---- timer path ------------------------------------------------------------------------------------------


def test_timer_matches_get_the_timer_token(correlations):
    stage, backend, settings = make_stage(correlations, allowed_lateness_s=0)
    delivered: list[RecordOutputs] = []
    timer = CorrelationTimer(stage.engine, stage.on_timer_matches, clock=ManualClock(T0 + 120_000), lock=stage.lock)
    stage.bind_timer(timer, delivered.append)
    fields = {"user.name": "alice.admin", "source.ip": "203.0.113.66"}
    inputs = stage.router.route(SUCCESS_ID, "success_login", fields.get, T0, "s1", "es1")
    assert {i.correlation_id for i in inputs} == {CHAIN_ID, QUIET_ID}
    for n, inp in enumerate(inputs):  # lt: decided only when the window closes
        assert stage.process(input_record(inp, n)).actions == []
    matches = timer.tick()
    assert [m.correlation_id for m in matches] == [QUIET_ID]
    (outputs,) = delivered
    (action,) = outputs.actions
    assert action.token == TIMER_TOKEN
    assert action.doc_id == match_id(QUIET_ID, ("alice.admin",), T0)
    ((incident, _),) = backend.docs.values()
    assert incident["correlation_ids"] == [action.doc_id]


def test_timer_actions_are_indexed_without_holding_back_or_committing_offsets():
    transport = FakeTransport()
    sink = TimerFedSink(transport, max_actions=10, max_bytes=1 << 20, flush_interval_s=0.0, backoff_max_s=1.0)
    consumer = FakeConsumer([SourceRecord("raw", 0, 0, b"x")])

    class NoOutputs:
        def process(self, rec):
            return RecordOutputs()

        def end_batch(self):
            return []

        def dead_letter_rejection(self, *args):
            return RecordOutputs()

    runner = StageRunner("correlate", lambda on_revoked: consumer, NoOutputs(), sink, FakeProducer(),
                         poll_timeout_ms=1, poll_max_records=10, shutdown_timeout_s=1, commit_interval_s=0.0)
    sink.offer(_timer_action())
    assert sink.pending == 1
    runner.step()
    assert transport.indexed.keys() == {("siem-alerts-2026.09.21", "m1")}
    assert consumer.committed == {("raw", 0): 1}
    assert sink.pending == 0


def _timer_action():
    return BulkAction("siem-alerts-2026.09.21", "m1", b'{"a":1}', TIMER_TOKEN)


def test_commit_never_includes_the_timer_partition():
    consumer = FakeConsumer([])
    stage_stub = type("S", (), {"lookback_ms": 0, "rebuild": lambda self, recs: 0})()
    wrapper = RebuildingConsumer(lambda on_assigned: consumer, stage_stub, lambda p, lb: [])
    wrapper.commit({(TIMER_TOPIC, -1): 1, ("siem.alerts", 0): 5})
    assert consumer.commits == [{("siem.alerts", 0): 5}]


def test_plain_bulk_sink_is_unchanged_by_the_subclass():
    assert issubclass(TimerFedSink, BulkSink)


# ---- rebuild ---------------------------------------------------------------------------------------------


def test_rebuild_after_assignment_restores_windows_without_emitting(correlations):
    stage, _, _ = make_stage(correlations)
    history = [input_record(failed_input(stage, n), offset=n) for n in range(2)]
    asked: list[tuple[set[object], int]] = []

    def reader(partitions, lookback_ms):
        asked.append((set(partitions), lookback_ms))
        return history

    hooks: dict[str, Any] = {}

    class Inner(FakeConsumer):
        def poll(self, timeout_ms, max_records):
            hooks["on_assigned"]({("siem.alerts", 0)})  # the assignment happens inside poll
            return super().poll(timeout_ms, max_records)

    live = input_record(failed_input(stage, 2), offset=2)
    inner = Inner([live])

    def factory(on_assigned):
        hooks["on_assigned"] = on_assigned
        return inner

    wrapper = RebuildingConsumer(factory, stage, reader)
    (polled,) = wrapper.poll(10, 10)
    assert asked == [({("siem.alerts", 0)}, 30 * 60_000 + 900_000)]
    assert stage.engine.buffered_inputs() == 2
    (action,) = stage.process(polled).actions  # the third alert completes the rebuilt window
    assert action.doc_id == match_id(BURST_ID, ("203.0.113.66",), T0)


def test_rebuild_of_an_already_matched_window_emits_nothing_again(correlations):
    stage, _, _ = make_stage(correlations)
    history = [input_record(failed_input(stage, n), offset=n) for n in range(3)]
    history.append(record(b"garbage", offset=3))  # skipped: it was dead-lettered the first time
    assert stage.rebuild(history) == 3
    assert stage.engine.stats.matches == 1
    # a redelivered alert inside the consumed window is suppressed, not a second correlation
    assert stage.process(input_record(failed_input(stage, 1), offset=4)).actions == []
    assert stage.engine.stats.suppressed == 1


def test_rebuild_makes_the_store_sync_before_its_next_search(correlations):
    # A rebuild follows every assignment: incidents the partitions' previous owner wrote (not refreshed per write)
    # must be searchable before this stage looks one up.
    stage, backend, _ = make_stage(correlations)
    doc = {"@timestamp": "2026-09-21T14:13:20.000Z", "event": {"id": "a1", "kind": "alert"},
           "rule": {"id": "r1", "name": "Admin policy attached"}, "siem": {"level": "high"}, "user": {"name": "eve"}}
    stage.process(record(encode_incident_alert("a1", doc)[1]))
    stage.end_batch()
    assert backend.syncs == 1
    stage.rebuild([])
    doc2 = {**doc, "event": {"id": "a2", "kind": "alert"}}
    stage.process(record(encode_incident_alert("a2", doc2)[1], offset=1))
    stage.end_batch()
    assert backend.syncs == 2
    ((incident, _),) = backend.docs.values()
    assert incident["alert_ids"] == ["a1", "a2"]


# ---- rule reload ---------------------------------------------------------------------------------------------


def test_a_rule_reload_applies_at_the_next_poll_and_keeps_unchanged_windows(tmp_path):
    rule_file = tmp_path / "rules.yml"
    rule_file.write_text(RULES, encoding="utf-8")
    holder = RuleSetHolder.from_settings(RulesSettings(directories=[tmp_path]))
    settings = Settings()
    follower = CorrelationsFollower(holder, settings.correlation.entity_fields)
    store = IncidentStore(MemoryBackend(), settings.incidents, clock_ms=lambda: T0)
    stage = CorrelateStage(settings, follower.current, store, threading.Lock(), follower=follower)
    timer = CorrelationTimer(stage.engine, lambda matches: None, 60.0, lock=stage.lock)
    stage.bind_timer(timer, lambda outputs: None)
    for n in range(2):
        assert stage.process(input_record(failed_input(stage, n), offset=n)).actions == []

    engine_before = stage.engine

    # Retitle the burst rule (its windows stay) and tighten "too few logins" (a changed definition starts empty).
    rule_file.write_text(
        RULES.replace("title: Login burst", "title: Console login burst").replace("{lt: 2}", "{lt: 3}"),
        encoding="utf-8",
    )
    assert holder.reload()
    assert stage.engine is engine_before, "nothing changes in the middle of a poll batch"
    wrapper = RebuildingConsumer(
        lambda on_assigned: FakeConsumer([input_record(failed_input(stage, 2), offset=2)]),
        stage,
        lambda partitions, lookback_ms: [],
    )
    (polled,) = wrapper.poll(10, 10)
    assert stage.engine is not engine_before and timer.engine is stage.engine, "the timer advances the new engine"
    assert stage.engine.buffered_inputs() == 2
    (action,) = stage.process(polled).actions  # the third alert completes the window kept across the reload
    assert action.doc_id == match_id(BURST_ID, ("203.0.113.66",), T0)
    assert orjson.loads(action.source)["siem"]["title"] == "Console login burst", "the reloaded rule renders it"
    assert stage.follow_rules() is False, "nothing changed since: no second swap"


# ---- inputs combined per key (the detect stage's batches) -------------------------------------------------


def batch_record(inputs: list[CorrelationInput], offset: int) -> SourceRecord:
    batcher = InputBatcher("siem.alerts")
    for inp in inputs:
        batcher.add(*encode_correlation_input(inp))
    ((_, _, value),) = batcher.drain()
    return record(value, offset)


def test_a_batch_of_inputs_is_correlated_as_its_inputs_one_by_one(correlations):
    stage, _, _ = make_stage(correlations)
    outputs = stage.process(batch_record([failed_input(stage, n) for n in range(3)], offset=5))
    (action,) = outputs.actions
    assert action.doc_id == match_id(BURST_ID, ("203.0.113.66",), T0)
    assert action.token == Token("siem.alerts", 0, 5, "alert", "correlation")
    assert orjson.loads(action.source)["siem"]["correlation"]["alert_ids"] == ["a0", "a1", "a2"]
    assert outputs.deferred  # its incident is written at the end of the poll batch


@pytest.mark.parametrize(
    "raw",
    [
        b'{"type": "batch", "messages": []}',
        b'{"type": "batch"}',
        b'{"type": "batch", "messages": [{"type": "incident_alert", "alert": {}}]}',
    ],
    ids=["empty", "no-messages", "incident-alert-inside"],
)
def test_a_batch_that_is_not_only_inputs_goes_to_the_dlq_whole(correlations, raw):
    stage, _, settings = make_stage(correlations)
    (action,) = stage.process(record(raw, offset=3)).actions
    assert action.index == settings.elasticsearch.dlq_index
    assert orjson.loads(action.source)["dlq"]["error_type"] == "wrong_shape"


def test_a_batch_with_one_bad_input_feeds_none_of_them(correlations):
    stage, _, _ = make_stage(correlations)
    good = encode_correlation_input(failed_input(stage, 0))[1]
    raw = b'{"type":"batch","messages":[' + good + b',{"type":"correlation_input","input":{}}]}'
    (action,) = stage.process(record(raw)).actions
    assert orjson.loads(action.source)["dlq"]["error_type"] == "wrong_shape"
    assert stage.engine.buffered_inputs() == 0


def test_rebuild_replays_every_input_of_a_batch(correlations):
    stage, _, _ = make_stage(correlations)
    assert stage.rebuild([batch_record([failed_input(stage, n) for n in range(2)], offset=0)]) == 2
    assert stage.engine.buffered_inputs() == 2
    (action,) = stage.process(input_record(failed_input(stage, 2), offset=1)).actions
    assert action.doc_id == match_id(BURST_ID, ("203.0.113.66",), T0)
