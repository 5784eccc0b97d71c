"""Kafka clients built from settings, behind the two small interfaces the runtime needs.

``RecordConsumer`` and ``MessageProducer`` are what the stage runner talks to; unit tests use fakes of them,
the service uses the kafka-python implementations below.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener, KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError, TopicAlreadyExistsError
from kafka.partitioner import DefaultPartitioner
from kafka.partitioner.default import murmur2
from kafka.structs import OffsetAndMetadata

from parsers.base import SourceRecord
from siem.config import KafkaSettings

KafkaMessage = tuple[str, bytes | None, bytes]  # topic, key, value: what a stage hands to ``MessageProducer.send``

log = logging.getLogger(__name__)

Partition = tuple[str, int]


class RecordConsumer(Protocol):
    def poll(self, timeout_ms: int, max_records: int) -> list[SourceRecord]: ...
    def pause_all(self) -> None: ...
    def resume_all(self) -> None: ...
    def commit(self, positions: dict[Partition, int]) -> None: ...
    def assignment(self) -> set[Partition]: ...
    def lag(self) -> dict[Partition, int]: ...  # records behind the partition end, where the end is known
    def close(self) -> None: ...


class MessageProducer(Protocol):
    def send(self, topic: str, key: bytes | None, value: bytes) -> None: ...
    def flush(self, timeout_s: float) -> None: ...
    def close(self) -> None: ...


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(
        self,
        on_revoked: Callable[[set[Partition]], None],
        on_assigned: Callable[[set[Partition]], None] | None = None,
    ) -> None:
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        partitions = {(tp.topic, tp.partition) for tp in revoked}
        if partitions:
            self._on_revoked(partitions)

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        partitions = {(tp.topic, tp.partition) for tp in assigned}
        log.info("partitions assigned: %s", sorted(partitions))
        if self._on_assigned is not None and partitions:
            # Called on the consumer's event loop: keep it short (the correlate stage only notes the partitions
            # here and rebuilds after poll returns, so heartbeats are not held up).
            self._on_assigned(partitions)


def _consumer_options(settings: KafkaSettings, group_id: str) -> dict[str, Any]:
    """What every pipeline consumer of a group shares: manual commits, from the start, bounded fetches."""
    options = settings.client_options()
    options.update(
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        # Large records (S3 log files) still come through: a record batch larger than either limit is returned
        # whole when it is the first of the fetch (KIP-74); oversize ones are rejected by the parser limits.
        fetch_max_bytes=64 * 1024 * 1024,
        # 4 MiB, not 32: a 32 MiB response took ~0.3 s to arrive and decode before the first record reached the
        # stage (after every rebalance), and held that much per partition in memory. Measured in bench_e2e: first
        # record 0.48-0.55 s -> 0.27-0.38 s after the start, ratio 54.1-60.5% -> 58.7-64.5% (five runs each).
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    return options


class KafkaRecordConsumer:
    """A kafka-python consumer in a group, manual commits only."""

    def __init__(
        self,
        settings: KafkaSettings,
        topics: list[str],
        group_id: str,
        on_revoked: Callable[[set[Partition]], None],
        *,
        on_assigned: Callable[[set[Partition]], None] | None = None,
        **overrides: Any,
    ) -> None:
        options = _consumer_options(settings, group_id)
        options.update(max_poll_interval_ms=300_000)
        if settings.session_timeout_ms is not None:
            # Heartbeats must come several times per session, or a busy moment looks like a crash.
            options.update(
                session_timeout_ms=settings.session_timeout_ms,
                heartbeat_interval_ms=min(3000, settings.session_timeout_ms // 3),
            )
        options.update(overrides)
        self._consumer = KafkaConsumer(**options)
        # Fetch the topics' partition metadata before joining: a group leader that joins before it has them
        # assigns nothing for those topics until its next metadata refresh (metadata_max_age_ms, 5 min).
        for topic in topics:
            self._consumer.partitions_for_topic(topic)
        self._on_revoked = on_revoked
        self._next_offsets: dict[TopicPartition, int] = {}  # per partition: the offset after the last one polled
        self._revoked: list[set[Partition]] = []
        self._revoked_lock = threading.Lock()
        self._consumer.subscribe(topics=topics, listener=_Listener(self._note_revoked, on_assigned))

    def _note_revoked(self, partitions: set[Partition]) -> None:
        # kafka-python 3 calls the listener on its IO thread: a blocking commit there raises ("cannot block on
        # net.run() from the IO thread"), and draining there races the stage thread over the sink and the offset
        # tracker. So the revocation is only noted here and handled by the thread that polls (see ``poll``).
        with self._revoked_lock:
            self._revoked.append(partitions)

    def _handle_revoked(self) -> None:
        with self._revoked_lock:
            pending, self._revoked = self._revoked, []
        for partitions in pending:
            self._on_revoked(partitions)

    def poll(self, timeout_ms: int, max_records: int) -> list[SourceRecord]:
        batches = self._consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        # Before the new batch is tracked: drain and commit what the revoked partitions delivered, then forget them.
        self._handle_revoked()
        records: list[SourceRecord] = []
        for tp, batch in batches.items():
            if batch:
                self._next_offsets[tp] = batch[-1].offset + 1
            topic, partition = tp.topic, tp.partition
            append = records.append
            for message in batch:  # positional: keyword arguments cost ~0.3 µs more per record
                value = message.value
                append(
                    SourceRecord(
                        topic, partition, message.offset, value if value is not None else b"", message.key,
                        message.timestamp,
                    )
                )
        return records

    def pause_all(self) -> None:
        assigned = self._consumer.assignment()
        if assigned:
            self._consumer.pause(*assigned)

    def resume_all(self) -> None:
        paused = self._consumer.paused()
        if paused:
            self._consumer.resume(*paused)

    def commit(self, positions: dict[Partition, int]) -> None:
        offsets = {TopicPartition(t, p): OffsetAndMetadata(pos, "", -1) for (t, p), pos in positions.items()}
        self._consumer.commit(offsets=offsets)

    def assignment(self) -> set[Partition]:
        return {(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def lag(self) -> dict[Partition, int]:
        """Per assigned partition: its end (the highwater offset of the last fetch response, no extra request)
        minus the offset after the last record polled. A partition not polled from yet uses the consumer's
        position, without waiting for one; a partition not fetched yet has no known end and is left out."""
        assigned = self._consumer.assignment()
        for tp in [tp for tp in self._next_offsets if tp not in assigned]:
            del self._next_offsets[tp]
        lags: dict[Partition, int] = {}
        for tp in assigned:
            end = self._consumer.highwater(tp)
            if end is None:
                continue
            position = self._next_offsets.get(tp)
            if position is None:
                try:
                    position = self._consumer.position(tp, timeout_ms=0)
                except Exception:  # noqa: BLE001 - no position yet (being reset): no figure this time
                    position = None
                if position is None:
                    continue
            lags[(tp.topic, tp.partition)] = max(0, int(end) - int(position))
        return lags

    def end_offsets(self, partitions: set[Partition]) -> dict[Partition, int]:
        tps = [TopicPartition(t, p) for t, p in partitions]
        return {(tp.topic, tp.partition): off for tp, off in self._consumer.end_offsets(tps).items()}

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class KafkaEndOffsets:
    """End offsets of topic partitions, from a consumer outside any group (it never joins or commits, so the
    pipeline's groups do not rebalance because of it), each request bounded by ``timeout_s``: the silent-source
    check and the /healthz probe. The consumer is built on first use, on the thread that uses it; one thread at a
    time per instance."""

    def __init__(self, settings: KafkaSettings, timeout_s: float = 5.0) -> None:
        self._settings = settings
        self._timeout_ms = int(timeout_s * 1000)
        self._consumer: KafkaConsumer | None = None

    def _client(self) -> KafkaConsumer:
        if self._consumer is None:
            self._consumer = KafkaConsumer(
                **self._settings.client_options(),
                enable_auto_commit=False,
                request_timeout_ms=self._timeout_ms,
                fetch_max_wait_ms=min(100, self._timeout_ms // 2),
            )
        return self._consumer

    def of(self, partitions: list[Partition]) -> dict[Partition, int]:
        """Raises (``KafkaTimeoutError``) when the broker does not answer within the timeout."""
        tps = [TopicPartition(topic, partition) for topic, partition in partitions]
        ends = self._client().end_offsets(tps, timeout_ms=self._timeout_ms)
        return {(tp.topic, tp.partition): int(end) for tp, end in ends.items()}

    def __call__(self, topics: list[str]) -> dict[Partition, int]:
        """Every partition of ``topics``."""
        client = self._client()
        partitions = [(t, p) for t in topics for p in sorted(client.partitions_for_topic(t) or ())]
        return self.of(partitions) if partitions else {}

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close(autocommit=False)


def read_rebuild_range(
    settings: KafkaSettings,
    group_id: str,
    partitions: Iterable[Partition],
    lookback_ms: int,
    *,
    timeout_s: float = 30.0,
) -> list[SourceRecord]:
    """Records of ``partitions`` that ``group_id`` already processed within ``lookback_ms`` of its commit.

    Per partition with a committed position ``c``: the timestamp ``t`` of record ``c - 1`` (the last one
    processed) anchors the range, whose start is the first offset with a timestamp >= ``t - lookback_ms``
    (``offsets_for_times``); records ``[start, c)`` are returned, in timestamp order across partitions.
    Partitions without a commit return nothing (the group starts from the beginning anyway).

    A separate short-lived consumer (``assign``, never ``subscribe``: it does not join the group, and it never
    commits) does the reading, so the group member's positions are untouched. Bounded by ``timeout_s``: a
    partial result is logged and returned rather than blocking the stage.
    """
    reader = KafkaConsumer(**_consumer_options(settings, group_id))
    deadline = time.monotonic() + timeout_s
    try:
        tps = [TopicPartition(t, p) for t, p in sorted(set(partitions))]
        if not tps:
            return []
        reader.assign(tps)
        ends: dict[TopicPartition, int] = {}
        for tp in tps:
            committed = reader.committed(tp)
            if committed is not None and committed > 0:
                ends[tp] = int(committed)
        if not ends:
            return []
        anchors = _last_timestamps(reader, ends, deadline)
        starts = _range_starts(reader, ends, anchors, lookback_ms)
        return _read_until(reader, starts, ends, deadline)
    finally:
        reader.close(autocommit=False)


def _poll_loop(
    reader: KafkaConsumer, wanted: set[TopicPartition], deadline: float, take: Callable[[TopicPartition, Any], bool]
) -> None:
    """Poll until every partition in ``wanted`` is done (``take`` returns True) or the deadline passes."""
    others = [tp for tp in reader.assignment() if tp not in wanted]
    if others:
        reader.pause(*others)
    if wanted:
        reader.resume(*wanted)
    while wanted and time.monotonic() < deadline:
        for tp, messages in reader.poll(timeout_ms=200).items():
            for message in messages:
                if tp in wanted and take(tp, message):
                    wanted.discard(tp)
                    reader.pause(tp)
                    break
    if wanted:
        log.warning("rebuild read timed out; partitions incomplete: %s", sorted(map(tuple, wanted)))


def _last_timestamps(
    reader: KafkaConsumer, ends: dict[TopicPartition, int], deadline: float
) -> dict[TopicPartition, int]:
    anchors: dict[TopicPartition, int] = {}
    for tp, end in ends.items():
        reader.seek(tp, end - 1)

    def take(tp: TopicPartition, message: Any) -> bool:
        anchors[tp] = int(message.timestamp)
        return True

    _poll_loop(reader, set(ends), deadline, take)
    return anchors


def _range_starts(
    reader: KafkaConsumer, ends: dict[TopicPartition, int], anchors: dict[TopicPartition, int], lookback_ms: int
) -> dict[TopicPartition, int]:
    now_ms = int(time.time() * 1000)
    wanted = {tp: anchors.get(tp, now_ms) - lookback_ms for tp in ends}
    found = reader.offsets_for_times(wanted)
    beginnings = reader.beginning_offsets(list(ends))
    starts: dict[TopicPartition, int] = {}
    for tp, end in ends.items():
        hit = found.get(tp)
        start = int(hit.offset) if hit is not None else end
        starts[tp] = max(min(start, end), int(beginnings.get(tp, 0)))
    return starts


def _read_until(
    reader: KafkaConsumer, starts: dict[TopicPartition, int], ends: dict[TopicPartition, int], deadline: float
) -> list[SourceRecord]:
    records: list[SourceRecord] = []
    wanted = {tp for tp in ends if starts[tp] < ends[tp]}
    for tp in wanted:
        reader.seek(tp, starts[tp])

    def take(tp: TopicPartition, message: Any) -> bool:
        if message.offset >= ends[tp]:
            return True
        records.append(
            SourceRecord(
                message.topic,
                message.partition,
                message.offset,
                message.value if message.value is not None else b"",
                message.key,
                message.timestamp,
            )
        )
        return bool(message.offset + 1 >= ends[tp])

    _poll_loop(reader, wanted, deadline, take)
    records.sort(key=lambda r: (r.timestamp_ms or 0, r.partition, r.offset))
    return records


class FlushTimeout(Exception):
    """Produced messages are still pending (Kafka slow or restarting): do not commit yet, try again later."""


class ProduceFailed(Exception):
    """A produced message was given up on after the client's retries: the stage must stop so that its records
    are re-read from the last commit (committing past them would lose the message)."""


class CachedKeyPartitioner(DefaultPartitioner):  # type: ignore[misc]  # kafka-python ships no type hints
    """The default partitioner (murmur2 of the key, as the Java client), with each key's hash remembered.

    kafka-python's murmur2 is pure Python: ~12 µs per message, a quarter of what a send costs the detect stage.
    Correlation inputs are keyed by correlation rule + group key, and the same few keys recur with every burst.
    The partition a key maps to is the default one, so keys keep their partitions across versions."""

    def __init__(self, max_keys: int = 65536) -> None:
        self._hashes: dict[bytes, int] = {}
        self._max_keys = max_keys

    def partition(
        self, topic: str, key: Any, serialized_key: bytes | None, value: Any, serialized_value: Any, cluster: Any
    ) -> int:
        partitions = None if serialized_key is None else cluster.partitions_for_topic(topic)
        if serialized_key is None or not partitions:
            # No key (a random choice), or a topic without metadata (the default raises the error).
            return int(super().partition(topic, key, serialized_key, value, serialized_value, cluster))
        hashed = self._hashes.get(serialized_key)
        if hashed is None:
            if len(self._hashes) >= self._max_keys:  # alert and DLQ ids never recur: keep the memory bounded
                self._hashes.clear()
            hashed = self._hashes[serialized_key] = murmur2(serialized_key) & 0x7FFFFFFF
        ordered = sorted(partitions)
        return int(ordered[hashed % len(ordered)])


class KafkaMessageProducer:
    """Producer for alerts and DLQ entries: acks=all, idempotent ordering per key."""

    def __init__(self, settings: KafkaSettings, **overrides: Any) -> None:
        options = settings.client_options()
        options.update(acks="all", linger_ms=settings.producer_linger_ms, retries=10, max_request_size=4 * 1024 * 1024)
        options.update(partitioner=CachedKeyPartitioner())
        options.update(overrides)
        self._producer = KafkaProducer(**options)
        self._failures: list[str] = []  # appended from the producer's I/O thread (list.append is atomic)

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        future = self._producer.send(topic, key=key, value=value)
        future.add_errback(lambda exc: self._failures.append(f"{topic}: {type(exc).__name__}: {exc}"))

    def flush(self, timeout_s: float) -> None:
        """Wait until everything sent so far is acknowledged; the caller commits only after this returns."""
        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaTimeoutError as exc:
            raise FlushTimeout(str(exc)) from exc
        if self._failures:
            failures, self._failures = self._failures, []
            raise ProduceFailed(f"{len(failures)} message(s) could not be produced, e.g. {failures[0]}")

    def close(self) -> None:
        self._producer.close(timeout=10)


def ensure_topics(settings: KafkaSettings, topics: Iterable[str], partitions: int | None = None) -> list[str]:
    """Create missing topics (idempotent); returns the names created.

    Topics accept records up to ``settings.max_message_bytes``: larger-than-default raw records (whole S3 log
    objects) must reach the parser, whose own limit sends oversize ones to the DLQ with the reason.
    """
    admin = KafkaAdminClient(**settings.client_options())
    try:
        existing = set(admin.list_topics())
        wanted = [t for t in dict.fromkeys(topics) if t not in existing]
        created: list[str] = []
        for name in wanted:
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=partitions or settings.topic_partitions,
                            replication_factor=settings.topic_replication,
                            topic_configs={"max.message.bytes": str(settings.max_message_bytes)},
                        )
                    ]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        admin.close()


def pipeline_topics(settings: KafkaSettings) -> list[str]:
    return [*settings.raw_topics, settings.alerts_topic, settings.dlq_topic]
