"""The local stack really serves Kafka and Elasticsearch, and ``up`` is idempotent."""

from __future__ import annotations

import time
import uuid

import pytest
from elasticsearch import Elasticsearch
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from stack.services import LocalStack

pytestmark = pytest.mark.integration


def test_kafka_creates_topic_and_round_trips_a_message(local_stack: LocalStack) -> None:
    bootstrap = local_stack.kafka_bootstrap
    topic = f"siem.test.stack-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="siem-test-stack")
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
        assert topic in admin.list_topics()
    finally:
        admin.close()

    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        producer.send(topic, key=b"k", value=b"hello stack").get(timeout=30)
    finally:
        producer.close()

    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    try:
        # Poll until the message arrives instead of iterating, which would wait for a full timeout.
        while not values and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(record.value for record in records)
    finally:
        consumer.close()
    assert values == [b"hello stack"]


def test_elasticsearch_answers(local_stack: LocalStack) -> None:
    client = Elasticsearch(hosts=[local_stack.elasticsearch_url])
    try:
        health = client.cluster.health(wait_for_status="yellow", timeout="30s")
        assert health["status"] in ("green", "yellow")
        assert health["number_of_nodes"] == 1
    finally:
        client.close()


def test_up_again_is_idempotent(local_stack: LocalStack) -> None:
    before = {s.name: s.pid for s in local_stack.status()}
    local_stack.up()
    after = local_stack.status()
    assert all(s.healthy for s in after), after
    assert {s.name: s.pid for s in after} == before
    # A fresh object (another process's view) sees the same running services through the pid files.
    again = LocalStack(local_stack.settings)
    again.up()
    assert {s.name: s.pid for s in again.status()} == before
