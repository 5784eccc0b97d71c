"""Alert documents (ECS ``event.kind: alert``) for rule matches.

The Detection Rule License requires alerts from community rules to keep the rule's author, so ``rule.author``
is always copied. Alert ids are deterministic (rule id + event id): re-processing a record after a restart
overwrites the same alert instead of duplicating it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from correlation.detection.engine import Match

SEVERITY: dict[str, tuple[int, int]] = {  # level -> (event.severity, risk score)
    "informational": (1, 5),
    "low": (2, 21),
    "medium": (3, 47),
    "high": (4, 73),
    "critical": (5, 99),
}

TACTICS: dict[str, tuple[str, str]] = {
    "reconnaissance": ("TA0043", "Reconnaissance"),
    "resource-development": ("TA0042", "Resource Development"),
    "initial-access": ("TA0001", "Initial Access"),
    "execution": ("TA0002", "Execution"),
    "persistence": ("TA0003", "Persistence"),
    "privilege-escalation": ("TA0004", "Privilege Escalation"),
    "defense-evasion": ("TA0005", "Defense Evasion"),
    "stealth": ("TA0005", "Stealth"),
    "credential-access": ("TA0006", "Credential Access"),
    "discovery": ("TA0007", "Discovery"),
    "lateral-movement": ("TA0008", "Lateral Movement"),
    "collection": ("TA0009", "Collection"),
    "command-and-control": ("TA0011", "Command and Control"),
    "exfiltration": ("TA0010", "Exfiltration"),
    "impact": ("TA0040", "Impact"),
}

# ECS groups of the source event copied into the alert, so analysts and correlation group-bys see them.
CONTEXT_GROUPS = ("cloud", "user", "source", "host", "orchestrator", "url", "http", "user_agent", "service")


def alert_id(rule_id: str, event_id: str) -> str:
    return hashlib.sha256(f"{rule_id}\0{event_id}".encode()).hexdigest()[:40]


def _threat(tags: list[str]) -> list[dict[str, Any]]:
    tactics: list[dict[str, str]] = []
    techniques: list[dict[str, Any]] = []
    for tag in tags:
        namespace, _, name = tag.partition(".")
        if namespace != "attack":
            continue
        if name[:1] == "t" and name[1:2].isdigit():
            technique_id = name.upper()
            base, _, sub = technique_id.partition(".")
            url = f"https://attack.mitre.org/techniques/{base}/" + (f"{sub}/" if sub else "")
            techniques.append({"id": technique_id, "reference": url})
        elif name in TACTICS:
            tactic_id, tactic_name = TACTICS[name]
            tactics.append(
                {"id": tactic_id, "name": tactic_name, "reference": f"https://attack.mitre.org/tactics/{tactic_id}/"}
            )
    if not tactics and not techniques:
        return []
    return [{"framework": "MITRE ATT&CK", "tactic": t, "technique": techniques} for t in tactics] or [
        {"framework": "MITRE ATT&CK", "technique": techniques}
    ]


def build_alert(match: Match, event_index: str, now: str | None = None) -> dict[str, Any]:
    """The alert document for one match; ``event_index`` is where the source event is indexed."""
    compiled = match.rule
    rule = compiled.rule
    event = match.event
    level = str(rule.level) if rule.level else "medium"
    severity, risk = SEVERITY.get(level, SEVERITY["medium"])
    tags = [str(tag) for tag in rule.tags]
    version = rule.modified or rule.date
    doc: dict[str, Any] = {
        "@timestamp": event.ecs.get("@timestamp", now),
        "event": {
            "kind": "alert",
            "id": alert_id(compiled.rule_id, event.id),
            "dataset": event.dataset,
            "severity": severity,
            "risk_score": risk,
            "created": now,
        },
        "rule": {
            "id": compiled.rule_id,
            "uuid": compiled.rule_id,
            "name": compiled.title,
            "description": rule.description,
            "author": rule.author,
            "reference": list(rule.references),
            "version": version.isoformat() if version else None,
            "ruleset": compiled.ruleset,
            "license": compiled.license,
            "category": rule.logsource.category or rule.logsource.service,
        },
        "threat": _threat(tags),
        "tags": tags,
        "sigma": {
            "level": level,
            "status": str(rule.status) if rule.status else None,
            "falsepositives": list(rule.falsepositives),
            "fields": list(rule.fields),
            "file": compiled.source_file,
        },
        "siem": {
            "source_event": {"index": event_index, "id": event.id, "dataset": event.dataset},
            "matched_fields": match.matched_fields,
        },
    }
    for group in CONTEXT_GROUPS:
        if group in event.ecs:
            doc[group] = event.ecs[group]
    return doc
