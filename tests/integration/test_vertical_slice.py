"""End to end through the real services: raw records on Kafka -> the pipeline -> ECS documents in Elasticsearch
with deterministic ids, offsets committed only after the bulk items are acknowledged."""

from __future__ import annotations

import gzip
import urllib.error
import urllib.request
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch
from prometheus_client.parser import text_string_to_metric_families

from stack.services import LocalStack
from tests.integration.pipeline_support import (
    cleanup,
    committed_offsets,
    count,
    isolated_settings,
    produce,
    running_service,
    topic_of,
    wait_for,
)
from tests.integration.reliability_support import free_port

pytestmark = pytest.mark.integration

CLOUDTRAIL: dict[str, Any] = {
    "eventVersion": "1.08",
    "userIdentity": {
        "type": "IAMUser",
        "principalId": "AIDAEXAMPLE1234567890",
        "arn": "arn:aws:iam::123456789012:user/alice",
        "accountId": "123456789012",
        "userName": "alice",
    },
    "eventTime": "2026-11-20T10:15:00Z",
    "eventSource": "signin.amazonaws.com",
    "eventName": "ConsoleLogin",
    "awsRegion": "us-east-1",
    "sourceIPAddress": "203.0.113.7",
    "userAgent": "Mozilla/5.0",
    "responseElements": {"ConsoleLogin": "Success"},
    "additionalEventData": {"MFAUsed": "No"},
    "eventID": "3f6f2a1e-1111-4a4a-9b9b-000000000001",
    "eventType": "AwsConsoleSignIn",
    "recipientAccountId": "123456789012",
}

K8S: dict[str, Any] = {
    "kind": "Event",
    "apiVersion": "audit.k8s.io/v1",
    "level": "Metadata",
    "auditID": "0b7e6a56-2222-4c3c-8d8d-000000000002",
    "stage": "ResponseComplete",
    "requestURI": "/api/v1/namespaces/default/pods/web-1/exec?command=sh",
    "verb": "create",
    "user": {"username": "mallory", "groups": ["system:authenticated"]},
    "sourceIPs": ["198.51.100.9"],
    "objectRef": {"resource": "pods", "namespace": "default", "name": "web-1", "subresource": "exec"},
    "responseStatus": {"code": 101},
    "requestReceivedTimestamp": "2026-11-20T10:16:00.000000Z",
    "stageTimestamp": "2026-11-20T10:16:01.000000Z",
}

ACCESS_LINE = (
    b'203.0.113.50 - - [20/Nov/2026:10:17:00 +0000] "GET /search?q=%27%20OR%201=1-- HTTP/1.1" 200 512 "-" "sqlmap/1.8"'
)


def test_cloudtrail_record_reaches_elasticsearch_with_deterministic_id_and_commit(local_stack: LocalStack) -> None:
    settings = isolated_settings()
    es = Elasticsearch(hosts=[local_stack.elasticsearch_url])
    topic = topic_of(settings, "cloudtrail")
    index = settings.elasticsearch.events_index("aws.cloudtrail", "2026.11.20")
    try:
        with running_service(settings) as service:
            produce(settings, topic, [orjson.dumps(CLOUDTRAIL)])
            assert wait_for(lambda: es.exists(index=index, id=CLOUDTRAIL["eventID"]).body), "event not indexed"
            doc = es.get(index=index, id=CLOUDTRAIL["eventID"])["_source"]
            assert doc["event"]["action"] == "ConsoleLogin"
            assert doc["event"]["outcome"] == "success"
            assert doc["cloud"]["account"]["id"] == "123456789012"
            assert doc["source"]["ip"] == "203.0.113.7"
            assert doc["@timestamp"].startswith("2026-11-20T10:15:00")
            # The offset is committed (position 1 = past our only record) once the bulk item is acknowledged.
            assert wait_for(
                lambda: sum(committed_offsets(settings, settings.kafka.detect_group_id, topic).values()) == 1
            )
            assert service.runners[0].stats.indexed == 1
        # Replaying the same record (a crash before commit would do that) overwrites, never duplicates.
        with running_service(settings):
            produce(settings, topic, [orjson.dumps(CLOUDTRAIL)])
            assert wait_for(
                lambda: sum(committed_offsets(settings, settings.kafka.detect_group_id, topic).values()) == 2
            )
        assert count(es, index) == 1
    finally:
        cleanup(es, settings)


