"""Helpers for integration tests that run the real pipeline against the local stack."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from elasticsearch import ApiError, Elasticsearch
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ingest.service import Service, StageName, build_service, setup
from kibana.fields import walk_properties
from siem.config import (
    ElasticsearchSettings,
    KafkaSettings,
    PipelineSettings,
    RulesSettings,
    Settings,
)


def isolated_settings(rules_dirs: list[Path] | None = None, **pipeline: Any) -> Settings:
    """Settings with topics, groups and indices of their own, so tests never see each other's data."""
    tag = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        raw_topics={f"t{tag}.raw.cloudtrail": "cloudtrail", f"t{tag}.raw.k8s": "k8s_audit", f"t{tag}.raw.app": "app"},
        alerts_topic=f"t{tag}.alerts",
        dlq_topic=f"t{tag}.dlq",
        detect_group_id=f"t{tag}-detect",
        correlate_group_id=f"t{tag}-correlate",
        topic_partitions=2,
    )
    pipeline_options: dict[str, Any] = {"metrics_port": 0, "bulk_flush_interval_s": 0.2, "poll_timeout_ms": 200}
    pipeline_options.update(pipeline)
    rules = RulesSettings(directories=rules_dirs) if rules_dirs is not None else RulesSettings()
    return Settings(
        kafka=kafka,
        elasticsearch=ElasticsearchSettings(index_prefix=f"t{tag}"),
        pipeline=PipelineSettings(**pipeline_options),
        rules=rules,
    )


def topic_of(settings: Settings, parser: str) -> str:
    return next(t for t, p in settings.kafka.raw_topics.items() if p == parser)


def produce(settings: Settings, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(**settings.kafka.client_options(), acks="all", max_request_size=32 * 1024 * 1024)
    try:
        for value in values:
            producer.send(topic, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close()


@contextmanager
def running_service(settings: Settings, stages: tuple[StageName, ...] = ("detect",)) -> Iterator[Service]:
    setup(settings)
    service = build_service(settings, stages)
    service.start()
    try:
        yield service
    finally:
        service.stop(timeout_s=60)
        assert not service.alive(), "stage threads must end after stop"


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0, interval_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


def count(es: Elasticsearch, index: str, query: dict[str, Any] | None = None) -> int:
    """Documents in ``index`` (a pattern) after a refresh.

    A daily index the pipeline has just created answers 503 (no active shard) until its primary has started, which
    on a freshly started node took long enough to fail a test (CI, 2026-11-23): that is retried for a few seconds."""
    deadline = time.monotonic() + 10.0
    while True:
        try:
            es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
            response = es.count(
                index=index, query=query or {"match_all": {}}, ignore_unavailable=True, allow_no_indices=True
            )
            return int(response["count"])
        except ApiError as exc:
            if exc.meta.status != 503 or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def committed_offsets(settings: Settings, group_id: str, topic: str) -> dict[int, int]:
    """The group's committed positions, read without joining the group (no rebalance of the running pipeline)."""
    consumer = KafkaConsumer(**settings.kafka.client_options(), group_id=group_id, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        positions = {p: consumer.committed(TopicPartition(topic, p)) for p in partitions}
    finally:
        consumer.close()
    return {p: pos for p, pos in positions.items() if pos is not None}


def cleanup(es: Elasticsearch, settings: Settings) -> None:
    es.indices.delete(index=f"{settings.elasticsearch.index_prefix}-*", ignore_unavailable=True, allow_no_indices=True)


# Objects whose keys are data by design (free-form labels, an incident's entities by kind), and the enrichment
# Panther's test records carry (p_any_*, p_enrichment.*: Panther's fields, not Kubernetes'): new keys are expected.
DYNAMIC_BY_DESIGN = ("labels.", "entities.", "kubernetes.audit.p_")


def unmapped_fields(es: Elasticsearch, prefix: str) -> dict[str, list[str]]:
    """Per index: the fields Elasticsearch added by dynamic mapping, beyond what the index templates declare.

    Each one cost a mapping update (a cluster-state change that holds up the bulk request) in every new daily index,
    and typed the field from whichever document came first."""
    unmapped: dict[str, list[str]] = {}
    for index, body in es.indices.get_mapping(index=f"{prefix}-*").body.items():
        declared = es.indices.simulate_index_template(name=index).body["template"]["mappings"]
        extra = walk_properties(body["mappings"].get("properties", {})).keys() - walk_properties(
            declared.get("properties", {})
        ).keys()
        extra = {field for field in extra if not field.startswith(DYNAMIC_BY_DESIGN)}
        if extra:
            unmapped[index] = sorted(extra)
    return unmapped
