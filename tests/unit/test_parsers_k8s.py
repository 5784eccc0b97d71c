"""Kubernetes audit parser: shapes, stages, wrappers, redaction and the Panther/Falco corpora."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import orjson

from parsers.base import ErrorType, SourceRecord
from parsers.common import ParserOptions
from parsers.k8s_audit import K8sAuditParser
from parsers.redaction import MARKER

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CLOCK = lambda: datetime(2024, 1, 1, tzinfo=UTC)  # noqa: E731


def event(stage: str = "ResponseComplete", **extra: object) -> dict[str, object]:
    base: dict[str, object] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse", "auditID": "a-1",
        "stage": stage, "verb": "create", "requestURI": "/api/v1/namespaces/prod/secrets",
        "user": {"username": "alice", "uid": "u1"}, "sourceIPs": ["10.0.0.1"],
        "objectRef": {"resource": "secrets", "namespace": "prod", "name": "db", "apiVersion": "v1"},
        "responseStatus": {"code": 201}, "stageTimestamp": "2024-05-01T10:00:00.123456Z",
    }
    base.update(extra)
    return base


def parse(value: bytes, parser: K8sAuditParser | None = None):
    return (parser or K8sAuditParser(ParserOptions(clock=CLOCK))).parse(SourceRecord("siem.raw.k8s-audit", 0, 7, value))


def test_event_fields_id_and_secret_redaction() -> None:
    secret = {"kind": "Secret", "data": {"password": "c2VjcmV0"}, "stringData": {"x": "y"}, "metadata": {}}
    (ev,) = parse(orjson.dumps(event(requestObject=secret, responseObject=dict(secret)))).events
    assert ev.id == "a-1-ResponseComplete" and ev.dataset == "kubernetes.audit_logs"
    ecs = ev.ecs
    assert ecs["@timestamp"] == "2024-05-01T10:00:00.123Z"
    assert ecs["event"]["action"] == "create" and ecs["event"]["outcome"] == "success"
    assert ecs["orchestrator"]["resource"] == {"name": "db", "type": "secrets"}
    assert ecs["user"]["name"] == "alice" and ecs["source"]["ip"] == ["10.0.0.1"]
    assert ev.native["requestObject"]["data"] == MARKER and ev.native["responseObject"]["stringData"] == MARKER
    assert "c2VjcmV0" not in orjson.dumps(ecs).decode()


def test_token_review_and_token_request_are_redacted() -> None:
    review = event(objectRef={"resource": "tokenreviews", "apiGroup": "authentication.k8s.io"},
                   requestObject={"kind": "TokenReview", "spec": {"token": "eyJhbGciOi"}})
    request = event(auditID="a-2", objectRef={"resource": "serviceaccounts", "subresource": "token"},
                    responseObject={"kind": "TokenRequest", "status": {"token": "eyJz", "expirationTimestamp": "x"}})
    result = parse(orjson.dumps(review) + b"\n" + orjson.dumps(request))
    assert result.events[0].native["requestObject"]["spec"]["token"] == MARKER
    assert result.events[1].native["responseObject"]["status"]["token"] == MARKER


def test_event_list_stages_and_json_lines() -> None:
    items = [event(stage=s, auditID=f"id-{s}") for s in ("RequestReceived", "ResponseStarted", "ResponseComplete",
                                                          "Panic")]
    result = parse(orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items}))
    assert [e.id for e in result.events] == ["id-ResponseComplete-ResponseComplete", "id-Panic-Panic"]
    assert result.skipped == 2
    all_stages = K8sAuditParser(ParserOptions(k8s_stages=frozenset({"RequestReceived"}), clock=CLOCK))
    assert len(parse(orjson.dumps(items[0]), all_stages).events) == 1
    lines = orjson.dumps(event()) + b"\n{not json\n" + orjson.dumps(event(auditID="b"))
    result = parse(lines)
    assert len(result.events) == 2 and result.failures[0].error_type == ErrorType.JSON
    assert result.failures[0].index_in_record == 1


def test_gke_and_aks_wrappers_unwrap_to_audit_shape() -> None:
    gke = {"protoPayload": {"@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                            "authenticationInfo": {"principalEmail": "bob@example.com"},
                            "methodName": "io.k8s.core.v1.pods.exec.create",
                            "resourceName": "core/v1/namespaces/prod/pods/web-1/exec",
                            "requestMetadata": {"callerIp": "203.0.113.9"}, "status": {"code": 7}},
           "resource": {"type": "k8s_cluster", "labels": {"cluster_name": "c1", "project_id": "p1"}},
           "timestamp": "2024-05-01T10:00:00Z", "operation": {"id": "op-1"}}
    (ev,) = parse(orjson.dumps(gke)).events
    assert ev.native["verb"] == "create" and ev.native["user"]["username"] == "bob@example.com"
    assert ev.native["objectRef"] == {"apiGroup": "", "apiVersion": "v1", "namespace": "prod", "resource": "pods",
                                      "name": "web-1", "subresource": "exec"}
    assert ev.ecs["event"]["outcome"] == "failure" and ev.ecs["orchestrator"]["cluster"]["name"] == "c1"
    aks = {"category": "kube-audit", "properties": {"log": json.dumps(event()), "pod": "api-1"},
           "time": "2024-05-01T10:00:00Z"}
    (ev,) = parse(orjson.dumps({"records": [aks]})).events
    assert ev.native["auditID"] == "a-1" and ev.ecs["kubernetes"]["audit"]["aks_metadata"]["pod"] == "api-1"


def test_malformed_inputs() -> None:
    assert parse(b'{"kind": 0}').failures[0].error_type == ErrorType.SHAPE
    assert parse(b"\xc3\x28").failures[0].error_type == ErrorType.DECODE
    assert parse(orjson.dumps(event(stageTimestamp="yesterday"))).failures[0].error_type == ErrorType.TIMESTAMP


def test_panther_corpus() -> None:
    parser = K8sAuditParser(ParserOptions(clock=CLOCK))
    rows = [json.loads(line) for line in (DATA / "panther" / "k8s_tests.jsonl").read_text().splitlines()]
    events = skipped = 0
    shape_failures = []
    for i, row in enumerate(rows):
        result = parser.parse(SourceRecord("t", 0, i, orjson.dumps(row["log"])))
        skipped += result.skipped
        shape_failures += [f.original for f in result.failures if f.error_type == ErrorType.SHAPE]
        assert all(f.error_type == ErrorType.SHAPE for f in result.failures)
        for ev in result.events:
            events += 1
            assert ev.ecs["@timestamp"].endswith("Z") and ev.ecs["orchestrator"]["type"] == "kubernetes"
            assert ev.ecs["event"]["dataset"] == "kubernetes.audit_logs"
            orjson.dumps(ev.ecs)
    # 2 stubs without any audit content and one Azure activity log that is not Kubernetes at all.
    assert len(shape_failures) == 3 and all(b"auditID" not in f for f in shape_failures)
    assert events + skipped + len(shape_failures) == len(rows) == 282


def test_falco_trace_files() -> None:
    parser = K8sAuditParser(ParserOptions(clock=CLOCK))
    events, failures = [], []
    for path in sorted((DATA / "falco_k8s_audit" / "trace_files").glob("*.json")):
        result = parser.parse(SourceRecord("t", 0, 0, path.read_bytes()))
        events += result.events
        failures += [(path.name, f.error_type) for f in result.failures]
    assert failures == [("fal_01_003.json", ErrorType.SHAPE)]
    assert len(events) >= 45
    for ev in events:
        assert ev.native.get("verb") and ev.ecs["event"]["action"] == ev.native["verb"]
        assert ev.ecs["user"]["name"]



def test_exec_session_start_is_indexed_but_other_started_stages_are_not() -> None:
    parser = K8sAuditParser(ParserOptions(clock=CLOCK))

    def parse_stage(stage: str, subresource: str | None, offset: int):
        ref: dict[str, object] = {"resource": "pods", "namespace": "prod", "name": "web-1"}
        if subresource:
            ref["subresource"] = subresource
        value = orjson.dumps(event(stage, objectRef=ref))
        return parser.parse(SourceRecord("siem.raw.k8s-audit", 0, offset, value))

    started_exec = parse_stage("ResponseStarted", "exec", 0)
    assert [e.id for e in started_exec.events] == ["a-1-ResponseStarted"]
    assert started_exec.events[0].native["objectRef"]["subresource"] == "exec"
    started_watch = parse_stage("ResponseStarted", None, 1)
    assert started_watch.events == [] and started_watch.skipped == 1
    received = parse_stage("RequestReceived", "exec", 2)
    assert received.events == [] and received.skipped == 1
