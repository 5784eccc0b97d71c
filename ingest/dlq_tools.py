"""Operator tools for the dead-letter queue: list entries and re-inject them after a fix (`siem dlq ...`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch, NotFoundError
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ingest.dlq import original_bytes
from siem.config import Settings


@dataclass(frozen=True, slots=True)
class ReplayReport:
    replayed: int
    from_source_topic: int  # truncated entries whose full record was re-read from the raw topic
    unavailable: list[str]  # entries whose full original is gone (topic retention passed)


def list_entries(
    client: Elasticsearch, settings: Settings, limit: int = 20, error_type: str | None = None
) -> list[dict[str, Any]]:
    query: dict[str, Any] = {"term": {"dlq.error_type": error_type}} if error_type else {"match_all": {}}
    try:
        response = client.search(
            index=settings.elasticsearch.dlq_index, query=query, size=limit, sort=[{"@timestamp": "desc"}]
        )
    except NotFoundError:
        return []
    return [{"_id": hit["_id"], **hit["_source"]} for hit in response["hits"]["hits"]]


def _read_source_record(settings: Settings, topic: str, partition: int, offset: int) -> bytes | None:
    consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False, consumer_timeout_ms=5000)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, offset)
        for message in consumer:
            return message.value if message.offset == offset else None
        return None
    finally:
        consumer.close()


def replay(settings: Settings, entries: list[dict[str, Any]], dry_run: bool = False) -> ReplayReport:
    """Produce each entry's original record back to the topic it came from (the parsers run again)."""
    producer = None if dry_run else KafkaProducer(**settings.kafka.client_options(), acks="all")
    replayed = from_source = 0
    unavailable: list[str] = []
    try:
        for entry in entries:
            dlq = entry["dlq"]
            topic = dlq["topic"]
            if topic not in settings.kafka.raw_topics:
                unavailable.append(f"{entry['_id']}: {topic} is not a raw topic")
                continue
            value: bytes | None = original_bytes(entry)
            # A refused document (stage "index") holds the ECS doc, not the raw record: re-read the raw record.
            if dlq.get("original_truncated") or dlq.get("stage") == "index":
                value = _read_source_record(settings, topic, dlq["partition"], dlq["offset"])
                if value is None:
                    unavailable.append(f"{entry['_id']}: original no longer in {topic}[{dlq['partition']}]")
                    continue
                from_source += 1
            if producer is not None:
                producer.send(topic, value=value)
            replayed += 1
        if producer is not None:
            producer.flush()
    finally:
        if producer is not None:
            producer.close()
    return ReplayReport(replayed, from_source, unavailable)
