"""The consumer loop's delivery guarantees, with fakes behind the consumer/producer/transport interfaces."""

from __future__ import annotations

import threading
import time

import orjson
import pytest

from correlation.windows.messages import CorrelationInput
from indexing.bulk import BulkSink
from ingest.alert_messages import decode_record, encode_correlation_input
from ingest.detect import Alert, DetectStage, NoRules, RecordOutputs
from ingest.kafka_io import KafkaMessage
from ingest.runner import HANDOFF_EVERY, StageRunner
from parsers.base import SourceRecord
from siem.config import ElasticsearchSettings, PipelineSettings
from tests.unit.runtime_fakes import FakeConsumer, FakeProducer, FakeTransport, JsonTestParser


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _record(offset: int, value: bytes, partition: int = 0) -> SourceRecord:
    return SourceRecord("raw", partition, offset, value)


def _good(offset: int, partition: int = 0) -> SourceRecord:
    return _record(offset, orjson.dumps({"id": f"e{partition}-{offset}"}), partition)


def _build(
    records: list[SourceRecord],
    transport: FakeTransport,
    clock: FakeClock | None = None,
    background=False,
    poll_timeout_ms=10,
    eager_flush=True,
    max_actions=10,
    poll_max_records=5,
):
    clock = clock or FakeClock()
    consumer = FakeConsumer(records)
    producer = FakeProducer()
    stage = DetectStage(
        {"raw": JsonTestParser()}, NoRules(), ElasticsearchSettings(), PipelineSettings(), "siem.alerts", "siem.dlq"
    )
    sink = BulkSink(
        transport,
        max_actions=max_actions,
        max_bytes=1 << 20,
        flush_interval_s=0.5,
        backoff_max_s=2.0,
        clock=clock,
        background=background,
    )

    def factory(on_revoked):
        consumer.on_revoked = on_revoked
        return consumer

    runner = StageRunner(
        "detect",
        factory,
        stage,
        sink,
        producer,
        poll_timeout_ms=poll_timeout_ms,
        poll_max_records=poll_max_records,
        shutdown_timeout_s=5,
        commit_interval_s=0.0,
        clock=clock,
        sleep=clock.sleep,
        eager_flush=eager_flush,
    )
    return runner, consumer, producer, clock


def _run_steps(runner: StageRunner, clock: FakeClock, steps: int) -> None:
    for _ in range(steps):
        runner.step()
        clock.now += 1.0
        time.sleep(0.002)  # background mode: let the bulk worker thread answer


BACKGROUND = pytest.mark.parametrize("background", [False, True], ids=["inline-bulk", "background-bulk"])


@BACKGROUND
def test_everything_indexed_then_committed_past_the_last_record(background):
    transport = FakeTransport()
    runner, consumer, producer, clock = _build([_good(i) for i in range(23)], transport, background=background)
    _run_steps(runner, clock, 10)
    assert len(transport.indexed) == 23
    assert consumer.committed == {("raw", 0): 23}
    assert producer.flushed >= 1  # producer flushed before each commit


@BACKGROUND
def test_outage_pauses_fetching_commits_nothing_new_and_loses_nothing(background):
    transport = FakeTransport()
    runner, consumer, _, clock = _build([_good(i) for i in range(40)], transport, background=background)
    _run_steps(runner, clock, 2)
    # A request already in flight finishes (and is committed) before the outage starts; no new polling.
    for _ in range(500):
        if runner.sink.due() or runner.sink.pending == 0:
            break
        time.sleep(0.002)
    runner._flush_once()
    runner._commit()
    committed_before = dict(consumer.committed)
    transport.down = True
    _run_steps(runner, clock, 6)
    assert consumer.paused, "partitions must be paused while Elasticsearch is down"
    assert consumer.committed == committed_before, "nothing may be committed while documents are undelivered"
    assert consumer.queue, "records must stay in Kafka instead of piling up in memory"
    transport.down = False
    _run_steps(runner, clock, 30)
    assert not consumer.paused
    assert sorted(doc_id for _, doc_id in transport.indexed) == sorted(f"e0-{i}" for i in range(40))
    assert consumer.committed == {("raw", 0): 40}