def test_every_source_round_trips_with_the_right_index_ids_and_field_types(local_stack: LocalStack) -> None:
    settings = isolated_settings()
    es = Elasticsearch(hosts=[local_stack.elasticsearch_url])
    prefix = settings.elasticsearch.index_prefix
    s3_object = gzip.compress(orjson.dumps({"Records": [CLOUDTRAIL, {**CLOUDTRAIL, "eventID": "second-id"}]}))
    try:
        with running_service(settings):
            produce(settings, topic_of(settings, "cloudtrail"), [s3_object])
            produce(settings, topic_of(settings, "k8s_audit"), [orjson.dumps(K8S)])
            produce(settings, topic_of(settings, "app"), [ACCESS_LINE])
            assert wait_for(lambda: count(es, f"{prefix}-events-*") == 4), "expected 4 events"
        assert count(es, f"{prefix}-events-aws.cloudtrail-2026.11.20") == 2
        k8s_id = f"{K8S['auditID']}-ResponseComplete"
        k8s_doc = es.get(index=f"{prefix}-events-kubernetes.audit_logs-2026.11.20", id=k8s_id)["_source"]
        assert k8s_doc["user"]["name"] == "mallory"
        access = es.search(index=f"{prefix}-events-app.access-*", query={"term": {"source.ip": "203.0.113.50"}})
        assert access["hits"]["total"]["value"] == 1
        # Explicit mappings, not dynamic guesses: ips are ip, status codes are long, timestamps are dates.
        mapping = es.indices.get_mapping(index=f"{prefix}-events-*")
        for body in mapping.values():
            props = body["mappings"]["properties"]
            assert props["@timestamp"]["type"] == "date"
            assert props["source"]["properties"]["ip"]["type"] == "ip"
            assert props["event"]["properties"]["action"]["type"] == "keyword"
        access_props = next(b for i, b in mapping.items() if "app.access" in i)["mappings"]["properties"]
        assert access_props["http"]["properties"]["response"]["properties"]["status_code"]["type"] == "long"
    finally:
        cleanup(es, settings)


def test_poison_records_go_to_the_dlq_with_reasons_and_good_ones_are_indexed(local_stack: LocalStack) -> None:
    settings = isolated_settings()
    es = Elasticsearch(hosts=[local_stack.elasticsearch_url])
    topic = topic_of(settings, "cloudtrail")
    good = [orjson.dumps({**CLOUDTRAIL, "eventID": f"good-{i}"}) for i in range(5)]
    deep = b"[" * 10_000 + b"]" * 10_000
    bad = {
        "invalid utf-8": b"\xff\xfe\xfa not text",
        "truncated json": orjson.dumps(CLOUDTRAIL)[:-20],
        "wrong type": orjson.dumps(["just", "a", "list"]),
        "deep nesting": deep,
        "oversize": b'{"eventName": "' + b"A" * (20 * 1024 * 1024) + b'"}',  # 20 MiB: twice the parser limit
        "binary garbage": bytes(range(256)) * 4,
    }
    interleaved: list[bytes] = []
    for good_record, bad_record in zip(good, bad.values(), strict=False):
        interleaved += [good_record, bad_record]
    interleaved += list(bad.values())[len(good) :]
    try:
        with running_service(settings) as service:
            produce(settings, topic, interleaved)
            dlq_index = settings.elasticsearch.dlq_index
            dlq_index = settings.elasticsearch.dlq_index

            def bad_records_in_dlq() -> set[tuple[int, int]]:
                count(es, dlq_index)  # refresh
                hits = es.search(index=dlq_index, size=100, ignore_unavailable=True)["hits"]["hits"]
                return {(h["_source"]["dlq"]["partition"], h["_source"]["dlq"]["offset"]) for h in hits}

            reached = wait_for(lambda: len(bad_records_in_dlq()) == len(bad))
            assert reached, f"every bad record must reach the DLQ: {bad_records_in_dlq()} {service.health_report()}"
            assert wait_for(lambda: count(es, f"{settings.elasticsearch.index_prefix}-events-*") == len(good))
            assert service.alive(), "bad input never stops the consumer"
        hits = es.search(index=dlq_index, size=100)["hits"]["hits"]
        by_message: dict[str, str] = {}
        for hit in hits:
            entry = hit["_source"]["dlq"]
            assert entry["topic"] == topic and entry["parser"] == "cloudtrail" and entry["message"]
            assert entry["original_size"] > 0
            by_message[entry["message"]] = entry["error_type"]
        error_types = set(by_message.values())
        # the JSON list of strings yields one wrong_shape entry per element (index_in_record says which)
        assert {"decode_error", "invalid_json", "wrong_shape", "oversize", "too_deep"} <= error_types, by_message
        assert sum(committed_offsets(settings, settings.kafka.detect_group_id, topic).values()) == len(interleaved)
    finally:
        cleanup(es, settings)


