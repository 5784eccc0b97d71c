"""The incident document (one per incident in ``siem-incidents``) and its status changes."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

LEVELS = ("informational", "low", "medium", "high", "critical")
LEVEL_SCORE = {"informational": 21, "low": 21, "medium": 47, "high": 73, "critical": 99}
ENTITY_KINDS = ("users", "roles", "accounts", "ips", "namespaces", "pods")


def _empty_entities() -> dict[str, list[str]]:
    return {kind: [] for kind in ENTITY_KINDS}


class Status(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    FALSE_POSITIVE = "false_positive"


ACTIVE = (Status.OPEN, Status.ACKNOWLEDGED)


class HistoryEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: str
    by: str
    action: str
    from_status: Status | None = None
    to_status: Status | None = None
    reason: str | None = None


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: str
    by: str
    text: str


class RuleRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    name: str
    kind: str = "detection"  # or "correlation"
    alert_count: int = 0


class Incident(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    key: str
    title: str
    status: Status = Status.OPEN
    severity: str = "medium"
    severity_score: int = 47
    risk_score: float = 0.0
    rules: list[RuleRef] = Field(default_factory=list)
    tactics: list[str] = Field(default_factory=list)
    techniques: list[str] = Field(default_factory=list)
    entities: dict[str, list[str]] = Field(default_factory=lambda: _empty_entities())
    first_seen: str
    last_seen: str
    first_seen_ms: int
    last_seen_ms: int
    alert_count: int = 0
    alert_ids: list[str] = Field(default_factory=list)
    alert_ids_truncated: bool = False
    evidence_event_count: int = 0
    evidence_event_ids: list[str] = Field(default_factory=list)
    correlation_ids: list[str] = Field(default_factory=list)
    applied_offsets: dict[str, int] = Field(default_factory=dict)  # "topic/partition" -> highest offset attached
    # Replay bookkeeping: ids of correlation matches the key's earlier incidents took (a match carries no message
    # position; decided again after a restart, it must not count in this one). See ``IncidentStore._place``.
    inherited_correlation_ids: list[str] = Field(default_factory=list)
    assignee: str | None = None
    notes: list[Note] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)
    created: str
    updated: str

    def to_doc(self) -> dict[str, Any]:
        doc = self.model_dump(mode="json")
        doc["@timestamp"] = self.first_seen
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Incident:
        data = {k: v for k, v in doc.items() if k != "@timestamp"}
        return cls.model_validate(data)


class TransitionError(ValueError):
    """A status change that makes no sense (e.g. acknowledging a resolved incident)."""


ALLOWED: dict[Status, tuple[Status, ...]] = {
    Status.OPEN: (Status.ACKNOWLEDGED, Status.RESOLVED, Status.FALSE_POSITIVE),
    Status.ACKNOWLEDGED: (Status.OPEN, Status.RESOLVED, Status.FALSE_POSITIVE),
    Status.RESOLVED: (Status.OPEN,),
    Status.FALSE_POSITIVE: (Status.OPEN,),
}


def change_status(incident: Incident, to: Status, by: str, at: str, reason: str | None = None) -> None:
    if to not in ALLOWED[incident.status]:
        raise TransitionError(f"cannot go from {incident.status.value} to {to.value}")
    incident.history.append(
        HistoryEntry(at=at, by=by, action="status", from_status=incident.status, to_status=to, reason=reason)
    )
    incident.status = to
    incident.updated = at


def assign(incident: Incident, assignee: str | None, by: str, at: str, reason: str | None = None) -> None:
    incident.history.append(
        HistoryEntry(at=at, by=by, action=f"assign:{assignee or '-'}", reason=reason)
    )
    incident.assignee = assignee
    incident.updated = at


def add_note(incident: Incident, text: str, by: str, at: str) -> None:
    incident.notes.append(Note(at=at, by=by, text=text))
    incident.history.append(HistoryEntry(at=at, by=by, action="note", reason=text[:200]))
    incident.updated = at