def test_bad_input_and_refused_documents_go_to_the_dlq_with_their_reason():
    transport = FakeTransport()
    records = [
        _good(0),
        _record(1, b"{not json"),
        _record(2, orjson.dumps({"id": "refused", "msg": "REFUSE"})),
        _record(3, orjson.dumps({"boom": True})),
        _record(4, orjson.dumps({"skip": True})),
        _good(5),
    ]
    runner, consumer, producer, clock = _build(records, transport)
    _run_steps(runner, clock, 8)
    dlq_docs = [doc for (index, _), doc in transport.indexed.items() if index == "siem-dlq"]
    reasons = {doc["dlq"]["offset"]: (doc["dlq"]["error_type"], doc["dlq"]["message"]) for doc in dlq_docs}
    assert reasons[1][0] == "invalid_json"
    assert reasons[2][0] == "mapping_error" and "document_parsing_exception" in reasons[2][1]
    assert reasons[3][0] == "internal_error" and "parser bug" in reasons[3][1]
    assert {t for t, _, _ in producer.sent} == {"siem.dlq"}
    assert len(producer.sent) == 3
    # the refused document's original bytes are kept in its DLQ entry
    refused = next(doc for doc in dlq_docs if doc["dlq"]["offset"] == 2)
    assert refused["dlq"]["doc_id"] == "refused"
    assert consumer.committed == {("raw", 0): 6}


def test_retryable_item_is_retried_and_blocks_the_commit_until_delivered():
    transport = FakeTransport()
    transport.throttle_once = {"e0-1"}
    runner, consumer, _, clock = _build([_good(i) for i in range(3)], transport)
    runner.step()  # caught up: the batch goes out at once; e0-1 is throttled and waits for its backoff
    assert ("siem-events-test.events-2026.11.22", "e0-1") not in transport.indexed
    assert consumer.committed.get(("raw", 0), 0) <= 1
    _run_steps(runner, clock, 6)
    assert ("siem-events-test.events-2026.11.22", "e0-1") in transport.indexed
    assert consumer.committed == {("raw", 0): 3}


def test_revoke_drains_and_commits_revoked_partitions():
    transport = FakeTransport()
    runner, consumer, _, clock = _build([_good(i) for i in range(4)], transport)
    runner.step()  # polled 4 records, buffered (not yet due)
    assert consumer.on_revoked is not None
    consumer.on_revoked({("raw", 0)})
    assert len(transport.indexed) == 4
    assert consumer.committed == {("raw", 0): 4}


@BACKGROUND
def test_shutdown_delivers_buffer_commits_and_closes(background):
    transport = FakeTransport()
    runner, consumer, producer, clock = _build([_good(i) for i in range(3)], transport, background=background)
    stop = threading.Event()
    runner.step()
    stop.set()
    runner.run(stop)
    assert len(transport.indexed) == 3
    assert consumer.committed == {("raw", 0): 3}
    assert consumer.closed and producer.closed


def test_shutdown_while_elasticsearch_is_down_commits_nothing_undelivered():
    transport = FakeTransport()
    transport.down = True
    runner, consumer, _, clock = _build([_good(i) for i in range(3)], transport)
    runner.step()
    runner._shutdown_timeout_s = 0.3
    runner.shutdown()
    # position 0 = "start from the first record again": nothing undelivered is skipped
    assert consumer.committed.get(("raw", 0), 0) == 0
    assert consumer.closed


