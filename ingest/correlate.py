"""The correlate stage: Sigma correlation windows over ``siem.alerts``, correlation alerts, incidents.

Per record of ``siem.alerts`` (see :mod:`ingest.alert_messages`):

* a :class:`CorrelationInput` goes through the engine (under the lock it shares with the wall-clock timer);
  every match becomes a correlation alert document (deterministic id, bulk action to ``alerts-<day>``), an
  incident update, and -- unless ``correlation.chain_locally`` -- inputs for parent correlations, published
  back onto ``siem.alerts`` (keyed by the parent's group key, so they reach the parent's owner);
* an :class:`IncidentAlert` (a severe single detection) becomes an incident update;
* anything undecodable becomes a DLQ entry; the stage never raises on bad input.

Incident updates are written once per poll batch (``end_batch``: one bulk request for the alerts' claims, then
one for the incidents the batch changed; optimistic concurrency, idempotent per alert id). The records that carried
signals are ``deferred``: their offsets are held back until that write succeeds. When Elasticsearch is
unreachable the batch is retried here, with capped exponential backoff, for as long as the stage runs: the
consumer loop stalls (which is the backpressure we want: nothing is read that could not be stored). If the stage
is stopped while still failing, :class:`IncidentStoreUnavailable` propagates out of ``end_batch``: the deferred
records are never finished, so their offsets are not committed and they are re-read on restart (their
correlation alerts and incident updates are idempotent). A stall longer than ``max_poll_interval_ms`` makes Kafka
move the partitions to another member, which then does the same work idempotently.

Restart / rebalance (design.md): on every assignment the engine is rebuilt from scratch for the whole
assignment (kafka-python's default assignors are eager: each rebalance revokes and re-assigns everything, and
the runner commits what it delivered on revoke). The assigned partitions are re-read from (committed position −
longest timespan − allowed lateness) up to the committed position and fed with ``emit=False``: windows are
restored, nothing decided before the commit is emitted again.

Rule reload: correlation rules live in the rule files, so the reload job swaps them with the rest. At the next
poll the stage builds a new engine for the new correlations and takes over the previous engine's windows of every
correlation whose definition did not change (:meth:`CorrelationEngine.carry_over`); new or changed correlations
start with empty windows. The detect stage routes base-rule matches by the new correlations from its first event
after the reload.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import elastic_transport
import orjson
from elasticsearch import ApiError, Elasticsearch

from correlation.detection.engine import RuleSetHolder
from correlation.incidents.builder import Signal, signal_from_alert, signal_from_match
from correlation.incidents.es_backend import ElasticsearchBackend
from correlation.incidents.store import BackendUnavailable, IncidentStore
from correlation.windows.clock import SystemClock
from correlation.windows.documents import correlation_alert, day
from correlation.windows.engine import CorrelationEngine
from correlation.windows.messages import CorrelationMatch
from correlation.windows.router import CorrelationRouter
from correlation.windows.rules import CompiledCorrelation
from correlation.windows.runtime import CorrelationTimer
from indexing.bulk import BulkAction, BulkSink, FlushReport
from indexing.client import ElasticsearchBulkTransport
from ingest import metrics
from ingest.alert_messages import IncidentAlert, decode_record, encode_correlation_input
from ingest.correlation_rules import CorrelationsFollower
from ingest.detect import RecordOutputs, Token
from ingest.dlq import DlqEntry, make_entry
from ingest.kafka_io import (
    KafkaMessage,
    KafkaMessageProducer,
    KafkaRecordConsumer,
    MessageProducer,
    Partition,
    RecordConsumer,
    read_rebuild_range,
)
from ingest.runner import StageRunner
from parsers.base import ErrorType, SourceRecord
from siem.config import Settings
from siem.errors import PipelineError

log = logging.getLogger(__name__)

STAGE = "correlate"
SOURCE = "correlation"
# Timer-decided matches are not tied to a Kafka record. Their bulk actions carry a token on this synthetic
# partition: the offset tracker ignores acknowledgements of partitions it never saw, so they hold back no offset.
TIMER_TOPIC = "__correlation_timer__"
TIMER_TOKEN = Token(TIMER_TOPIC, -1, 0, "alert", SOURCE)
# A fetch of alert messages is answered once this much is waiting, or after the wait (see build_correlate_runner).
CORRELATE_FETCH_MIN_BYTES = 256 * 1024
CORRELATE_FETCH_MAX_WAIT_MS = 250

RebuildReader = Callable[[set[Partition], int], list[SourceRecord]]


class IncidentStoreUnavailable(PipelineError):
    """Elasticsearch stayed unreachable for incident updates until the stage was stopped."""


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, BackendUnavailable):
        return True
    if isinstance(exc, ApiError):
        return exc.meta.status == 429 or exc.meta.status >= 500
    return isinstance(exc, elastic_transport.TransportError | OSError)


class CorrelateStage:
    """Implements the runner's ``Stage`` protocol for ``siem.alerts``; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        correlations: Sequence[CompiledCorrelation],
        incidents: IncidentStore,
        lock: threading.Lock,
        *,
        follower: CorrelationsFollower | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self._settings = settings
        self._follower = follower  # None: the correlations stay as given (tests)
        # Every correlation ever loaded, by id: a match the timer thread decided just before a reload can still be
        # rendered after it, even if the reload removed its rule.
        self._rules: dict[str, CompiledCorrelation] = {}
        self._use_correlations(correlations)
        self._incidents = incidents
        self.lock = lock
        self._store_lock = threading.Lock()  # the timer thread and the consumer loop both record incidents
        self._batch: list[Signal] = []  # incident signals of the poll batch being processed (see end_batch)
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._stop = threading.Event()
        self._timer: CorrelationTimer | None = None
        self._deliver_timer_outputs: Callable[[RecordOutputs], None] | None = None
        self.engine = self._new_engine()
        # labelled children looked up once: labels() costs microseconds, paid per message otherwise
        self._received = metrics.RECEIVED.labels(STAGE, SOURCE)
        self._dropped_late = metrics.DROPPED.labels(STAGE, SOURCE, "late")

    # ---- wiring ---------------------------------------------------------------------------------

    def _use_correlations(self, correlations: Sequence[CompiledCorrelation]) -> None:
        self._active = list(correlations)
        self._rules.update((c.id, c) for c in correlations)
        self.router = CorrelationRouter(correlations, self._settings.correlation.entity_fields)
        self.lookback_ms = max((c.timespan_ms for c in correlations), default=0) + int(
            self._settings.correlation.allowed_lateness_s * 1000
        )

    def follow_rules(self) -> bool:
        """Takes up the correlation rules a reload changed; True if it did. Call between poll batches (the stage's
        thread): the new engine keeps the windows of every correlation whose definition is unchanged."""
        if self._follower is None:
            return False
        changed = self._follower.changed()
        if changed is None:
            return False
        with self.lock:  # the timer must not advance the engine while it is replaced
            previous = self.engine
            before = previous.group_count()
            self._use_correlations(changed)
            engine = self._new_engine()
            kept = engine.carry_over(previous)
            self._install(engine)
        log.info(
            "correlation rules reloaded: %d correlations; %d of %d windows kept (new or changed correlations "
            "start empty)",
            len(changed),
            kept,
            before,
        )
        return True

    def _install(self, engine: CorrelationEngine) -> None:
        """Make ``engine`` the stage's and the timer's (call with ``self.lock`` held)."""
        self.engine = engine
        if self._timer is not None:
            self._timer.engine = engine
        metrics.CORRELATION_STATE.set(engine.group_count())

    def _new_engine(self) -> CorrelationEngine:
        c = self._settings.correlation
        return CorrelationEngine(
            self._active,
            allowed_lateness_ms=int(c.allowed_lateness_s * 1000),
            max_events_per_group=c.max_events_per_group,
            max_evidence=c.max_evidence,
            router=self.router,
            chain_locally=c.chain_locally,
            timer_resolution_ms=c.timer_resolution_ms,
        )

    def bind_stop(self, stop: threading.Event) -> None:
        """The service's stop flag: ends incident-write retries."""
        self._stop = stop

    def bind_timer(self, timer: CorrelationTimer, deliver: Callable[[RecordOutputs], None]) -> None:
        """``deliver`` takes the outputs of timer-decided matches (from the timer's thread)."""
        self._timer = timer
        self._deliver_timer_outputs = deliver

    # ---- per record -----------------------------------------------------------------------------

    def process(self, record: SourceRecord) -> RecordOutputs:
        outputs = RecordOutputs()
        self._received.inc()
        try:
            message = decode_record(record.value)
            signal = self._alert_signal(message) if isinstance(message, IncidentAlert) else None
        except orjson.JSONDecodeError as exc:
            self._dead_letter(outputs, record, ErrorType.JSON, f"alert message is not JSON: {exc}")
            return outputs
        except Exception as exc:  # any other shape problem: bad input never stops the consumer
            self._dead_letter(outputs, record, ErrorType.SHAPE, f"not an alert message: {type(exc).__name__}: {exc}")
            return outputs
        if isinstance(message, IncidentAlert):
            if signal is not None:
                self._batch.append(replace(signal, position=(record.topic, record.partition, record.offset)))
                outputs.deferred = True
            return outputs
        matches: list[CorrelationMatch] = []
        with self.lock:
            engine = self.engine
            late_before = engine.stats.late
            for correlation_input in message:  # one, or the detect stage's inputs of one key, in order
                matches.extend(engine.process(correlation_input))
            metrics.CORRELATION_STATE.set(engine.group_count())
            if engine.stats.late != late_before:
                # beyond the allowed lateness: counted, not correlated (the event itself is indexed anyway)
                self._dropped_late.inc(engine.stats.late - late_before)
        token = Token(record.topic, record.partition, record.offset, "alert", SOURCE)
        signals = self._emit(matches, outputs, token)
        if signals:
            self._batch.extend(signals)
            outputs.deferred = True
        return outputs

    def end_batch(self) -> list[KafkaMessage]:
        """Records the poll batch's incident signals: a claims read, a claims write and an incident write per batch,
        not per alert (a burst of alerts would otherwise hold the stage to a few hundred alerts a second)."""
        signals, self._batch = self._batch, []
        if signals:
            self._record_incidents(signals)
        return []  # chained inputs go out with their record (``_emit``)

    def _alert_signal(self, message: IncidentAlert) -> Signal | None:
        if not isinstance(message.document, dict):
            raise ValueError("incident alert document is not an object")
        return signal_from_alert(message.document, self._settings.incidents, self._settings.rules.alert_incident_level)

    def _emit(self, matches: list[CorrelationMatch], outputs: RecordOutputs, token: Token) -> list[Signal]:
        """Correlation alert documents and chained inputs into ``outputs``; returns the incident signals."""
        signals: list[Signal] = []
        es = self._settings.elasticsearch
        chain = not self._settings.correlation.chain_locally
        for match in matches:
            rule = self._rules[match.correlation_id]
            document = correlation_alert(rule, match)
            # "index", not "create": the document is a pure function of the match, so a re-decided match
            # (replay, restart) overwrites it with the same content instead of failing with a 409.
            outputs.actions.append(
                BulkAction(es.alerts_index(day(match.decided_ms)), match.id, orjson.dumps(document), token)
            )
            metrics.ALERTS.labels(rule.id).inc()
            signals.append(signal_from_match(rule, match, self._settings.incidents))
            if chain:
                for parent_input in self.router.route_match(match):
                    key, value = encode_correlation_input(parent_input)
                    outputs.kafka_messages.append((self._settings.kafka.alerts_topic, key, value))
        return signals

    def _record_incidents(self, signals: list[Signal]) -> None:
        """All of ``signals`` into incidents, retried as a whole while Elasticsearch cannot take them."""
        delay = self._backoff_base_s
        while True:
            try:
                with self._store_lock:
                    self._incidents.record_batch(signals)
                metrics.INCIDENTS.labels("recorded").inc(len(signals))
                return
            except Exception as exc:
                if not _retryable(exc):
                    # A permanent refusal (4xx) or a bug: retrying cannot help. The correlation alerts themselves
                    # are still indexed; say so loudly and count them.
                    log.exception(
                        "incident update for %d alerts (%s...) failed for good", len(signals), signals[0].alert_id
                    )
                    metrics.FAILED.labels(STAGE, SOURCE, "incident_error").inc(len(signals))
                    return
                log.warning("incident store unavailable (%s); retrying in %.1fs", exc, delay)
                metrics.FAILED.labels(STAGE, SOURCE, "incident_retry").inc()
                if self._stop.wait(delay):
                    raise IncidentStoreUnavailable(
                        f"incident updates for {len(signals)} alerts not stored before shutdown: {exc}"
                    ) from exc
                delay = min(self._backoff_max_s, delay * 2)

    # ---- timer path -----------------------------------------------------------------------------

    def on_timer_matches(self, matches: list[CorrelationMatch]) -> None:
        """Sink of :class:`CorrelationTimer` (its thread): matches closed by wall-clock time.

        Their documents go through the stage's bulk sink with :data:`TIMER_TOKEN`, which holds back no offset.
        Honest limit: such a match is not backed by an uncommitted Kafka record. If the process dies after the
        timer decided it but before the sink acknowledged its document (one flush interval, or longer while
        Elasticsearch is down) or before its incident update, it is gone from this process. The rebuild
        replays inputs from (committed − timespan − lateness) with ``emit=False``; when the window's inputs
        are in that range and the replayed inputs alone do not move the watermark past the window (the usual
        case: the timer closes windows precisely when no later alert arrived), the first timer tick after the
        rebuild closes the window again and re-emits the same match, with the same id. Only if later inputs
        (already committed) pushed the watermark past the window during replay is the match lost.
        """
        outputs = RecordOutputs()
        signals = self._emit(matches, outputs, TIMER_TOKEN)
        if self._deliver_timer_outputs is not None:
            self._deliver_timer_outputs(outputs)
        try:
            self._record_incidents(signals)
        except IncidentStoreUnavailable:
            log.error(
                "timer-decided correlation incidents not stored (shutting down): %s", [s.alert_id for s in signals]
            )

    # ---- rebuild ----------------------------------------------------------------------------------

    def rebuild(self, records: Iterable[SourceRecord]) -> int:
        """Replace the engine with one rebuilt from already-processed records (``emit=False``); returns the
        number of inputs replayed. The lock is held throughout so the timer cannot advance a half-built
        engine to wall-clock time (which would make the older replayed inputs late)."""
        replayed = 0
        with self._store_lock:
            # New partitions, new keys: incidents their previous owner wrote must be found by search (see take_over).
            self._incidents.take_over()
        with self.lock:
            engine = self._new_engine()
            for record in records:
                try:
                    message = decode_record(record.value)
                except Exception:  # already dead-lettered when it was first processed
                    continue
                if isinstance(message, IncidentAlert):
                    continue
                for correlation_input in message:
                    engine.process(correlation_input, emit=False)
                    replayed += 1
            self._install(engine)
        return replayed

    # ---- dead letters -----------------------------------------------------------------------------

    def _dead_letter(
        self,
        outputs: RecordOutputs,
        record: SourceRecord,
        error_type: str,
        message: str,
        original: bytes | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        entry = make_entry(
            record,
            parser="alert_message",
            stage=STAGE,
            error_type=error_type,
            message=message,
            original=record.value if original is None else original,
            index_in_record=None,
            max_original_bytes=self._settings.pipeline.dlq_max_original_bytes,
            extra=extra,
        )
        self._append_dlq(outputs, record, entry)

    def _append_dlq(self, outputs: RecordOutputs, record: SourceRecord, entry: DlqEntry) -> None:
        error_type = entry.document["dlq"]["error_type"]
        metrics.DLQ.labels(STAGE, SOURCE, error_type).inc()
        metrics.FAILED.labels(STAGE, SOURCE, error_type).inc()
        token = Token(record.topic, record.partition, record.offset, "dlq", SOURCE)
        outputs.actions.append(
            BulkAction(self._settings.elasticsearch.dlq_index, entry.doc_id, entry.to_bytes(), token)
        )
        outputs.kafka_messages.append((self._settings.kafka.dlq_topic, entry.doc_id.encode(), entry.to_bytes()))

    def dead_letter_rejection(
        self, token: Token, original: bytes, status: int, error_type: str, reason: str, index: str, doc_id: str
    ) -> RecordOutputs:
        """Elasticsearch refused a correlation alert for good: it goes to the DLQ with the reason."""
        outputs = RecordOutputs()
        record = SourceRecord(token.topic, token.partition, token.offset, b"")
        self._dead_letter(
            outputs,
            record,
            ErrorType.MAPPING,
            f"Elasticsearch refused the {token.kind} document (HTTP {status} {error_type}): {reason}",
            original=original,
            extra={"index": index, "doc_id": doc_id},
        )
        return outputs


class TimerFedSink(BulkSink):
    """A bulk sink that other threads can hand actions to (``offer``).

    The sink itself is single-threaded (the consumer loop); offered actions wait in a thread-safe inbox and
    are moved into the buffer by the loop's own calls (``due``/``flush``), so the timer never touches it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inbox: queue.SimpleQueue[BulkAction] = queue.SimpleQueue()

    def offer(self, action: BulkAction) -> None:
        self._inbox.put(action)

    def _take_inbox(self) -> None:
        while True:
            try:
                self.add(self._inbox.get_nowait())
            except queue.Empty:
                return

    @property
    def pending(self) -> int:
        return super().pending + self._inbox.qsize()

    def due(self, eager: bool = False) -> bool:
        self._take_inbox()
        return super().due(eager)

    def flush(self, force: bool = False, eager: bool = False) -> FlushReport:
        self._take_inbox()
        return super().flush(force, eager)


class RebuildingConsumer:
    """The correlate stage's ``RecordConsumer``: rebuilds the engine after each assignment.

    The rebalance callback only notes the assigned partitions; the rebuild runs right after the ``poll`` that
    assigned them returns and before its records are handed to the runner (they start at the committed
    position, so they come after everything replayed). Commits never include the synthetic timer partition.
    """

    def __init__(
        self,
        inner_factory: Callable[[Callable[[set[Partition]], None]], RecordConsumer],
        stage: CorrelateStage,
        reader: RebuildReader,
    ) -> None:
        self._stage = stage
        self._reader = reader
        self._to_rebuild: set[Partition] | None = None
        self._inner = inner_factory(self._note_assigned)

    def _note_assigned(self, partitions: set[Partition]) -> None:
        self._to_rebuild = set(partitions)

    def poll(self, timeout_ms: int, max_records: int) -> list[SourceRecord]:
        self._stage.follow_rules()  # between batches: a reload's correlation rules apply from the next record
        records = self._inner.poll(timeout_ms, max_records)
        if self._to_rebuild is not None:
            partitions, self._to_rebuild = self._to_rebuild, None
            self.rebuild(partitions)
        return records

    def rebuild(self, partitions: set[Partition]) -> None:
        try:
            history = self._reader(partitions, self._stage.lookback_ms) if self._stage.lookback_ms else []
        except Exception:  # windows start empty; no duplicates are possible, only missed cross-restart matches
            log.exception("rebuilding correlation windows for %s failed", sorted(partitions))
            history = []
        replayed = self._stage.rebuild(history)
        log.info("correlation windows rebuilt for %s: %d inputs replayed", sorted(partitions), replayed)

    def pause_all(self) -> None:
        self._inner.pause_all()

    def resume_all(self) -> None:
        self._inner.resume_all()

    def commit(self, positions: dict[Partition, int]) -> None:
        real = {tp: pos for tp, pos in positions.items() if tp[0] != TIMER_TOPIC}
        if real:
            self._inner.commit(real)

    def assignment(self) -> set[Partition]:
        return self._inner.assignment()

    def lag(self) -> dict[Partition, int]:
        return self._inner.lag()

    def close(self) -> None:
        self._inner.close()


class CorrelateRunner(StageRunner):
    """A :class:`StageRunner` that also runs the correlation timer and hands the stop flag to the stage."""

    def __init__(self, *args: Any, correlate: CorrelateStage, timer: CorrelationTimer, **kwargs: Any) -> None:
        self._correlate = correlate
        self._timer = timer
        super().__init__(*args, **kwargs)

    def run(self, stop: threading.Event) -> None:
        self._correlate.bind_stop(stop)
        self._timer.start()
        super().run(stop)

    def shutdown(self) -> None:
        # Stop the timer first so its last matches are in the sink before the final drain.
        self._timer.stop()
        super().shutdown()


def build_correlate_runner(settings: Settings, rules: RuleSetHolder, client: Elasticsearch) -> StageRunner:
    # No refresh per write: the store syncs once per assignment instead (see ElasticsearchBackend).
    backend = ElasticsearchBackend(
        client,
        settings.elasticsearch.incidents_index,
        refresh=False,
        claims_index=settings.elasticsearch.incident_claims_index,
    )
    backend.ensure_index()
    store = IncidentStore(backend, settings.incidents, SystemClock().now_ms)
    lock = threading.Lock()
    follower = CorrelationsFollower(rules, settings.correlation.entity_fields)
    stage = CorrelateStage(settings, follower.current, store, lock, follower=follower)
    p = settings.pipeline
    sink = TimerFedSink(
        ElasticsearchBulkTransport(client),
        max_actions=p.bulk_max_actions,
        max_bytes=p.bulk_max_bytes,
        flush_interval_s=p.bulk_flush_interval_s,
        backoff_max_s=p.bulk_backoff_max_s,
    )
    producer: MessageProducer = KafkaMessageProducer(settings.kafka)
    timer = CorrelationTimer(stage.engine, stage.on_timer_matches, settings.correlation.timer_interval_s, lock=lock)

    def deliver(outputs: RecordOutputs) -> None:
        for action in outputs.actions:
            sink.offer(action)
        for topic, key, value in outputs.kafka_messages:
            producer.send(topic, key, value)  # kafka-python's producer is thread-safe

    stage.bind_timer(timer, deliver)
    group = settings.kafka.correlate_group_id

    def read(partitions: set[Partition], lookback_ms: int) -> list[SourceRecord]:
        return read_rebuild_range(settings.kafka, group, partitions, lookback_ms)

    def consumer_factory(on_revoked: Callable[[set[Partition]], None]) -> RecordConsumer:
        def inner(on_assigned: Callable[[set[Partition]], None]) -> RecordConsumer:
            # A shorter metadata age bounds how long a member can sit without partitions if it ever joins
            # with stale topic metadata (the correlate stage is useless without its partitions).
            return KafkaRecordConsumer(
                settings.kafka,
                [settings.kafka.alerts_topic],
                group,
                on_revoked,
                on_assigned=on_assigned,
                metadata_max_age_ms=10_000,
                # Let the broker gather up to 250 ms of alert messages per fetch: each poll batch ends with the
                # incident and claim writes (two bulk requests and a multi-get), so many small batches cost requests
                # on both sides. Measured in bench_e2e: 147 -> 75-79 bulk requests and 46 -> 17 multi-gets from the
                # correlate stage, its thread's CPU 0.59 -> 0.47 s; incidents wait at most 250 ms longer.
                fetch_min_bytes=CORRELATE_FETCH_MIN_BYTES,
                fetch_max_wait_ms=CORRELATE_FETCH_MAX_WAIT_MS,
            )

        return RebuildingConsumer(inner, stage, read)

    return CorrelateRunner(
        STAGE,
        consumer_factory,
        stage,
        sink,
        producer,
        poll_timeout_ms=p.poll_timeout_ms,
        poll_max_records=p.poll_max_records,
        shutdown_timeout_s=p.shutdown_timeout_s,
        eager_flush=p.bulk_eager_flush,
        correlate=stage,
        timer=timer,
    )
