"""Messages on the ``siem.alerts`` topic, from the detect stage to the correlate stage.

Two kinds share the topic: correlation inputs (keyed by correlation rule + group key, so one group lives in one
correlator process) and alerts that are severe enough to open or update an incident on their own (keyed by
alert id). A small envelope tells them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from correlation.windows.messages import CorrelationInput

CORRELATION_INPUT = "correlation_input"
INCIDENT_ALERT = "incident_alert"


@dataclass(frozen=True, slots=True)
class IncidentAlert:
    document: dict[str, Any]


def encode_correlation_input(inp: CorrelationInput) -> tuple[bytes, bytes]:
    return inp.key, orjson.dumps({"type": CORRELATION_INPUT, "input": inp.to_dict()})


def encode_incident_alert(alert_id: str, document: dict[str, Any]) -> tuple[bytes, bytes]:
    return alert_id.encode(), orjson.dumps({"type": INCIDENT_ALERT, "alert": document})


def decode(raw: bytes) -> CorrelationInput | IncidentAlert:
    """Raises ValueError (or orjson.JSONDecodeError, a ValueError) on anything that is not one of ours."""
    message = orjson.loads(raw)
    if not isinstance(message, dict):
        raise ValueError("alert message is not a JSON object")
    kind = message.get("type")
    if kind == CORRELATION_INPUT:
        return CorrelationInput.from_dict(message["input"])
    if kind == INCIDENT_ALERT:
        return IncidentAlert(message["alert"])
    raise ValueError(f"unknown alert message type {kind!r}")
