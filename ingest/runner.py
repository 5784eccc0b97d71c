"""The consumer loop shared by both stages: poll, process, buffer, flush, commit — without ever losing a record.

Invariants (design.md, "Delivery guarantees"):
* an offset is committed only when every document made from the records before it is acknowledged by
  Elasticsearch, sent to the DLQ, or deliberately dropped — and the Kafka messages they produced are flushed;
* when Elasticsearch is slow or down the partitions are paused (the loop keeps polling, which fetches nothing,
  so the consumer stays in its group) and the sink retries with capped backoff; nothing is dropped;
* on partition revoke and on shutdown the in-flight work is drained (bounded in time) and committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from indexing.bulk import BulkAction, BulkSink, FlushReport
from ingest import metrics
from ingest.detect import RecordOutputs, Token
from ingest.kafka_io import FlushTimeout, KafkaMessage, MessageProducer, Partition, ProduceFailed, RecordConsumer
from ingest.offsets import OffsetTracker
from parsers.base import SourceRecord

log = logging.getLogger(__name__)

ALL_SOURCES = "all"  # source label of failures that concern a whole request or commit, not one log source
HANDOFF_EVERY = 100  # records handled between two looks at the request in flight (eager flushing)


class Stage(Protocol):
    """Per-record work of a stage (detect or correlate)."""

    def process(self, record: SourceRecord) -> RecordOutputs: ...

    # Called after the last ``process`` of a poll batch, before anything of the batch is committed: finishes the
    # records whose outputs said ``deferred``, and returns Kafka messages made from the batch as a whole (flushed
    # before its offsets are committed, like every record's). Raising leaves the deferred records unfinished (their
    # offsets are not committed).
    def end_batch(self) -> list[KafkaMessage]: ...

    def dead_letter_rejection(
        self, token: Token, original: bytes, status: int, error_type: str, reason: str, index: str, doc_id: str
    ) -> RecordOutputs: ...


@dataclass(slots=True)
class RunnerStats:
    """What the live status line and /healthz show."""

    records: int = 0
    indexed: int = 0
    alerts: int = 0
    dlq: int = 0
    committed_batches: int = 0
    last_commit_at: float | None = None


class StageRunner:
    def __init__(
        self,
        name: str,
        consumer_factory: Callable[[Callable[[set[Partition]], None]], RecordConsumer],
        stage: Stage,
        sink: BulkSink,
        producer: MessageProducer,
        *,
        poll_timeout_ms: int,
        poll_max_records: int,
        shutdown_timeout_s: float,
        commit_interval_s: float = 1.0,
        eager_flush: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self._sleep = sleep
        self._stage = stage
        self._sink = sink
        self._producer = producer
        self._tracker = OffsetTracker()
        self._deferred: list[tuple[str, int, int]] = []  # records of this poll batch the stage finishes at its end
        self._poll_timeout_ms = poll_timeout_ms
        self._poll_max_records = poll_max_records
        self._shutdown_timeout_s = shutdown_timeout_s
        self._commit_interval_s = commit_interval_s
        self._eager_flush = eager_flush
        self._clock = clock
        self._last_commit = clock()
        self._paused = False
        self._paused_for_failure = False
        self._caught_up = False  # the last poll returned less than it could: nothing more was waiting in Kafka
        self._lag_reported: dict[Partition, int] = {}
        self.stats = RunnerStats()
        self._pending_gauge = metrics.BULK_PENDING.labels(name)
        self._assigned: set[Partition] = set()
        self._shutting_down = False
        # The consumer calls back into us on revoke, so it is built last.
        self._consumer = consumer_factory(self._on_revoked)

    @property
    def sink(self) -> BulkSink:
        return self._sink

    def assignment(self) -> set[Partition]:
        """Partitions assigned at the last poll (cached: the consumer is not thread-safe, /healthz reads this)."""
        return self._assigned

    # -- main loop -------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        log.info("stage %s running", self.name)
        try:
            while not stop.is_set():
                self.step()
        finally:
            self.shutdown()

    def step(self) -> None:
        self._hand_over_waiting()
        self._apply_backpressure()
        # Always the full poll timeout: kafka-python completes a group rebalance inside poll, and short polls
        # that return mid-rebalance (tried: 0 ms while paused, 20 ms while documents wait) stalled the stage in the
        # crash and Kafka-restart tests.
        records = self._consumer.poll(self._poll_timeout_ms, self._poll_max_records)
        self._assigned = self._consumer.assignment()
        handle = self._handle
        for start in range(0, len(records), HANDOFF_EVERY):
            for record in records[start : start + HANDOFF_EVERY]:
                handle(record)
            if self._eager_flush and self._sink.due(eager=True):
                # Elasticsearch has finished the request in flight (or has none): hand it what is buffered now,
                # rather than after the whole poll batch, so it does not sit idle while this thread parses.
                self._flush_once(eager=True)
        if records:
            self._end_batch()
            self._pending_gauge.set(self._sink.pending)
        # A short poll means the stage has caught up with its partitions: send what is buffered now rather than
        # when the batch is full or old (latency), as soon as no request is in flight.
        self._caught_up = len(records) < self._poll_max_records
        eager = self._eager_flush and self._caught_up
        if self._sink.due(eager):
            self._flush_once(eager=eager)
        if self._clock() - self._last_commit >= self._commit_interval_s:
            self._commit()
            self._report_lag()

    def _hand_over_waiting(self) -> None:
        """Before polling: if documents wait behind the request in flight, a full buffer or the last of a burst
        (the stage has caught up), wait for its answer and hand them over, request after request, until the buffer
        is no longer full; at most one poll timeout in all.

        A poll on partitions paused for a full buffer, or with nothing left to fetch, sleeps through its whole
        timeout. Measured: the last batch of a burst waited ~0.4 s of the 0.5 s poll timeout; under load, a buffer
        still full after one hand-off (a poll batch arrives on top of a full batch) paused the partitions and
        left Elasticsearch idle ~350 ms while that poll waited."""
        deadline = self._clock() + self._poll_timeout_ms / 1000
        while not self._sink.blocked:
            caught_up = self._eager_flush and self._caught_up and self._sink.buffered > 0
            if not (self._sink.full or caught_up):
                return
            remaining = deadline - self._clock()
            if remaining <= 0 or not self._sink.wait(remaining) or not self._sink.due(caught_up):
                return  # Elasticsearch is slower than that: the partitions are paused until it catches up
            self._flush_once(eager=caught_up)

    def _apply_backpressure(self) -> None:
        stop_fetching = self._sink.blocked or self._sink.full
        if stop_fetching and not self._paused:
            self._paused_for_failure = self._sink.blocked
            if self._sink.blocked:
                log.warning("pausing partitions: %s", self._sink.last_error)
            else:  # routine flow control: Elasticsearch is slower than the stage right now
                log.debug("pausing partitions: bulk buffer full")
            self._consumer.pause_all()
            self._paused = True
        elif not stop_fetching:
            if self._paused:
                log.log(logging.INFO if self._paused_for_failure else logging.DEBUG, "resuming partitions")
                self._paused = False
            # Every step, not only on the transition: a rebalance that completes while we are paused can hand back
            # partitions that the client still holds paused after our resume ran (it saw no assignment then).
            self._consumer.resume_all()
        metrics.SINK_BLOCKED.labels(self.name).set(1 if self._sink.blocked else 0)

    def _handle(self, record: SourceRecord) -> None:
        outputs = self._stage.process(record)
        self.stats.records += 1
        self._tracker.track(record.topic, record.partition, record.offset, len(outputs.actions) + outputs.deferred)
        if outputs.deferred:
            self._deferred.append((record.topic, record.partition, record.offset))
        self._enqueue(outputs)

    def _end_batch(self) -> None:
        send = self._producer.send
        for topic, key, value in self._stage.end_batch():
            send(topic, key, value)  # flushed before the deferred records' offsets are committed (``_commit``)
        acknowledge = self._tracker.acknowledge
        for topic, partition, offset in self._deferred:
            acknowledge(topic, partition, offset)
        self._deferred.clear()

    def _enqueue(self, outputs: RecordOutputs) -> None:
        for action in outputs.actions:
            self._sink.add(action)
        for topic, key, value in outputs.kafka_messages:
            self._producer.send(topic, key, value)

    # -- delivery --------------------------------------------------------------------------------------------
    def _flush_once(self, force: bool = False, eager: bool = False) -> FlushReport:
        report = self._sink.flush(force, eager)
        if report.latency_s is not None:
            metrics.BULK_LATENCY.observe(report.latency_s)
        if report.request_error:
            log.warning("bulk request failed, will retry: %s", report.request_error)
            metrics.FAILED.labels(self.name, ALL_SOURCES, "es_unavailable").inc()
        if report.throttled:
            metrics.FAILED.labels(self.name, ALL_SOURCES, "es_retryable_item").inc(report.throttled)
        if report.delivered:
            self._acknowledge(report.delivered)
        for rejection in report.rejected:
            self._reject(rejection.action, rejection.status, rejection.error_type, rejection.reason)
        self._pending_gauge.set(self._sink.pending)
        return report

    def _acknowledge(self, delivered: list[BulkAction]) -> None:
        # Counted per batch, not per document: a labelled Prometheus child costs microseconds per call.
        by_source: dict[tuple[str, str], int] = {}
        acknowledge = self._tracker.acknowledge
        for action in delivered:
            token: Token = action.token
            key = (token.source, token.kind)
            by_source[key] = by_source.get(key, 0) + 1
            acknowledge(token.topic, token.partition, token.offset)
        stats = self.stats
        for (source, kind), count in by_source.items():
            metrics.EMITTED.labels(self.name, source, kind).inc(count)
            if kind == "alert":
                stats.alerts += count
            elif kind == "dlq":
                stats.dlq += count
            else:
                stats.indexed += count

    def _reject(self, action: BulkAction, status: int, error_type: str, reason: str) -> None:
        token: Token = action.token
        metrics.FAILED.labels(self.name, token.source, "mapping_error").inc()
        if token.kind == "dlq":
            # The DLQ index refused an entry: it is still in the DLQ topic (flushed before commit), so the
            # record is accounted for; say so loudly rather than loop on it forever.
            log.error("DLQ index refused entry %s (HTTP %s %s): %s", action.doc_id, status, error_type, reason)
            self._tracker.acknowledge(token.topic, token.partition, token.offset)
            return
        log.warning("Elasticsearch refused %s %s/%s: %s", token.kind, action.index, action.doc_id, reason)
        outputs = self._stage.dead_letter_rejection(
            token, action.source, status, error_type, reason, action.index, action.doc_id
        )
        # Register the DLQ documents before releasing the refused one, so the offset never runs ahead.
        self._tracker.track(token.topic, token.partition, token.offset, len(outputs.actions))
        self._tracker.acknowledge(token.topic, token.partition, token.offset)
        self._enqueue(outputs)

    def _commit(self, only: set[Partition] | None = None) -> None:
        positions = self._tracker.commit_positions()
        if only is not None:
            positions = {tp: pos for tp, pos in positions.items() if tp in only}
        self._last_commit = self._clock()
        if not positions:
            return
        # Alerts and DLQ entries produced by these records must be in Kafka before their offsets are committed.
        # Still pending (Kafka restarting): commit later. Given up on (ProduceFailed): propagate, the stage stops
        # and its records are re-read from the last commit.
        try:
            self._producer.flush(timeout_s=self._shutdown_timeout_s)
        except FlushTimeout as exc:
            log.warning("produced messages still pending, commit postponed: %s", exc)
            metrics.FAILED.labels(self.name, ALL_SOURCES, "produce_pending").inc()
            return
        except ProduceFailed:
            metrics.FAILED.labels(self.name, ALL_SOURCES, "produce_error").inc()
            raise
        try:
            self._consumer.commit(positions)
        except Exception as exc:  # noqa: BLE001 - e.g. the broker restarted and the group moved on
            # Not fatal: nothing is marked committed, so the next commit retries; after a rebalance the records
            # are re-read and re-indexed under the same ids.
            log.warning("offset commit failed, will retry: %s: %s", type(exc).__name__, exc)
            metrics.FAILED.labels(self.name, ALL_SOURCES, "commit_error").inc()
            return
        for (topic, partition), position in positions.items():
            self._tracker.mark_committed(topic, partition, position)
        self.stats.committed_batches += 1
        self.stats.last_commit_at = time.time()

    def _report_lag(self) -> None:
        """Consumer lag per partition, as often as offsets are committed (a dict walk, no request)."""
        try:
            lags = self._consumer.lag()
        except Exception:  # noqa: BLE001 - a metric must never stop the stage
            log.debug("consumer lag unavailable", exc_info=True)
            return
        for (topic, partition), lag in lags.items():
            metrics.CONSUMER_LAG.labels(self.name, topic, str(partition)).set(lag)
        self._lag_reported.update(lags)

    def _forget_lag(self, partitions: set[Partition]) -> None:
        """Revoked partitions are another member's now: their last figure would go stale in /metrics."""
        for topic, partition in partitions & self._lag_reported.keys():
            del self._lag_reported[(topic, partition)]
            try:
                metrics.CONSUMER_LAG.remove(self.name, topic, str(partition))
            except KeyError:
                pass

    def drain(self, deadline: float) -> bool:
        """Flush until nothing is pending or the deadline passes; True if everything was delivered."""
        while self._sink.pending and self._clock() < deadline:
            report = self._flush_once(force=True)
            if report.request_error or report.retrying:
                self._sleep(0.2)
        return self._sink.pending == 0

    def _on_revoked(self, partitions: set[Partition]) -> None:
        log.info("partitions revoked: %s; draining", sorted(partitions))
        if not self._shutting_down:  # on shutdown the drain already ran (bounded once, not twice)
            self.drain(self._clock() + self._shutdown_timeout_s)
        try:
            self._commit(only=partitions)
        except Exception:  # the new owner re-reads from the last commit; ids make that idempotent
            log.exception("commit on revoke failed")
        for topic, partition in partitions:
            self._tracker.forget(topic, partition)
        self._forget_lag(partitions)

    def shutdown(self) -> None:
        """Stop fetching, deliver what is buffered (bounded), commit exactly what was delivered, close."""
        log.info("stage %s shutting down", self.name)
        self._shutting_down = True
        try:
            self._consumer.pause_all()
            drained = self.drain(self._clock() + self._shutdown_timeout_s)
            if not drained:
                log.warning(
                    "%d documents not delivered before the shutdown timeout; they will be re-read", self._sink.pending
                )
            self._commit()
        finally:
            self._consumer.close()
            self._producer.close()
            self._sink.close()
