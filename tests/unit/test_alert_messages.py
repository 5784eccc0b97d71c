"""Correlation inputs combined per key for one poll batch, and taken apart again."""

from __future__ import annotations

import orjson
import pytest

from correlation.windows.messages import CorrelationInput
from ingest.alert_messages import (
    IncidentAlert,
    InputBatcher,
    decode,
    decode_record,
    encode_correlation_input,
    encode_incident_alert,
)


def _input(key: str, n: int) -> CorrelationInput:
    return CorrelationInput(
        correlation_id=key,
        group_key=("203.0.113.7",),
        rule_id="r1",
        rule_name="failed_login",
        ref_index=0,
        timestamp_ms=1_790_000_000_000 + n,
        alert_id=f"a{n}",
        event_id=f"e{n}",
    )


def test_inputs_of_one_key_travel_as_one_message_in_their_order():
    batcher = InputBatcher("siem.alerts")
    for n in range(5):
        batcher.add(*encode_correlation_input(_input("c1" if n % 2 == 0 else "c2", n)))
    messages = batcher.drain()
    assert [(topic, key) for topic, key, _ in messages] == [
        ("siem.alerts", _input("c1", 0).key),
        ("siem.alerts", _input("c2", 1).key),
    ]
    first, second = (decode_record(value) for _, _, value in messages)
    assert isinstance(first, list) and isinstance(second, list)
    assert [inp.alert_id for inp in first] == ["a0", "a2", "a4"]
    assert [inp.alert_id for inp in second] == ["a1", "a3"]
    assert first[1] == _input("c1", 2)  # nothing lost on the way
    assert batcher.drain() == [], "drained: the next poll batch starts empty"


def test_a_single_input_travels_in_its_own_envelope():
    batcher = InputBatcher("siem.alerts")
    key, value = encode_correlation_input(_input("c1", 0))
    batcher.add(key, value)
    assert batcher.drain() == [("siem.alerts", key, value)]
    assert decode_record(value) == [_input("c1", 0)]
    assert decode(value) == _input("c1", 0)


def test_a_key_that_outgrows_the_size_limit_is_split_keeping_its_order():
    batcher = InputBatcher("siem.alerts", max_bytes=1000)
    encoded = [encode_correlation_input(_input("c1", n)) for n in range(12)]
    for key, value in encoded:
        batcher.add(key, value)
    messages = batcher.drain()
    assert len(messages) > 1
    assert all(len(value) <= 1000 + 64 for _, _, value in messages)  # the limit plus the envelope
    alert_ids = [inp.alert_id for _, _, value in messages for inp in decode_record(value)]  # type: ignore[union-attr]
    assert alert_ids == [f"a{n}" for n in range(12)]


def test_an_incident_alert_decodes_alone_and_never_inside_a_batch():
    key, value = encode_incident_alert("alert-1", {"event": {"id": "alert-1"}})
    assert decode_record(value) == IncidentAlert({"event": {"id": "alert-1"}})
    batch = b'{"type":"batch","messages":[' + value + b"]}"
    with pytest.raises(ValueError, match="other than correlation inputs"):
        decode_record(batch)
    with pytest.raises(ValueError, match="unknown alert message type 'batch'"):
        decode(batch)  # one message only: a batch is for decode_record


def test_a_combined_message_is_plain_json():
    batcher = InputBatcher("siem.alerts")
    for n in range(2):
        batcher.add(*encode_correlation_input(_input("c1", n)))
    ((_, _, value),) = batcher.drain()
    message = orjson.loads(value)
    assert message["type"] == "batch"
    assert [m["type"] for m in message["messages"]] == ["correlation_input", "correlation_input"]
