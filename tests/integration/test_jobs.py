"""Scheduled jobs against the real local stack: retention deletes expired daily indices only; a silent source
raises an alert and an incident through the running service, once per silence."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from elasticsearch import Elasticsearch

from indexing.retention import delete_expired
from ingest.silence import RULE_ID
from siem.config import ElasticsearchSettings
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
from tests.integration.test_vertical_slice import CLOUDTRAIL

pytestmark = pytest.mark.integration


def test_retention_deletes_expired_daily_indices_and_nothing_else(local_stack: LocalStack) -> None:
    es = Elasticsearch(hosts=[local_stack.elasticsearch_url])
    settings = isolated_settings()
    prefix = settings.elasticsearch.index_prefix
    today = datetime.now(UTC).date()
    in_five_days = (today + timedelta(days=5)).strftime("%Y.%m.%d")
    names = [
        f"{prefix}-events-aws.cloudtrail-2019.01.01",
        f"{prefix}-alerts-{today:%Y.%m.%d}",
        f"{prefix}-incident-claims-2019.01.01",  # claims go with their alerts
        f"{prefix}-events-k8s.audit-{in_five_days}",
        f"{prefix}-dlq",
        f"{prefix}-incidents",
        f"{prefix}x-events-aws.cloudtrail-2019.01.01",
    ]
    es_settings = ElasticsearchSettings(index_prefix=prefix, retention_days=30)
    try:
        for name in names:
            es.indices.create(index=name)
        # Created just now: an archive replayed into 2019's index stays (its creation is recent).
        assert delete_expired(es, es_settings) == []
        # 31 days on: the 2019 index and today's are past retention, the future day and the rest stay.
        later = datetime.now(UTC) + timedelta(days=31)
        assert delete_expired(es, es_settings, now=later) == sorted(names[:3])
        remaining = set(es.indices.get(index=f"{prefix}-*,{prefix}x-*").body)
        assert remaining == set(names[3:])
    finally:
        es.indices.delete(index=f"{prefix}-*,{prefix}x-*", ignore_unavailable=True, allow_no_indices=True)


def test_silent_source_raises_one_alert_and_an_incident_then_rearms_when_records_resume(
    local_stack: LocalStack,
) -> None:
    settings = isolated_settings()
    settings = settings.model_copy(
        update={
            "pipeline": settings.pipeline.model_copy(
                update={"silent_sources": {"cloudtrail": 0.03}, "silent_check_interval_s": 0.3}  # 1.8 s
            )
        }
    )
    es = Elasticsearch(hosts=[local_stack.elasticsearch_url])
    topic = topic_of(settings, "cloudtrail")
    prefix = settings.elasticsearch.index_prefix

    def silent_alerts() -> list[dict[str, object]]:
        count(es, f"{prefix}-alerts-*")  # refresh
        hits = es.search(index=f"{prefix}-alerts-*", query={"term": {"rule.id": RULE_ID}}, size=10,
                         ignore_unavailable=True, allow_no_indices=True)["hits"]["hits"]
        return [hit["_source"] for hit in hits]

    def incidents() -> list[dict[str, object]]:
        count(es, f"{prefix}-incidents")
        hits = es.search(index=f"{prefix}-incidents", query={"term": {"key": "siem.silent_source=cloudtrail"}},
                         size=10, ignore_unavailable=True)["hits"]["hits"]
        return [hit["_source"] for hit in hits]

    try:
        with running_service(settings, stages=("detect", "correlate")):
            produce(settings, topic, [orjson.dumps(CLOUDTRAIL)])
            assert wait_for(lambda: len(silent_alerts()) == 1, timeout_s=30, interval_s=0.3)
            [alert] = silent_alerts()
            assert alert["siem"]["silent_source"] == "cloudtrail" and alert["siem"]["level"] == "high"  # type: ignore[index]
            assert wait_for(lambda: len(incidents()) == 1, timeout_s=30, interval_s=0.3), "no incident opened"
            # several more checks of the same silence: still one alert
            wait_for(lambda: False, timeout_s=1.5, interval_s=0.5)
            assert len(silent_alerts()) == 1
            # the source comes back, then goes quiet again: a second alert, attached to the open incident
            produce(settings, topic, [orjson.dumps({**CLOUDTRAIL, "eventID": "silence-2"})])
            assert wait_for(lambda: len(silent_alerts()) == 2, timeout_s=30, interval_s=0.3)
            assert wait_for(lambda: incidents()[0]["alert_count"] == 2, timeout_s=30, interval_s=0.3)
            assert unmapped_fields(es, prefix) == {}  # the silent-source alert's fields are in the template
    finally:
        cleanup(es, settings)
