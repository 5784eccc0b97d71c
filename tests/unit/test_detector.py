"""The detect stage's Sigma adapter: alert documents, messages for the correlate stage, `generate` semantics."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import orjson

from correlation.detection.engine import RuleSetHolder
from correlation.windows.router import CorrelationRouter
from correlation.windows.rules import compile_correlation
from ingest.alert_messages import IncidentAlert, decode
from ingest.correlation_rules import CorrelationsFollower
from ingest.detector import SigmaDetector
from parsers.base import ParsedEvent
from siem.config import RulesSettings

LOGIN_FAILED = """
title: Console login failed
name: test_login_failed
id: 5f0f4a52-6a43-4c1a-9a55-1f0d5d1d0001
status: test
level: low
logsource: {product: aws, service: cloudtrail}
detection:
  selection:
    eventName: ConsoleLogin
    responseElements.ConsoleLogin: Failure
  condition: selection
"""

ADMIN_ATTACHED = """
title: Admin policy attached
name: test_admin_attached
id: 5f0f4a52-6a43-4c1a-9a55-1f0d5d1d0002
status: test
level: high
logsource: {product: aws, service: cloudtrail}
detection:
  selection:
    eventName: AttachUserPolicy
    requestParameters.policyArn|endswith: /AdministratorAccess
  condition: selection
"""

BRUTE_FORCE = """
title: Console brute force
id: 5f0f4a52-6a43-4c1a-9a55-1f0d5d1d0003
status: test
level: high
correlation:
  type: event_count
  rules: [test_login_failed]
  group-by: [sourceIPAddress]
  timespan: 5m
  condition: {gte: 5}