def test_commit_waits_while_produced_messages_are_still_pending():
    transport = FakeTransport()
    runner, consumer, producer, clock = _build([_good(i) for i in range(3)], transport)
    producer.pending_flushes = 100  # Kafka restarting: every flush times out
    _run_steps(runner, clock, 4)
    assert len(transport.indexed) == 3
    assert consumer.committed == {}, "no commit while alerts/DLQ messages may still be unacknowledged"
    assert runner.stats.records == 3, "the stage keeps running"
    producer.pending_flushes = 0
    _run_steps(runner, clock, 2)
    assert consumer.committed == {("raw", 0): 3}


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "by-size-or-age"])
def test_documents_go_out_whenever_no_request_is_in_flight(eager):
    transport = FakeTransport()
    runner, consumer, _, clock = _build([_good(i) for i in range(8)], transport, eager_flush=eager)
    runner.step()  # 5 records, half a batch: eager hands them to the idle sink at once, otherwise they wait
    assert len(transport.indexed) == (5 if eager else 0)
    runner.step()  # 3 more (a short poll: caught up)
    assert len(transport.indexed) == (8 if eager else 0)
    clock.now += 1.0  # older than bulk_flush_interval_s: sent either way
    runner.step()
    assert len(transport.indexed) == 8 and consumer.committed == {("raw", 0): 8}


def test_long_poll_batches_hand_documents_over_while_they_are_handled():
    transport = FakeTransport()
    records = [_good(i) for i in range(600)]
    runner, _, _, _ = _build(records, transport, max_actions=1000, poll_max_records=600)
    runner.step()
    # One poll of 600 records: a request went out every HANDOFF_EVERY records, not once at the end (Elasticsearch
    # gets work while the stage is still parsing).
    assert transport.requests == 600 // HANDOFF_EVERY and len(transport.indexed) == 600


