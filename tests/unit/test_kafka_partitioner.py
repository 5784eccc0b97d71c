"""The producer's partitioner: the default mapping of keys to partitions, with the key hashes remembered."""

from __future__ import annotations

from kafka.partitioner import DefaultPartitioner

from ingest.kafka_io import CachedKeyPartitioner


class FakeCluster:
    """Just the metadata calls a partitioner makes."""

    def __init__(self, partitions: dict[str, set[int]]) -> None:
        self._partitions = partitions

    def topics(self) -> set[str]:
        return set(self._partitions)

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self._partitions.get(topic)

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self._partitions.get(topic, set())


def keys(n: int) -> list[bytes]:
    return [f"corr-{i % 7}|arn:aws:iam::123456789012:user/u{i}".encode() for i in range(n)]


def test_keys_land_on_the_partitions_the_default_partitioner_chooses() -> None:
    cluster = FakeCluster({"siem.alerts": {0, 1, 2}, "wide": set(range(12))})
    cached, default = CachedKeyPartitioner(), DefaultPartitioner()
    for topic in ("siem.alerts", "wide"):
        expected = [default.partition(topic, k, k, b"v", b"v", cluster) for k in keys(500)]
        first = [cached.partition(topic, k, k, b"v", b"v", cluster) for k in keys(500)]
        again = [cached.partition(topic, k, k, b"v", b"v", cluster) for k in keys(500)]  # from the cache
        assert first == expected
        assert again == expected
        assert len(set(expected)) == len(cluster.available_partitions_for_topic(topic))  # spread, not constant


def test_a_topic_that_gains_partitions_is_hashed_over_all_of_them() -> None:
    cluster = FakeCluster({"siem.alerts": {0, 1, 2}})
    cached, default = CachedKeyPartitioner(), DefaultPartitioner()
    for k in keys(50):
        cached.partition("siem.alerts", k, k, b"v", b"v", cluster)
    cluster = FakeCluster({"siem.alerts": set(range(6))})
    assert [cached.partition("siem.alerts", k, k, b"v", b"v", cluster) for k in keys(50)] == [
        default.partition("siem.alerts", k, k, b"v", b"v", cluster) for k in keys(50)
    ]


def test_messages_without_a_key_go_to_an_available_partition() -> None:
    cluster = FakeCluster({"siem.dlq": {0, 1}})
    chosen = {CachedKeyPartitioner().partition("siem.dlq", None, None, b"v", b"v", cluster) for _ in range(50)}
    assert chosen <= {0, 1}
    assert chosen


def test_the_remembered_hashes_stay_bounded() -> None:
    cluster = FakeCluster({"siem.alerts": {0, 1, 2}})
    cached, default = CachedKeyPartitioner(max_keys=10), DefaultPartitioner()
    for k in keys(35):
        assert cached.partition("siem.alerts", k, k, b"v", b"v", cluster) == default.partition(
            "siem.alerts", k, k, b"v", b"v", cluster
        )
    assert 0 < len(cached._hashes) <= 10