"""


def _detector(tmp_path: Path, *docs: str, min_level: str = "high") -> SigmaDetector:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for index, doc in enumerate(docs):
        (tmp_path / f"rule{index}.yml").write_text(doc, encoding="utf-8")
    holder = RuleSetHolder.from_settings(RulesSettings(directories=[tmp_path]))
    correlations = [compile_correlation(rule) for rule in holder.current.correlations]
    router = CorrelationRouter(correlations) if correlations else None
    return SigmaDetector(holder, router, min_level)


def _cloudtrail(event_name: str, **fields: object) -> ParsedEvent:
    native = {"eventName": event_name, "eventID": f"id-{event_name}", "sourceIPAddress": "203.0.113.7", **fields}
    ecs = {"@timestamp": "2026-11-20T10:00:00.000Z", "event": {"action": event_name}}
    return ParsedEvent(f"id-{event_name}", "aws.cloudtrail", ecs, native)


def test_high_alert_is_indexed_and_sent_to_incidents(tmp_path: Path) -> None:
    detector = _detector(tmp_path, ADMIN_ATTACHED)
    event = _cloudtrail(
        "AttachUserPolicy", requestParameters={"policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}
    )
    (alert,) = detector.detect(event, "siem-events-aws.cloudtrail-2026.11.20")
    assert alert.indexed
    assert alert.document["rule"]["name"] == "Admin policy attached"
    assert alert.document["siem"]["source_event"] == {
        "index": "siem-events-aws.cloudtrail-2026.11.20",
        "id": event.id,
        "dataset": "aws.cloudtrail",
    }
    assert alert.correlation_messages == []
    assert alert.incident_message is not None
    key, value = alert.incident_message
    assert key == alert.doc_id.encode()
    decoded = decode(value)
    assert isinstance(decoded, IncidentAlert) and decoded.document["event"]["id"] == alert.doc_id
    # deterministic: the same event gives the same alert id
    assert detector.detect(event, "x")[0].doc_id == alert.doc_id


def test_building_block_rule_feeds_its_correlation_but_raises_no_alert_of_its_own(tmp_path: Path) -> None:
    detector = _detector(tmp_path, LOGIN_FAILED, BRUTE_FORCE)
    event = _cloudtrail("ConsoleLogin", responseElements={"ConsoleLogin": "Failure"})
    (alert,) = detector.detect(event, "idx")
    assert not alert.indexed, "generate: false (the default) keeps referenced rules quiet"
    (key, value) = alert.correlation_messages[0]
    message = orjson.loads(value)
    assert message["type"] == "correlation_input"
    assert message["input"]["group_key"] == ["203.0.113.7"]
    assert key  # keyed by (correlation, group key) so one correlator owns the group


def test_generate_true_keeps_the_referenced_rule_alerting(tmp_path: Path) -> None:
    generating = BRUTE_FORCE.replace("  type: event_count\n", "  type: event_count\n  generate: true\n")
    detector = _detector(tmp_path, LOGIN_FAILED, generating)
    (alert,) = detector.detect(_cloudtrail("ConsoleLogin", responseElements={"ConsoleLogin": "Failure"}), "idx")
    assert alert.indexed


def test_low_alert_does_not_go_to_incidents_and_non_matching_event_gives_nothing(tmp_path: Path) -> None:
    detector = _detector(tmp_path, LOGIN_FAILED)
    (alert,) = detector.detect(_cloudtrail("ConsoleLogin", responseElements={"ConsoleLogin": "Failure"}), "idx")
    assert alert.indexed and alert.correlation_messages == []
    assert detector.detect(_cloudtrail("ListBuckets"), "idx") == []


def test_building_block_input_carries_the_alert_id_and_time_the_full_document_would(tmp_path: Path) -> None:
    """A quiet building-block match skips the alert document; its correlation input must not notice."""
    event = _cloudtrail("ConsoleLogin", responseElements={"ConsoleLogin": "Failure"})
    quiet = _detector(tmp_path / "quiet", LOGIN_FAILED, BRUTE_FORCE)
    generating = BRUTE_FORCE.replace("  type: event_count\n", "  type: event_count\n  generate: true\n")
    alerting = _detector(tmp_path / "alerting", LOGIN_FAILED, generating)
    (skipped,) = quiet.detect(event, "idx")
    (full,) = alerting.detect(event, "idx")
    assert skipped.document == {} and full.document["event"]["id"] == skipped.doc_id == full.doc_id
    quiet_input = orjson.loads(skipped.correlation_messages[0][1])["input"]
    full_input = orjson.loads(full.correlation_messages[0][1])["input"]
    assert quiet_input == full_input
    assert quiet_input["alert_id"] == full.doc_id


def test_a_reload_that_adds_or_removes_a_correlation_reroutes_its_base_rule(tmp_path: Path) -> None:
    (tmp_path / "login.yml").write_text(LOGIN_FAILED, encoding="utf-8")
    holder = RuleSetHolder.from_settings(RulesSettings(directories=[tmp_path]))
    follower = CorrelationsFollower(holder, ["source.ip"])
    detector = SigmaDetector(holder, follower.router(follower.current), "high", follower)
    failure = _cloudtrail("ConsoleLogin", responseElements={"ConsoleLogin": "Failure"})
    (alert,) = detector.detect(failure, "idx")
    assert alert.indexed and alert.correlation_messages == [], "no correlation refers to the rule yet"

    (tmp_path / "brute.yml").write_text(BRUTE_FORCE, encoding="utf-8")
    assert holder.reload()
    (alert,) = detector.detect(failure, "idx")
    assert not alert.indexed, "now a building block of a correlation (generate: false)"
    (message,) = [orjson.loads(value) for _, value in alert.correlation_messages]
    assert message["input"]["correlation_id"] == "5f0f4a52-6a43-4c1a-9a55-1f0d5d1d0003"

    (tmp_path / "brute.yml").unlink()
    assert holder.reload()
    (alert,) = detector.detect(failure, "idx")
    assert alert.indexed and alert.correlation_messages == [], "the correlation is gone: the rule alerts again"


def test_a_reload_lets_the_old_rules_go(tmp_path: Path) -> None:
    detector = _detector(tmp_path, LOGIN_FAILED)
    holder = detector._rules
    failure = _cloudtrail("ConsoleLogin", responseElements={"ConsoleLogin": "Failure"})
    (alert,) = detector.detect(failure, "idx")  # remembers how the rule's matches are routed
    (match,) = holder.current.match(failure)
    old_rule = weakref.ref(match.rule)
    del match
    assert holder.reload()
    (alert,) = detector.detect(failure, "idx")
    gc.collect()
    assert old_rule() is None, "nothing the detector keeps holds a replaced rule"