class GatedTransport(FakeTransport):
    """Holds the first request until ``release`` is set: Elasticsearch busy with it."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def send(self, lines):
        if self.requests == 0:
            self.release.wait(5)
        return super().send(lines)


def test_caught_up_stage_hands_the_last_documents_over_when_the_request_in_flight_ends():
    # A burst ends while a request is in flight: the documents handled after it must go out as soon as that request
    # is answered, not after the next poll has waited out its timeout with nothing to fetch (the fake consumer
    # returns at once, so without the hand-off they would still be buffered after the step).
    transport = GatedTransport()
    runner, consumer, _, _ = _build([_good(i) for i in range(8)], transport, background=True, poll_timeout_ms=2000)
    runner.step()  # a full poll of 5: sent at once, held by Elasticsearch
    runner.step()  # a short poll of 3 (caught up): they wait behind the request in flight
    assert (runner.sink.pending, runner.sink.buffered) == (8, 3)  # 5 in flight, 3 waiting
    threading.Timer(0.05, transport.release.set).start()
    runner.step()
    assert runner.sink.buffered == 0, "handed over as soon as the request in flight was answered"
    runner.sink.wait(5)
    runner.step()
    assert len(transport.indexed) == 8 and consumer.committed == {("raw", 0): 8}
    runner.sink.close()


def test_a_buffer_still_full_after_one_hand_off_is_handed_over_again_instead_of_pausing():
    # A poll batch lands on top of a full buffer: after the request in flight is answered and the next batch is sent,
    # the buffer is still full. Pausing then made the next poll sleep through its whole timeout on paused partitions
    # (the real consumer returns nothing until then), with Elasticsearch idle. The stage waits for that request too.
    transport = GatedTransport()
    runner, consumer, _, _ = _build(
        [_good(i) for i in range(30)], transport, background=True, poll_timeout_ms=2000, max_actions=5,
        poll_max_records=15,
    )
    runner.step()  # 15 records: 5 sent (held by Elasticsearch), 10 buffered
    assert (runner.sink.pending, runner.sink.buffered) == (15, 10)
    threading.Timer(0.05, transport.release.set).start()
    runner.step()
    assert all(not paused for _, paused in consumer.poll_timeouts), "no poll on paused partitions"
    assert len(transport.indexed) >= 10, "both waiting batches went out before the stage polled again"
    for _ in range(5):
        runner.sink.wait(5)
        runner.step()
    assert len(transport.indexed) == 30 and consumer.committed == {("raw", 0): 30}
    runner.sink.close()


def test_consumer_lag_is_reported_per_partition_and_dropped_on_revoke():
    from prometheus_client import REGISTRY

    def lag() -> float | None:
        return REGISTRY.get_sample_value("siem_consumer_lag", {"stage": "detect", "topic": "raw", "partition": "0"})

    transport = FakeTransport()
    runner, consumer, _, _ = _build([_good(i) for i in range(8)], transport)
    runner.step()  # 5 of 8 polled
    assert lag() == 3
    runner.step()
    assert lag() == 0
    assert consumer.on_revoked is not None
    consumer.on_revoked({("raw", 0)})
    assert lag() is None, "a revoked partition's figure must not linger"


def test_failures_are_counted_by_error_type():
    from prometheus_client import REGISTRY

    def failures(error_type: str, source: str = "all") -> float:
        labels = {"stage": "detect", "source": source, "error_type": error_type}
        return REGISTRY.get_sample_value("siem_failures_total", labels) or 0.0

    before = {kind: failures(kind) for kind in ("es_unavailable", "es_retryable_item")}
    bad_json_before = failures("invalid_json", "test")
    transport = FakeTransport()
    transport.down = True
    records = [_good(0), _good(1), _record(2, b"{not json")]
    transport.throttle_once = {"e0-1"}
    runner, _, _, clock = _build(records, transport)
    runner.step()  # the request fails: Elasticsearch down
    transport.down = False
    clock.now += 60
    _run_steps(runner, clock, 3)  # delivered, one item throttled once on the way
    assert failures("es_unavailable") - before["es_unavailable"] >= 1
    assert failures("es_retryable_item") - before["es_retryable_item"] == 1
    assert failures("invalid_json", "test") - bad_json_before == 1


def test_received_records_are_counted_per_source_once_their_poll_batch_ends():
    from prometheus_client import REGISTRY

    def received() -> float:
        labels = {"stage": "detect", "source": "test"}
        return REGISTRY.get_sample_value("siem_records_received_total", labels) or 0.0

    before = received()
    records = [_good(i) for i in range(7)] + [_record(7, b"{not json")]
    runner, _, _, clock = _build(records, FakeTransport(), poll_max_records=5)
    _run_steps(runner, clock, 1)
    assert received() - before == 5, "the first poll batch is counted when it ends"
    _run_steps(runner, clock, 2)
    assert received() - before == 8, "every record, good or bad, counts as received"


class DeferringStage:
    """Finishes every record at the end of its poll batch (as the correlate stage does with incident writes)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.ended: list[int] = []
        self._batch: list[int] = []

    def process(self, record: SourceRecord) -> RecordOutputs:
        self._batch.append(record.offset)
        return RecordOutputs(deferred=True)

    def end_batch(self) -> list[KafkaMessage]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("incident store unreachable")
        self.ended.extend(self._batch)
        self._batch.clear()
        return []

    def dead_letter_rejection(self, *args: object) -> RecordOutputs:
        return RecordOutputs()


