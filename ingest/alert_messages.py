"""Messages on the ``siem.alerts`` topic, from the detect stage to the correlate stage.

Two kinds share the topic: correlation inputs (keyed by correlation rule + group key, so one group lives in one
correlator process) and alerts that are severe enough to open or update an incident on their own (keyed by
alert id). A small envelope tells them apart.

The detect stage combines the correlation inputs of a poll batch that share a key into one message (a ``batch``
envelope around them, in order; see :class:`InputBatcher`): a kafka-python ``send`` costs ~29 µs of the stage
thread plus ~17 µs of the producer's I/O thread, and a burst of one user's activity makes many inputs of one key.
Incident alerts always travel alone: the incident store names each by its message position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import orjson

from correlation.windows.messages import CorrelationInput
from ingest.kafka_io import KafkaMessage

CORRELATION_INPUT = "correlation_input"
INCIDENT_ALERT = "incident_alert"
BATCH = "batch"
# A combined message stays well below the topic's and the producer's size limits (1 MiB and more).
MAX_BATCH_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class IncidentAlert:
    document: dict[str, Any]


def encode_correlation_input(inp: CorrelationInput) -> tuple[bytes, bytes]:
    return inp.key, orjson.dumps({"type": CORRELATION_INPUT, "input": inp.to_dict()})


def encode_incident_alert(alert_id: str, document: dict[str, Any]) -> tuple[bytes, bytes]:
    return alert_id.encode(), orjson.dumps({"type": INCIDENT_ALERT, "alert": document})


def combine(values: list[bytes]) -> bytes:
    """One message carrying ``values`` (encoded messages of one key) in their order; a single one as it is."""
    if len(values) == 1:
        return values[0]
    # Each value is a JSON object already: joined as bytes, not decoded and encoded again.
    return b'{"type":"' + BATCH.encode() + b'","messages":[' + b",".join(values) + b"]}"


class InputBatcher:
    """Correlation input messages of one poll batch, combined per key (order kept within a key)."""

    def __init__(self, topic: str, max_bytes: int = MAX_BATCH_BYTES) -> None:
        self._topic = topic
        self._max_bytes = max_bytes
        self._groups: dict[bytes, tuple[list[bytes], int]] = {}  # key -> (values, their size in the message)
        self._full: list[KafkaMessage] = []  # combined messages that reached max_bytes

    def add(self, key: bytes, value: bytes) -> None:
        group = self._groups.get(key)
        if group is None:
            self._groups[key] = ([value], len(value))
            return
        values, size = group
        size += len(value) + 1
        if size > self._max_bytes:
            self._full.append((self._topic, key, combine(values)))
            self._groups[key] = ([value], len(value))
            return
        values.append(value)
        self._groups[key] = (values, size)

    def drain(self) -> list[KafkaMessage]:
        """Every input added since the last drain, one message per key (more if it outgrew ``max_bytes``); a key's
        earlier messages come first."""
        messages = self._full
        messages.extend((self._topic, key, combine(values)) for key, (values, _) in self._groups.items())
        self._full = []
        self._groups.clear()
        return messages


def decode(raw: bytes) -> CorrelationInput | IncidentAlert:
    """One message; raises ValueError (or orjson.JSONDecodeError, a ValueError) on anything that is not one of
    ours, a ``batch`` included (see :func:`decode_record`)."""
    return _message(orjson.loads(raw))


def decode_record(raw: bytes) -> IncidentAlert | list[CorrelationInput]:
    """What a record carries: an incident alert, or correlation inputs (one, or those of a ``batch`` in order). All
    or nothing: raises ValueError on anything that is not ours, and on a batch with any such part (or an incident
    alert: those travel alone)."""
    message = orjson.loads(raw)
    if isinstance(message, dict) and message.get("type") == BATCH:
        parts = message.get("messages")
        if not isinstance(parts, list) or not parts:
            raise ValueError("batch alert message without messages")
        inputs = [_message(part) for part in parts]
        if not all(isinstance(inp, CorrelationInput) for inp in inputs):
            raise ValueError("batch alert message with something other than correlation inputs")
        return cast(list[CorrelationInput], inputs)
    decoded = _message(message)
    return decoded if isinstance(decoded, IncidentAlert) else [decoded]


def _message(message: Any) -> CorrelationInput | IncidentAlert:
    if not isinstance(message, dict):
        raise ValueError("alert message is not a JSON object")
    kind = message.get("type")
    if kind == CORRELATION_INPUT:
        return CorrelationInput.from_dict(message["input"])
    if kind == INCIDENT_ALERT:
        return IncidentAlert(message["alert"])
    raise ValueError(f"unknown alert message type {kind!r}")
