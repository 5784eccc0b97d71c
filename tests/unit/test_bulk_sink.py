"""The bulk sink on its own: batches by count, bytes and age; per-item outcomes; capped backoff; one request in
flight at a time."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import orjson

from indexing.bulk import BulkAction, BulkSink, ItemStatus, RequestTooLarge, TransportUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedTransport:
    """Answers each document by a status chosen from its id; can be down; records every request."""

    def __init__(self, statuses: dict[str, int] | None = None) -> None:
        self.statuses = statuses or {}
        self.down = False
        self.requests: list[list[str]] = []
        self.gate: threading.Event | None = None
        self.max_request_bytes: int | None = None  # like http.max_content_length: larger requests get HTTP 413
        self.too_large = 0  # requests refused for their size

    def send(self, lines: Sequence[bytes]) -> list[ItemStatus]:
        ids = [next(iter(orjson.loads(header).values()))["_id"] for header in lines[::2]]
        self.requests.append(ids)
        if self.gate is not None:
            self.gate.wait(5)
        if self.down:
            raise TransportUnavailable("connection refused")
        if self.max_request_bytes is not None and sum(map(len, lines)) > self.max_request_bytes:
            self.too_large += 1
            raise RequestTooLarge("bulk request refused with HTTP 413")
        out = []
        for doc_id in ids:
            status = self.statuses.get(doc_id, 201)
            out.append(ItemStatus(status, None if status < 300 else "mapper_parsing_exception", "bad field"))
        return out


def action(n: int, size: int = 10) -> BulkAction:
    return BulkAction("idx", f"d{n}", b"x" * size)


def sink(transport: ScriptedTransport, clock: Clock, **overrides: object) -> BulkSink:
    options: dict[str, object] = {
        "max_actions": 3, "max_bytes": 1 << 20, "flush_interval_s": 1.0, "backoff_max_s": 8.0, "backoff_base_s": 0.5,
    }
    options.update(overrides)
    return BulkSink(transport, clock=clock, **options)  # type: ignore[arg-type]


def test_batches_close_by_count_by_bytes_and_by_age():
    transport, clock = ScriptedTransport(), Clock()
    by_count = sink(transport, clock)
    for n in range(4):
        by_count.add(action(n))
    assert by_count.full and by_count.due()
    assert len(by_count.flush().delivered) == 3 and transport.requests[-1] == ["d0", "d1", "d2"]

    one_kb = action(0, 1000).size
    by_bytes = sink(transport, clock, max_actions=100, max_bytes=one_kb * 2 + 10)
    for n in range(3):
        by_bytes.add(action(n, 1000))
    assert by_bytes.full
    by_bytes.flush()
    assert transport.requests[-1] == ["d0", "d1"], "a batch never exceeds max_bytes"

    by_age = sink(transport, clock)
    by_age.add(action(9))
    assert not by_age.due()
    clock.now += 1.0
    assert by_age.due() and by_age.flush().delivered[0].doc_id == "d9"


def test_items_are_delivered_requeued_or_rejected_by_their_status():
    transport, clock = ScriptedTransport({"d1": 429, "d2": 400}), Clock()
    s = sink(transport, clock)
    for n in range(3):
        s.add(action(n))
    report = s.flush()
    assert [a.doc_id for a in report.delivered] == ["d0"]
    assert [(r.action.doc_id, r.status, r.reason) for r in report.rejected] == [("d2", 400, "bad field")]
    assert report.throttled == 1 and s.pending == 1 and s.blocked, "the 429 item waits for a retry"
    transport.statuses.clear()
    clock.now += 10
    assert [a.doc_id for a in s.flush().delivered] == ["d1"] and not s.blocked


def test_backoff_doubles_up_to_its_cap_and_resets_on_success():
    transport, clock = ScriptedTransport(), Clock()
    transport.down = True
    s = sink(transport, clock)
    s.add(action(0))
    waits = []
    for _ in range(7):
        report = s.flush(force=True)
        assert report.request_error and s.pending == 1, "nothing is dropped while Elasticsearch is down"
        waits.append(s._retry_at - clock.now)
        clock.now = s._retry_at
    # base 0.5 s doubling (with 0.8-1.0 jitter), never above the 8 s cap
    assert 0.4 <= waits[0] <= 0.5 and 0.8 <= waits[1] <= 1.0 and 1.6 <= waits[2] <= 2.0
    assert all(w <= 8.0 for w in waits) and waits[-1] >= 6.4
    transport.down = False
    assert len(s.flush().delivered) == 1 and not s.blocked and s._retry_at == 0.0


def test_one_request_in_flight_at_a_time():
    transport, clock = ScriptedTransport(), Clock()
    transport.gate = threading.Event()
    s = sink(transport, clock, background=True)
    try:
        for n in range(3):
            s.add(action(n))
        s.flush()  # sent on the worker thread, held there
        for n in range(3, 6):
            s.add(action(n))
        report = s.flush()  # the first is still in flight: nothing new goes out
        assert report.delivered == [] and s.pending == 6 and not s.wait(0.05)
        transport.gate.set()
        assert s.wait(5)
        assert [a.doc_id for a in s.flush().delivered] == ["d0", "d1", "d2"]  # and the next batch leaves
        assert s.wait(5) and [a.doc_id for a in s.flush().delivered] == ["d3", "d4", "d5"]
        assert len(transport.requests) == 2
    finally:
        s.close()


def test_a_request_refused_for_its_size_goes_again_in_smaller_requests_and_a_lone_oversize_document_is_rejected():
    transport, clock = ScriptedTransport(), Clock()
    s = sink(transport, clock, max_actions=100)
    transport.max_request_bytes = 2_500  # ~10 documents of 200 bytes; the sink starts at 1 MiB
    for n in range(40):
        s.add(action(n, 200))
    s.add(action(99, 5_000))  # larger than any request the cluster takes
    s.add(action(100, 200))
    delivered: list[str] = []
    rejected = []
    for _ in range(50):
        report = s.flush(force=True)
        delivered += [a.doc_id for a in report.delivered]
        rejected += report.rejected
        if not s.pending:
            break
    assert delivered == [f"d{n}" for n in range(40)] + ["d100"], "every other document arrives, in order, once"
    assert [(r.action.doc_id, r.status, r.error_type) for r in rejected] == [("d99", 413, "request_too_large")]
    assert "more than Elasticsearch" in rejected[0].reason and "HTTP 413" in rejected[0].reason
    assert not s.blocked, "a request that was only too big is not an outage: no backoff"
    assert transport.too_large >= 3, "the first requests were refused for their size, then d99 alone"
    last_sizes = [len(ids) for ids in transport.requests[-3:]]
    assert all(n <= 10 for n in last_sizes), f"the sink kept the smaller size: {last_sizes}"
