"""Real third-party records through the real stack: every Panther/Falco/Apache record produced to Kafka ends up
in Elasticsearch (or, for the deliberately malformed ones, in the DLQ with a parse reason) — and no document is
refused by the index templates, nor adds a field the templates do not map (no mapping surprises)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from elasticsearch import Elasticsearch

from ingest.detect import day_of
from parsers.base import SourceRecord
from parsers.registry import build_parsers
from siem.config import ParserSettings
from stack.services import LocalStack
from tests.integration.pipeline_support import (
    cleanup,
    count,
    isolated_settings,
    produce,
    running_service,
    topic_of,
    unmapped_fields,
    wait_for,
)

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def _panther(name: str) -> list[bytes]:
    lines = (DATA / "panther" / name).read_text(encoding="utf-8").splitlines()
    return [orjson.dumps(orjson.loads(line)["log"]) for line in lines if line.strip()]


def _falco() -> list[bytes]:
    return [path.read_bytes() for path in sorted((DATA / "falco_k8s_audit" / "trace_files").glob("*.json"))]


def _apache() -> list[bytes]:
    lines: list[bytes] = []
    for name in ("test-access-basic.log", "test-access-newer-input-only.log"):
        lines += [
            line for line in (DATA / "elastic_integrations" / "apache_access" / name).read_bytes().splitlines() if line
        ]
    return lines


def _expected(parser_name: str, values: list[bytes]) -> tuple[set[tuple[str, str]], int]:
    """(daily index, event id) pairs and parse failures the parser itself predicts for these records, offline.

    The same id can exist in two daily indices (Panther reuses eventIDs across test cases with other dates)."""
    parser = build_parsers(ParserSettings())[parser_name]
    ids: set[tuple[str, str]] = set()
    failures = 0
    for offset, value in enumerate(values):
        result = parser.parse(SourceRecord("offline", 0, offset, value))
        ids.update((day_of(event.ecs["@timestamp"]), event.id) for event in result.events)
        failures += len(result.failures)
    return ids, failures


def test_shared_data_is_indexed_without_mapping_errors(local_stack: LocalStack) -> None:
    settings = isolated_settings()
    es = Elasticsearch(hosts=[local_stack.elasticsearch_url])
    prefix = settings.elasticsearch.index_prefix
    cloudtrail, k8s = _panther("cloudtrail_tests.jsonl"), _panther("k8s_tests.jsonl") + _falco()
    apache = _apache()
    ct_ids, ct_failures = _expected("cloudtrail", cloudtrail)
    k8s_ids, k8s_failures = _expected("k8s_audit", k8s)
    try:
        with running_service(settings) as service:
            produce(settings, topic_of(settings, "cloudtrail"), cloudtrail)
            produce(settings, topic_of(settings, "k8s_audit"), k8s)
            produce(settings, topic_of(settings, "app"), apache)
            total = len(cloudtrail) + len(k8s) + len(apache)
            assert wait_for(
                lambda: service.runners[0].stats.records == total and service.runners[0].sink.pending == 0, 120
            )
        es.indices.refresh(index=f"{prefix}-*")  # searchable now, not at the next refresh interval
        dlq = es.search(index=settings.elasticsearch.dlq_index, size=200, ignore_unavailable=True)["hits"]["hits"]
        kinds = [hit["_source"]["dlq"]["error_type"] for hit in dlq]
        assert "mapping_error" not in kinds, [
            h["_source"]["dlq"]["message"] for h in dlq if h["_source"]["dlq"]["error_type"] == "mapping_error"
        ]
        assert len(dlq) == ct_failures + k8s_failures, kinds
        assert count(es, f"{prefix}-events-aws.cloudtrail-*") == len(ct_ids)
        assert count(es, f"{prefix}-events-kubernetes.audit_logs-*") >= len(k8s_ids)
        assert count(es, f"{prefix}-events-app.*") == len(apache)
        assert count(es, f"{prefix}-alerts-*") > 0  # the alert templates are checked below too
        assert unmapped_fields(es, prefix) == {}
    finally:
        cleanup(es, settings)
