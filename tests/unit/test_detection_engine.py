"""Loader, routing, index, hot reload, alerts and the project's own rule tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from correlation.detection.alerts import alert_id, build_alert
from correlation.detection.cli import run_rule_tests
from correlation.detection.engine import RuleSet, RuleSetHolder
from correlation.detection.fields import EventView
from correlation.detection.loader import load_rules
from parsers.base import ParsedEvent

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data"
SIGMAHQ = DATA / "sigmahq"


@pytest.fixture(scope="module")
def sigmahq():
    return load_rules([SIGMAHQ / "rules", SIGMAHQ / "rules-placeholder", SIGMAHQ / "correlation-examples"])


def _cloudtrail_events():
    for line in (DATA / "panther" / "cloudtrail_tests.jsonl").read_text().splitlines():
        record = json.loads(line)["log"]
        if isinstance(record, dict):
            yield ParsedEvent(str(record.get("eventID", "x")), "aws.cloudtrail", {}, record)


def test_sigmahq_aws_and_k8s_rules_all_load(sigmahq):
    by_dataset: dict[str, int] = {}
    for rule in sigmahq.rules:
        for dataset in rule.datasets:
            by_dataset[dataset] = by_dataset.get(dataset, 0) + 1
    assert by_dataset["aws.cloudtrail"] == 57
    assert by_dataset["kubernetes.audit_logs"] == 16
    assert by_dataset["app.access"] == 13
    assert by_dataset["app.logs"] == 13


def test_unusable_rules_are_reported_with_file_and_reason(sigmahq):
    reasons = {Path(p.rule_file).name: p.reason for p in sigmahq.problems}
    assert "placeholder" in reasons["aws_cloudtrail_console_login_success_from_susp_locations.yml"]
    assert "not ingested" in reasons["web_apache_segfault.yml"]
    assert len(sigmahq.correlations) == 1  # handed through untouched


def test_placeholders_from_config_make_the_rule_load():
    loaded = load_rules(
        [SIGMAHQ / "rules-placeholder"],
        {"Legitimate_Countries": ["DE"], "Legitimate_IP_Ranges": ["10.*"]},
    )
    assert len(loaded.rules) == 1 and not loaded.problems


def test_index_returns_exactly_what_brute_force_matching_returns(sigmahq):
    rule_set = RuleSet.from_loaded(sigmahq)
    total = 0
    for event in _cloudtrail_events():
        got = sorted(m.rule.rule_id for m in rule_set.match(event))
        want = sorted(r.rule_id for r in rule_set.rules_for(event.dataset) if r.predicate(EventView(event.native, {})))
        assert got == want
        total += len(got)
    assert total > 0


def test_k8s_field_mapping_pipeline_applies(sigmahq):
    hostpath = next(r for r in sigmahq.rules if r.title == "Container With A hostPath Mount Created")
    assert "requestObject.spec.volumes.hostPath" in hostpath.fields
    event = ParsedEvent(
        "a1",
        "kubernetes.audit_logs",
        {},
        {
            "verb": "create",
            "objectRef": {"resource": "pods"},
            "requestObject": {"spec": {"volumes": [{"name": "h", "hostPath": {"path": "/"}}]}},
        },
    )
    assert hostpath in [m.rule for m in RuleSet.from_loaded(sigmahq).match(event)]


def test_alert_document(sigmahq):
    rule_set = RuleSet.from_loaded(sigmahq)
    event = ParsedEvent(
        "ev-1",
        "aws.cloudtrail",
        {"@timestamp": "2024-01-01T00:00:00Z", "cloud": {"account": {"id": "1"}}},
        {"eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging"},
    )
    match = next(m for m in rule_set.match(event) if m.rule.title == "AWS CloudTrail Important Change")
    doc = build_alert(match, "siem-events-aws.cloudtrail-2024.01.01")
    assert doc["event"]["kind"] == "alert"
    assert doc["event"]["id"] == alert_id(match.rule.rule_id, "ev-1")
    assert doc["rule"]["author"] and doc["rule"]["license"] == "DRL-1.1"
    assert doc["siem"]["source_event"] == {
        "index": "siem-events-aws.cloudtrail-2024.01.01",
        "id": "ev-1",
        "dataset": "aws.cloudtrail",
    }
    assert doc["siem"]["matched_fields"]["eventName"] == "StopLogging"
    assert doc["threat"] and doc["threat"][0]["framework"] == "MITRE ATT&CK"
    assert doc["cloud"] == {"account": {"id": "1"}}


def _write_rule(directory: Path, value: str) -> None:
    (directory / "r.yml").write_text(
        "title: reload\nid: 11111111-2222-4333-8444-555555555555\nstatus: test\n"
        "logsource:\n    product: aws\n    service: cloudtrail\n"
        f"detection:\n    selection:\n        eventName: '{value}'\n    condition: selection\nlevel: low\n"
    )


def test_hot_reload_swaps_and_broken_reload_keeps_old_set(tmp_path):
    _write_rule(tmp_path, "A")

    def build() -> RuleSet:
        return RuleSet.from_loaded(load_rules([tmp_path]))

    holder = RuleSetHolder(build(), build)
    event_b = ParsedEvent("e", "aws.cloudtrail", {}, {"eventName": "B"})
    assert holder.current.match(event_b) == []
    _write_rule(tmp_path, "B")
    assert holder.reload()
    assert len(holder.current.match(event_b)) == 1
    (tmp_path / "r.yml").write_text("title: [broken\n")
    assert not holder.reload()
    assert holder.last_error
    assert len(holder.current.match(event_b)) == 1


def test_project_rule_tests_pass():
    loaded = load_rules([ROOT / "sigma_rules"])
    assert not loaded.problems
    assert run_rule_tests(RuleSet.from_loaded(loaded), ROOT / "sigma_rules" / "tests") == []
