"""What flows through the correlate stage: inputs (one per alert and correlation) and matches.

Ids are deterministic so a rebuilt engine (replay from Kafka) produces the same documents, which the sink
writes with ``op_type=create``: a duplicate is a 409, not a second correlation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

_SEP = b"\x1f"


def stable_hash(*parts: str | int, size: int = 16) -> str:
    """Hex digest of the parts; a separator keeps ("ab","c") and ("a","bc") apart."""
    digest = hashlib.blake2b(digest_size=size)
    for part in parts:
        digest.update(str(part).encode("utf-8"))
        digest.update(_SEP)
    return digest.hexdigest()


def partition_key(correlation_id: str, group_key: tuple[str, ...]) -> bytes:
    """Kafka key on ``siem.alerts``: every input of one (correlation, group key) lands on one partition."""
    return stable_hash(correlation_id, *group_key).encode("ascii")


def match_id(correlation_id: str, group_key: tuple[str, ...], window_start_ms: int) -> str:
    return stable_hash("correlation", correlation_id, window_start_ms, *group_key)


@dataclass(slots=True)
class CorrelationInput:
    """One alert as seen by one correlation rule.

    ``ref_index`` is the position of the alert's rule in the correlation's ``rules`` list; ``value`` is the
    correlation's ``field`` for ``value_*`` types; ``derived`` marks inputs made from a child correlation's
    match (they are not subject to lateness: the match itself was produced deterministically).
    """

    correlation_id: str
    group_key: tuple[str, ...]
    rule_id: str
    rule_name: str | None
    ref_index: int
    timestamp_ms: int
    alert_id: str
    event_id: str | None = None
    value: str | float | None = None
    entities: tuple[tuple[str, str], ...] | None = None
    derived: bool = False

    @property
    def key(self) -> bytes:
        return partition_key(self.correlation_id, self.group_key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "correlation_id": self.correlation_id,
            "group_key": list(self.group_key),
            "rule_id": self.rule_id,
            "rule_name": self.rule_name,
            "ref_index": self.ref_index,
            "timestamp_ms": self.timestamp_ms,
            "alert_id": self.alert_id,
            "event_id": self.event_id,
            "value": self.value,
            "entities": [list(pair) for pair in self.entities] if self.entities else None,
            "derived": self.derived,
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CorrelationInput:
        entities = data.get("entities")
        return cls(
            correlation_id=str(data["correlation_id"]),
            group_key=tuple(str(v) for v in data["group_key"]),
            rule_id=str(data["rule_id"]),
            rule_name=data.get("rule_name"),
            ref_index=int(data["ref_index"]),
            timestamp_ms=int(data["timestamp_ms"]),
            alert_id=str(data["alert_id"]),
            event_id=data.get("event_id"),
            value=data.get("value"),
            entities=tuple((str(k), str(v)) for k, v in entities) if entities else None,
            derived=bool(data.get("derived", False)),
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> CorrelationInput:
        return cls.from_dict(orjson.loads(raw))


@dataclass(frozen=True, slots=True)
class CorrelationMatch:
    """A correlation rule matched for one group key in one window."""

    id: str
    correlation_id: str
    group_key: tuple[str, ...]
    group_fields: tuple[tuple[str, str], ...]
    window_start_ms: int
    window_end_ms: int
    decided_ms: int
    aggregate: float
    input_count: int
    rule_ids: tuple[str, ...]
    alert_ids: tuple[str, ...]
    event_ids: tuple[str, ...]
    entities: tuple[tuple[str, str], ...]

    def fields(self) -> dict[str, str]:
        return dict(self.group_fields)