def test_deferred_records_are_committed_only_after_their_batch_ended():
    transport = FakeTransport()
    clock = FakeClock()
    consumer = FakeConsumer([_good(i) for i in range(3)])
    stage = DeferringStage(failures=1)
    sink = BulkSink(transport, max_actions=10, max_bytes=1 << 20, flush_interval_s=0.5, backoff_max_s=2.0, clock=clock)
    runner = StageRunner("correlate", lambda on_revoked: consumer, stage, sink, FakeProducer(), poll_timeout_ms=1,
                         poll_max_records=5, shutdown_timeout_s=1, commit_interval_s=0.0, clock=clock,
                         sleep=clock.sleep)
    with pytest.raises(ConnectionError):
        runner.step()
    runner.shutdown()  # what the stage's thread does when step raises: nothing of the failed batch is committed
    # position 0: the next record to read is still the batch's first
    assert consumer.committed.get(("raw", 0), 0) == 0 and stage.ended == []

    consumer = FakeConsumer([_good(i) for i in range(3)])  # restarted: the batch is read again
    stage = DeferringStage(failures=0)
    runner = StageRunner("correlate", lambda on_revoked: consumer, stage, sink, FakeProducer(), poll_timeout_ms=1,
                         poll_max_records=5, shutdown_timeout_s=1, commit_interval_s=0.0, clock=clock,
                         sleep=clock.sleep)
    runner.step()
    assert stage.ended == [0, 1, 2] and consumer.committed == {("raw", 0): 3}


class _FeedsTwoGroups:
    """Every event feeds a correlation: even ids group "a", odd ids group "b"."""

    def detect(self, event, event_index):
        n = int(event.id.split("-")[1])
        group = ("a" if n % 2 == 0 else "b",)
        inp = CorrelationInput("c1", group, "r1", "rule", 0, 1_790_000_000_000 + n, f"x{n}", event.id)
        return [Alert(f"x{n}", {}, [encode_correlation_input(inp)], indexed=False)]


def _inputs(value: bytes) -> list[CorrelationInput]:
    decoded = decode_record(value)
    assert isinstance(decoded, list)
    return decoded


def test_correlation_inputs_go_out_one_message_per_key_before_their_records_are_committed():
    log: list[str] = []
    records = [_good(i) for i in range(7)]
    runner, consumer, producer, clock = _build(records, FakeTransport(), poll_max_records=5)
    runner._stage._detector = _FeedsTwoGroups()
    send, flush, commit = producer.send, producer.flush, consumer.commit

    def logged_send(topic, key, value):
        log.append("send")
        send(topic, key, value)

    def logged_flush(timeout_s):
        log.append("flush")
        flush(timeout_s)

    def logged_commit(positions):
        log.append(f"commit {positions[('raw', 0)]}")
        commit(positions)

    producer.send, producer.flush, consumer.commit = logged_send, logged_flush, logged_commit
    _run_steps(runner, clock, 3)
    batches = [[inp.event_id for inp in _inputs(value)] for _, _, value in producer.sent]
    assert batches == [["e0-0", "e0-2", "e0-4"], ["e0-1", "e0-3"], ["e0-5"], ["e0-6"]]
    assert {topic for topic, _, _ in producer.sent} == {"siem.alerts"}
    # Each poll batch's messages are sent, then flushed, before its records' offsets are committed.
    assert log[: log.index("commit 5") + 1] == ["send", "send", "flush", "commit 5"]
    assert log[log.index("commit 5") + 1 :] == ["send", "send", "flush", "commit 7"]


class _FailsOnTheFourthEvent(_FeedsTwoGroups):
    def detect(self, event, event_index):
        if event.id == "e0-3":
            raise RuntimeError("detector bug")
        return super().detect(event, event_index)


def test_a_batch_the_stage_fails_in_commits_no_record_whose_inputs_were_not_sent():
    """The inputs of a poll batch go out when it ends: a batch that never ends must not commit their records,
    even though their events were indexed during the shutdown's drain."""
    transport = FakeTransport()
    runner, consumer, producer, clock = _build([_good(i) for i in range(5)], transport, poll_max_records=5)
    runner._stage._detector = _FailsOnTheFourthEvent()
    with pytest.raises(RuntimeError, match="detector bug"):
        runner.step()
    runner.shutdown()
    assert len(transport.indexed) == 3, "e0-0..e0-2 were indexed in the drain"
    assert producer.sent == []
    assert consumer.committed.get(("raw", 0), 0) == 0, "re-read on restart, inputs and all"