ADMIN_POLICY_RULE_ID = "0f6c7d1e-3a52-4f0e-9b1c-5d2e8a7b6c41"  # aws_iam_policy_attached_admin.yml, level high


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics over HTTP, as Prometheus reads it: (sample name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_endpoint_reports_what_both_stages_did(local_stack: LocalStack) -> None:
    settings = isolated_settings(metrics_port=free_port())
    es = Elasticsearch(hosts=[local_stack.elasticsearch_url])
    topic = topic_of(settings, "cloudtrail")
    admin = {
        **CLOUDTRAIL,
        "eventSource": "iam.amazonaws.com",
        "eventName": "AttachUserPolicy",
        "eventType": "AwsApiCall",
        "requestParameters": {"userName": "bob", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
        "responseElements": None,
        "eventID": "metrics-admin-1",
    }
    quiet = [orjson.dumps({**CLOUDTRAIL, "eventName": "DescribeInstances", "eventSource": "ec2.amazonaws.com",
                           "eventType": "AwsApiCall", "eventID": f"metrics-{i}"}) for i in range(10)]
    records = [*quiet, orjson.dumps(admin), b'{"eventVersion": "1.08", "truncated']

    def delta(after: dict[Any, float], before: dict[Any, float], name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    try:
        with running_service(settings, stages=("detect", "correlate")) as service:
            assert service.health is not None
            port = service.health.port
            before = scrape(port)
            produce(settings, topic, records)
            assert wait_for(lambda: delta(scrape(port), before, "siem_incidents_total", action="recorded") >= 1), (
                f"the high-level alert never reached the incident store: {service.health_report()}"
            )
            emitted = {"stage": "detect", "source": "cloudtrail"}
            events_emitted = "siem_documents_emitted_total"
            assert wait_for(lambda: delta(scrape(port), before, events_emitted, **emitted, kind="event") == 11)
            assert wait_for(lambda: scrape(port).get(("siem_consumer_lag", (("partition", "0"), ("stage", "detect"),
                                                                             ("topic", topic)))) == 0)
            after = scrape(port)
        detect = {"stage": "detect", "source": "cloudtrail"}
        assert delta(after, before, "siem_records_received_total", **detect) == len(records)
        assert delta(after, before, "siem_dlq_total", **detect, error_type="invalid_json") == 1
        assert delta(after, before, "siem_failures_total", **detect, error_type="invalid_json") == 1
        assert delta(after, before, "siem_documents_emitted_total", **emitted, kind="alert") >= 1
        assert delta(after, before, "siem_documents_emitted_total", **emitted, kind="dlq") == 1
        assert delta(after, before, "siem_alerts_total", rule_id=ADMIN_POLICY_RULE_ID) == 1
        assert delta(after, before, "siem_records_received_total", stage="correlate", source="correlation") >= 1
        assert delta(after, before, "siem_bulk_latency_seconds_count") >= 1
        lag_partitions = {dict(labels)["partition"] for (name, labels) in after if name == "siem_consumer_lag"
                          and dict(labels)["stage"] == "detect" and dict(labels)["topic"] == topic}
        assert lag_partitions == {"0", "1"}, "every assigned raw partition reports its lag"
        assert ("siem_correlation_state_keys", ()) in after
        assert ("siem_sink_blocked", (("stage", "detect"),)) in after
    finally:
        cleanup(es, settings)


def test_healthz_reports_both_services_reachable_and_the_consumer_assigned(local_stack: LocalStack) -> None:
    settings = isolated_settings(metrics_port=free_port(), health_probe_interval_s=0.5)
    es = Elasticsearch(hosts=[local_stack.elasticsearch_url])
    try:
        with running_service(settings, stages=("detect",)) as service:
            assert service.health is not None
            url = f"http://127.0.0.1:{service.health.port}/healthz"

            def report() -> dict[str, Any]:
                try:
                    with urllib.request.urlopen(url, timeout=5) as response:
                        return dict(orjson.loads(response.read()))
                except urllib.error.HTTPError as exc:  # 503 carries the report too
                    return dict(orjson.loads(exc.read()))

            assert wait_for(lambda: report()["consumers_assigned"] is True, timeout_s=30, interval_s=0.3)
            body = report()
            assert body["healthy"] is True, body
            assert body["kafka"]["reachable"] is True and body["elasticsearch"]["reachable"] is True, body
            assert body["kafka"]["checked_s_ago"] < 5
            assert body["stages"]["detect"]["assigned_partitions"] == 6  # 3 raw topics x 2 partitions
    finally:
        cleanup(es, settings)
