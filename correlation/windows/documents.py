"""A :class:`CorrelationMatch` as an ECS alert document for ``siem-alerts-<day>`` (id = match id)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from correlation.windows.messages import CorrelationMatch
from correlation.windows.rules import CompiledCorrelation

SEVERITY = {"informational": 21, "low": 21, "medium": 47, "high": 73, "critical": 99}
_TECHNIQUE = re.compile(r"^attack\.(t\d{4}(?:\.\d{3})?)$", re.IGNORECASE)
_GROUP_OR_SOFTWARE = re.compile(r"^attack\.[gs]\d{4}$", re.IGNORECASE)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y.%m.%d")


def attack_from_tags(tags: tuple[str, ...] | list[str]) -> tuple[list[str], list[str]]:
    """(tactic names, technique ids) from Sigma ``attack.*`` tags."""
    tactics: list[str] = []
    techniques: list[str] = []
    for tag in tags:
        lowered = tag.lower()
        if not lowered.startswith("attack."):
            continue
        technique = _TECHNIQUE.match(lowered)
        if technique:
            techniques.append(technique.group(1).upper())
        elif not _GROUP_OR_SOFTWARE.match(lowered):
            tactics.append(lowered.removeprefix("attack."))
    return tactics, techniques


def threat_block(tags: tuple[str, ...] | list[str]) -> dict[str, Any]:
    tactics, techniques = attack_from_tags(tags)
    return {
        "framework": "MITRE ATT&CK",
        "tactic": {"name": tactics},
        "technique": {"id": techniques},
    }


def correlation_alert(rule: CompiledCorrelation, match: CorrelationMatch) -> dict[str, Any]:
    level = rule.level or "medium"
    related_ips = [v for k, v in match.entities if k.endswith(".ip")]
    related_users = [v for k, v in match.entities if k.endswith((".name", ".arn", ".username"))]
    return {
        "@timestamp": iso(match.decided_ms),
        "event": {
            "kind": "alert",
            "id": match.id,
            "severity": SEVERITY.get(level, 47),
            "start": iso(match.window_start_ms),
            "end": iso(match.window_end_ms),
            "dataset": "siem.correlation",
        },
        "rule": {
            "id": rule.id,
            "name": rule.name or rule.title,
            "description": rule.description,
            "ruleset": "sigma-correlation",
            "category": rule.type,
        },
        "threat": threat_block(rule.tags),
        "related": {"ip": related_ips, "user": related_users},
        "siem": {
            "level": level,
            "title": rule.title,
            "correlation": {
                "type": rule.type,
                "group_by": dict(match.group_fields),
                "group_key": list(match.group_key),
                "aggregate": match.aggregate,
                "input_count": match.input_count,
                "timespan_ms": rule.timespan_ms,
                "rule_ids": list(match.rule_ids),
                "alert_ids": list(match.alert_ids),
                "event_ids": list(match.event_ids),
                "entities": [{"field": k, "value": v} for k, v in match.entities],
            },
        },
    }
