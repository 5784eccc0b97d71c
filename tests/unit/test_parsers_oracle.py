"""Normalization oracle: our ECS output vs Elastic's own integrations, field by field.

Every leaf field in Elastic's expected output is compared (and must agree) unless it is declared as a
deliberate difference or out of scope, each with the reason: a new field in the oracle is compared by default,
so nothing is silently skipped. Run with ``-s`` to see the agreement table.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from parsers.base import SourceRecord
from parsers.registry import build_parsers
from siem.config import ParserSettings

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "elastic_integrations"

# Compared as whole values (free-form objects), not leaf by leaf.
OPAQUE = (
    "aws.cloudtrail.flattened.request_parameters",
    "aws.cloudtrail.flattened.response_elements",
    "aws.cloudtrail.flattened.additional_eventdata",
    "aws.cloudtrail.flattened.service_event_details",
    "kubernetes.audit.requestObject",
    "kubernetes.audit.responseObject",
    "kubernetes.audit.protoPayload.authorizationInfo",
)

OUT_OF_SCOPE = {
    "source.geo.": "GeoIP made with Elasticsearch's test databases",
    "source.as.": "ASN made with Elasticsearch's test databases",
    "user_agent.name": "parsed user agent (Elasticsearch user_agent processor)",
    "user_agent.version": "parsed user agent",
    "user_agent.os.": "parsed user agent",
    "user_agent.device.": "parsed user agent",
    "event.created": "simulated ingest time of the test harness",
    "event.original": "preserve_original_event test tag; ours is off by default (config keep_original)",
    "tags": "test harness tag",
    "related.entity": "Elastic's entity-analytics sub-pipeline (actor/target mapping), not in scope",
    "actor.": "entity-analytics sub-pipeline",
    "target.": "entity-analytics sub-pipeline",
    "entity.": "entity-analytics sub-pipeline",
    "service.target.": "entity-analytics sub-pipeline",
    "user.entity.": "entity-analytics sub-pipeline",
    "user.email": "entity-analytics sub-pipeline (additionalEventData.UserName); we set user.name from it",
}

DIFFERS = {
    "aws.cloudtrail.request_parameters": "Elastic stringifies with Java Map.toString (hash order, unquoted); we "
    "emit compact JSON (lossless, parseable); the object itself is compared under flattened.*",
    "aws.cloudtrail.response_elements": "same as request_parameters",
    "aws.cloudtrail.additional_eventdata": "same as request_parameters",
    "aws.cloudtrail.service_event_details": "same as request_parameters",
}

# Per-event deliberate differences: (file, index, field prefix) -> reason.
EVENT_DIFFERS = {
    ("k8s_audit/test-audit.log", 3, "kubernetes.audit."): "GKE: Elastic indexes the Cloud Audit Log wrapper "
    "(protoPayload...); we unwrap it to the audit.k8s.io shape (verb, objectRef, user) so rules match GKE too",
    ("k8s_audit/test-audit.log", 3, "orchestrator.resource.type"): "GKE: Elastic uses the monitored-resource "
    "type (k8s_cluster); we use the Kubernetes resource from resourceName",
    ("cloudtrail/test-user-authentication.log", 0, "aws.cloudtrail.flattened.additional_eventdata"): "Elastic's "
    "entity pipeline moves UserName out of the payload; we keep the payload intact",
}

# How to compare: exact (default), or "subset" (ours must be contained in Elastic's list).
SUBSET = {
    "related.user": "Elastic's entity pipeline adds principal ids and role names; ours is the user names",
}

CASES = [
    ("cloudtrail", f"cloudtrail/{p.name}") for p in sorted((DATA / "cloudtrail").glob("*.log"))
] + [("k8s_audit", f"k8s_audit/{p.name}") for p in sorted((DATA / "k8s_audit").glob("*.log"))]


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in OPAQUE:
            out.update(flatten(value, path + "."))
        elif not (isinstance(value, dict) and not value):
            out[path] = value
    return out


def scope_reason(field: str) -> str | None:
    for prefix, reason in OUT_OF_SCOPE.items():
        if field == prefix or (prefix.endswith(".") and field.startswith(prefix)):
            return reason
    return None


def event_differs(case: str, index: int, field: str) -> bool:
    return any(c == case and i == index and field.startswith(p) for c, i, p in EVENT_DIFFERS)


def agrees(field: str, ours: Any, expected: Any) -> bool:
    if field in SUBSET:
        return isinstance(ours, list) and set(ours) <= set(expected)
    return bool(ours == expected)


def run_oracle() -> tuple[dict[str, list[int]], list[str]]:
    clock = lambda: datetime(2021, 11, 11, 1, 2, 3, tzinfo=UTC)  # noqa: E731
    parsers = build_parsers(ParserSettings(), clock=clock)
    table: dict[str, list[int]] = {}  # field -> [agree, compared, declared-different]
    mismatches: list[str] = []
    for parser_name, case in CASES:
        lines = (DATA / case).read_bytes().splitlines()
        expected = json.loads((DATA / f"{case}-expected.json").read_text())["expected"]
        assert len(lines) == len(expected)
        for index, (line, want) in enumerate(zip(lines, expected, strict=True)):
            result = parsers[parser_name].parse(SourceRecord("siem.raw.test", 0, index, line))
            assert not result.failures and len(result.events) == 1, (case, index, result.failures)
            ours = flatten(result.events[0].ecs)
            for field, value in flatten(want).items():
                if scope_reason(field):
                    continue
                row = table.setdefault(field, [0, 0, 0])
                if field in DIFFERS or event_differs(case, index, field):
                    row[2] += 1
                    continue
                row[1] += 1
                if agrees(field, ours.get(field), value):
                    row[0] += 1
                else:
                    mismatches.append(f"{case}#{index} {field}: ours={ours.get(field)!r} elastic={value!r}")
    return table, mismatches


def print_table(table: dict[str, list[int]]) -> None:
    print("\nNormalization oracle vs Elastic integrations (agree / compared; 'declared' = deliberate difference)")
    print(f"{'field':62} {'agree':>6} {'of':>4} {'declared':>9}")
    for field in sorted(table):
        agree, compared, declared = table[field]
        print(f"{field:62} {agree:>6} {compared:>4} {declared:>9}")
    print("out of scope:", ", ".join(sorted(OUT_OF_SCOPE)))


def test_oracle_agreement_on_declared_fields() -> None:
    table, mismatches = run_oracle()
    print_table(table)
    assert not mismatches, "\n".join(mismatches)
    # The oracle really covers the core fields (guards against comparing nothing).
    for field in ("@timestamp", "event.action", "event.outcome", "user.name", "cloud.account.id",
                  "source.ip", "kubernetes.audit.verb", "orchestrator.resource.name"):
        assert table[field][1] > 0, field


@pytest.mark.parametrize("field", sorted(DIFFERS))
def test_declared_differences_have_reasons(field: str) -> None:
    assert DIFFERS[field]
