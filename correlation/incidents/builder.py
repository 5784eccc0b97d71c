"""From alerts and correlation matches to incident updates.

A :class:`Signal` is what an incident needs from either source. ``open_incident`` starts an incident from a
signal; ``attach`` merges a signal into an incident and is idempotent per alert id, so replaying the
same alert (restart, at-least-once delivery) does not count it twice while its id is in the kept list.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from correlation.incidents.model import ACTIVE, ENTITY_KINDS, LEVEL_SCORE, LEVELS, Incident, RuleRef
from correlation.windows.documents import attack_from_tags, iso
from correlation.windows.messages import CorrelationMatch, stable_hash
from correlation.windows.rules import CompiledCorrelation
from siem.config import IncidentSettings


@dataclass(frozen=True, slots=True)
class Signal:
    key: str
    timestamp_ms: int
    level: str
    rule_id: str
    rule_name: str
    kind: str  # "detection" | "correlation"
    alert_id: str
    event_ids: tuple[str, ...] = ()
    tactics: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    entities: tuple[tuple[str, str], ...] = ()  # (field, value)
    alert_ids: tuple[str, ...] = field(default=())  # base alerts a correlation covers
    # (topic, partition, offset) of the message that carried the alert, when it came from Kafka: replay detection
    # that still works once an incident holds more alert ids than it keeps (see ``attach``)
    position: tuple[str, int, int] | None = None


def entity_kind(fieldname: str, value: str) -> str | None:
    """Which ``entities`` list a field value belongs to."""
    lowered = fieldname.lower()
    if lowered.endswith(".ip") or lowered == "ip":
        return "ips"
    if "namespace" in lowered:
        return "namespaces"
    if lowered.endswith("pod.name") or lowered == "pod":
        return "pods"
    if "account" in lowered:
        return "accounts"
    if value.startswith("arn:") and (":role/" in value or ":assumed-role/" in value):
        return "roles"
    if "user" in lowered or lowered.endswith(".arn"):
        return "users"
    return None


def _lookup(doc: dict[str, Any], dotted: str) -> Any:
    if dotted in doc:
        return doc[dotted]
    current: Any = doc
    for part in dotted.split("."):
        if not isinstance(current, dict) or part not in current:
            return None
        current = current[part]
    return current


def level_at_least(level: str, minimum: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(minimum) if level in LEVELS else False


def signal_from_alert(doc: dict[str, Any], settings: IncidentSettings, min_level: str) -> Signal | None:
    """A single detection alert opens/updates an incident when its level is at least ``min_level`` and it
    has a key entity (without one, there is nothing to group by: it stays a plain alert)."""
    rule = doc.get("rule") or {}
    level = str(
        _lookup(doc, "siem.level") or _lookup(doc, "sigma.level") or _lookup(doc, "log.level") or _level_from_score(doc)
    )
    if not level_at_least(level, min_level):
        return None
    entities = _entities_of(lambda f: _lookup(doc, f), settings.key_fields)
    key_pair = next(iter(entities), None)
    if key_pair is None:
        return None
    threat = doc.get("threat") or {}
    tactics = _as_list(_lookup(threat, "tactic.name"))
    techniques = _as_list(_lookup(threat, "technique.id"))
    event_id = _lookup(doc, "siem.source_event.id") or _lookup(doc, "event.reference")
    alert_id = str(_lookup(doc, "event.id") or doc.get("_id") or stable_hash(repr(sorted(doc))))
    ts = doc.get("@timestamp")
    return Signal(
        key=f"{key_pair[0]}={key_pair[1]}",
        timestamp_ms=_epoch_ms(ts),
        level=level,
        rule_id=str(rule.get("id", "")),
        rule_name=str(rule.get("name", "")),
        kind="detection",
        alert_id=alert_id,
        event_ids=(str(event_id),) if event_id else (),
        tactics=tuple(tactics),
        techniques=tuple(techniques),
        entities=entities,
    )


def _level_from_score(doc: dict[str, Any]) -> str:
    score = _lookup(doc, "event.severity")
    if not isinstance(score, int | float):
        return "informational"
    best = "informational"
    for name in LEVELS:
        if score >= LEVEL_SCORE[name]:
            best = name
    return best


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]


def _epoch_ms(value: Any) -> int:
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    return 0


def _entities_of(get: Callable[[str], Any], fields: Iterable[str]) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for name in fields:
        for value in _as_list(get(name)):
            pairs.append((name, value))
    return tuple(pairs)


def signal_from_match(
    rule: CompiledCorrelation, match: CorrelationMatch, settings: IncidentSettings
) -> Signal:
    entities = tuple(dict.fromkeys(match.group_fields + match.entities))
    if settings.correlation_key == "entity":
        by_field = dict(match.entities + match.group_fields)
        keyed = next(((f, by_field[f]) for f in settings.key_fields if f in by_field), None)
        key = f"{keyed[0]}={keyed[1]}" if keyed else _group_key(rule, match)
    else:
        key = _group_key(rule, match)
    tactics, techniques = attack_from_tags(rule.tags)
    return Signal(
        key=key,
        timestamp_ms=match.decided_ms,
        level=rule.level or "medium",
        rule_id=rule.id,
        rule_name=rule.name or rule.title,
        kind="correlation",
        alert_id=match.id,
        event_ids=match.event_ids,
        tactics=tuple(tactics),
        techniques=tuple(techniques),
        entities=entities,
        alert_ids=match.alert_ids,
    )


def _group_key(rule: CompiledCorrelation, match: CorrelationMatch) -> str:
    return "corr:" + rule.id + ":" + "|".join(f"{f}={v}" for f, v in match.group_fields)


def incident_id(signal: Signal) -> str:
    """Deterministic: the incident a given first signal opens always has the same id."""
    return stable_hash("incident", signal.key, signal.alert_id)


def open_incident(signal: Signal, settings: IncidentSettings, now_ms: int) -> Incident:
    at = iso(now_ms)
    first = iso(signal.timestamp_ms)
    incident = Incident(
        id=incident_id(signal),
        key=signal.key,
        title=f"{signal.rule_name} ({signal.key})",
        first_seen=first,
        last_seen=first,
        first_seen_ms=signal.timestamp_ms,
        last_seen_ms=signal.timestamp_ms,
        severity=signal.level,
        severity_score=LEVEL_SCORE.get(signal.level, 47),
        created=at,
        updated=at,
    )
    attach(incident, signal, settings, now_ms)
    return incident


def _add_unique(target: list[str], values: Iterable[str], cap: int) -> None:
    for value in values:
        if len(target) >= cap:
            return
        if value not in target:
            target.append(value)


def already_attached(incident: Incident, signal: Signal) -> bool:
    """Whether ``signal`` is a replay of one ``incident`` (or an earlier incident of its key) took already.

    Replays are recognized by the message position when the signal has one: the messages of one partition are
    handled in offset order, so one at or below the highest offset taken from that partition was applied before.
    An incident opened after an earlier one of its key refused a signal inherits that one's offsets (see
    ``IncidentStore.record``), so the latest incident of a key knows everything the key took; correlation matches,
    which have no position, by the match ids it inherits. The alert ids alone would miss replays once
    ``max_alert_ids`` truncated the list, and those attached to an earlier incident."""
    if signal.position is not None:
        topic, partition, offset = signal.position
        if incident.applied_offsets.get(f"{topic}/{partition}", -1) >= offset:
            return True
    if signal.kind == "correlation" and signal.alert_id in incident.inherited_correlation_ids:
        return True
    return signal.alert_id in incident.alert_ids


def attach(incident: Incident, signal: Signal, settings: IncidentSettings, now_ms: int) -> bool:
    """Merge ``signal`` into ``incident``; False if it was already attached (a replay after a crash or restart)."""
    if already_attached(incident, signal):
        return False
    if signal.position is not None:
        topic, partition, offset = signal.position
        incident.applied_offsets[f"{topic}/{partition}"] = offset
    incident.alert_count += 1
    if len(incident.alert_ids) < settings.max_alert_ids:
        incident.alert_ids.append(signal.alert_id)
    else:
        incident.alert_ids_truncated = True
    before = len(incident.evidence_event_ids)
    _add_unique(incident.evidence_event_ids, signal.event_ids, settings.max_evidence_ids)
    incident.evidence_event_count += max(len(signal.event_ids), len(incident.evidence_event_ids) - before)
    if signal.kind == "correlation":
        _add_unique(incident.correlation_ids, [signal.alert_id], settings.max_alert_ids)
    _merge_rule(incident, signal)
    _add_unique(incident.tactics, signal.tactics, 50)
    _add_unique(incident.techniques, signal.techniques, 200)
    for fieldname, value in signal.entities:
        kind = entity_kind(fieldname, value)
        if kind is not None:
            _add_unique(incident.entities.setdefault(kind, []), [value], settings.max_entities)
    if signal.timestamp_ms < incident.first_seen_ms:
        incident.first_seen_ms, incident.first_seen = signal.timestamp_ms, iso(signal.timestamp_ms)
    if signal.timestamp_ms > incident.last_seen_ms:
        incident.last_seen_ms, incident.last_seen = signal.timestamp_ms, iso(signal.timestamp_ms)
    score = LEVEL_SCORE.get(signal.level, 47)
    if score > incident.severity_score:
        incident.severity_score, incident.severity = score, signal.level
    incident.risk_score = risk_score(incident)
    incident.updated = iso(now_ms)
    return True


def _merge_rule(incident: Incident, signal: Signal) -> None:
    for ref in incident.rules:
        if ref.id == signal.rule_id:
            ref.alert_count += 1
            return
    incident.rules.append(RuleRef(id=signal.rule_id, name=signal.rule_name, kind=signal.kind, alert_count=1))


def risk_score(incident: Incident) -> float:
    """Severity of the worst alert, raised by breadth: distinct rules, correlations, volume (max 100)."""
    breadth = 4 * (len(incident.rules) - 1) + 6 * len(incident.correlation_ids)
    volume = 3 * math.log2(max(incident.alert_count, 1))
    return round(min(100.0, incident.severity_score + breadth + volume), 1)


def is_attachable(incident: Incident, signal: Signal, settings: IncidentSettings) -> bool:
    window_ms = int(settings.attach_window_s * 1000)
    return incident.status in ACTIVE and signal.timestamp_ms - incident.last_seen_ms <= window_ms


__all__ = [
    "ENTITY_KINDS",
    "Signal",
    "already_attached",
    "attach",
    "open_incident",
    "signal_from_alert",
    "signal_from_match",
]
