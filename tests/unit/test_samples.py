"""The bundled demo samples are well-formed records of their source, with unique document ids."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
CLOUDTRAIL_KEYS = ("eventVersion", "eventName", "eventTime", "eventID", "eventSource", "awsRegion", "userIdentity")
K8S_KEYS = ("kind", "apiVersion", "auditID", "stage", "verb", "requestReceivedTimestamp", "user", "requestURI")
K8S_STAGES = {"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}
ISO_UTC = re.compile(r"^2026-11-01T\d\d:\d\d:\d\d(\.\d+)?Z$")
DOC_NETS = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
# Not preceded by a version-ish context ("Chrome/130.0.0.0", "#1.35.54") and not part of a longer dotted run.
IPV4 = re.compile(r"(?<![\w./#-])(\d{1,3}(?:\.\d{1,3}){3})(?![\d.])")


def _records(name: str) -> list[dict[str, Any]]:
    lines = (SAMPLES / name).read_text(encoding="utf-8").splitlines()
    assert lines, f"{name} is empty"
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{name}:{number} is not valid JSON: {exc}")
        assert isinstance(record, dict), f"{name}:{number} is not a JSON object"
        records.append(record)
    return records


def test_cloudtrail_records_have_the_key_fields() -> None:
    records = _records("cloudtrail.jsonl")
    assert len(records) >= 50
    for record in records:
        missing = [key for key in CLOUDTRAIL_KEYS if key not in record]
        assert not missing, f"{record.get('eventID')}: missing {missing}"
        assert ISO_UTC.match(record["eventTime"]), record["eventTime"]
        assert record["eventSource"].endswith(".amazonaws.com")
        assert record["userIdentity"]["type"] in {"IAMUser", "AssumedRole", "Root", "AWSService", "FederatedUser"}


def test_cloudtrail_event_ids_are_unique() -> None:
    ids = [record["eventID"] for record in _records("cloudtrail.jsonl")]
    assert len(ids) == len(set(ids))


def test_cloudtrail_covers_the_demo_story() -> None:
    names = {record["eventName"] for record in _records("cloudtrail.jsonl")}
    for name in (
        "ConsoleLogin",
        "CreateUser",
        "CreateAccessKey",
        "AttachUserPolicy",
        "StopLogging",
        "DeleteTrail",
        "PutBucketPolicy",
        "AuthorizeSecurityGroupIngress",
        "GetSecretValue",
        "AssumeRole",
    ):
        assert name in names


def test_k8s_audit_events_have_the_key_fields() -> None:
    events = _records("k8s_audit.jsonl")
    assert len(events) >= 35
    for event in events:
        missing = [key for key in K8S_KEYS if key not in event]
        assert not missing, f"{event.get('auditID')}: missing {missing}"
        assert event["kind"] == "Event" and event["apiVersion"] == "audit.k8s.io/v1"
        assert event["stage"] in K8S_STAGES
        assert ISO_UTC.match(event["requestReceivedTimestamp"]), event["requestReceivedTimestamp"]
        assert "username" in event["user"]


def test_k8s_audit_ids_are_unique_per_stage() -> None:
    # The API server logs one event per stage with the same auditID, so (auditID, stage) is the document id.
    events = _records("k8s_audit.jsonl")
    keys = [(event["auditID"], event["stage"]) for event in events]
    assert len(keys) == len(set(keys))
    response_complete = [event["auditID"] for event in events if event["stage"] == "ResponseComplete"]
    assert len(response_complete) == len(set(response_complete))


def test_app_log_has_every_format() -> None:
    lines = (SAMPLES / "app.log").read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 50 and all(line.strip() for line in lines)
    json_lines = [json.loads(line) for line in lines if line.startswith("{")]
    assert any("log.level" in d for d in json_lines), "ECS logging"
    assert any("event" in d and "timestamp" in d for d in json_lines), "structlog"
    assert any(isinstance(d.get("level"), int) and "msg" in d for d in json_lines), "pino"
    assert any(line.startswith("time=") and " level=" in line for line in lines), "logfmt"
    assert any(re.match(r"^<\d{1,3}>1 \d{4}-", line) for line in lines), "RFC 5424"
    assert any(re.match(r"^<\d{1,3}>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ", line) for line in lines), "RFC 3164"
    assert any(re.match(r'^\S+ - \S+ \[[^]]+\] "[A-Z]+ \S+ HTTP/[\d.]+" \d{3} \d+ "', line) for line in lines), "nginx"


@pytest.mark.parametrize("name", ["cloudtrail.jsonl", "k8s_audit.jsonl", "app.log"])
def test_samples_only_use_documentation_ip_addresses(name: str) -> None:
    text = (SAMPLES / name).read_text(encoding="utf-8")
    for match in IPV4.finditer(text):
        try:
            address = ipaddress.ip_address(match.group(1))
        except ValueError:
            continue
        if address.is_unspecified:
            continue  # 0.0.0.0/0 in the security-group rule
        assert any(address in net for net in DOC_NETS), f"{name}: {address} is not a documentation address"


def test_samples_readme_exists() -> None:
    assert (SAMPLES / "README.md").is_file()
