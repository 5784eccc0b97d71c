"""Bulk writer to Elasticsearch that never blocks the consumer loop and never drops a document.

Stages, like elasticsearch-py's helpers: actions are buffered; a flush (by count, bytes or age) sends one bulk
request; the response is split into per-document outcomes. What happens to each document:

* acknowledged (2xx)                         -> reported ``delivered``
* retryable (429, 5xx, rejected execution)   -> stays buffered, retried after a capped exponential backoff
* permanent (mapping/validation 4xx)         -> reported ``rejected`` with the reason (the caller DLQs it)

A request refused for its size (HTTP 413: the cluster's ``http.max_content_length`` or a proxy's body limit)
halves the sink's byte limit and goes again in smaller requests; a document too large to go alone is reported
``rejected`` with that reason.

A request that fails as a whole (connection refused, timeout, 429/5xx) keeps every document buffered and sets
the backoff; ``blocked`` then tells the runtime to pause its Kafka partitions instead of buffering more.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

log = logging.getLogger(__name__)


@dataclass(slots=True)
class BulkAction:
    """One document to index. ``token`` is opaque to the sink and handed back with the outcome."""

    index: str
    doc_id: str
    source: bytes  # the document, already serialized (orjson)
    token: Any = None
    op_type: str = "index"  # "index" overwrites (idempotent with deterministic ids); "create" keeps the first
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = len(self.source) + len(self.index) + len(self.doc_id) + 48


@dataclass(frozen=True, slots=True)
class ItemStatus:
    """Elasticsearch's answer for one bulk item."""

    status: int
    error_type: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    action: BulkAction
    status: int
    error_type: str
    reason: str


@dataclass(slots=True)
class FlushReport:
    delivered: list[BulkAction] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    retrying: int = 0
    throttled: int = 0  # items Elasticsearch answered with a retryable status (429/5xx): requeued
    request_error: str | None = None
    latency_s: float | None = None


class TransportUnavailable(Exception):
    """The bulk request as a whole failed in a way worth retrying (connection, timeout, 429, 5xx)."""


class RequestTooLarge(Exception):
    """The bulk request as a whole was refused for its size (HTTP 413); smaller requests may pass."""


class BulkTransport(Protocol):
    def send(self, lines: Sequence[bytes]) -> list[ItemStatus]:
        """Send NDJSON lines as one bulk request; one status per action, in order."""
        ...


def is_retryable(item: ItemStatus) -> bool:
    """Whether Elasticsearch may take the item later (overloaded or failing), as opposed to refusing it."""
    return item.status == 429 or item.status >= 500 or item.error_type == "es_rejected_execution_exception"


@dataclass(frozen=True, slots=True)
class _SendResult:
    statuses: list[ItemStatus] | None  # None: the request failed as a whole
    error: str | None = None
    latency_s: float = 0.0
    too_large: bool = False  # refused for its size (HTTP 413)


class BulkSink:
    """Buffers actions and flushes them; see the module docstring for outcomes.

    With ``background=True`` one bulk request at a time runs on a worker thread while the caller keeps
    polling and parsing (CPU work and Elasticsearch overlap); ``flush`` then starts a request and hands back
    the outcome of the previous one. Buffer, requeue and outcomes stay on the caller's thread, so the sink
    needs no lock; memory stays bounded (the buffer plus one batch in flight).
    """

    def __init__(
        self,
        transport: BulkTransport,
        *,
        max_actions: int,
        max_bytes: int,
        flush_interval_s: float,
        backoff_max_s: float,
        backoff_base_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        background: bool = False,
    ) -> None:
        self._transport = transport
        self._max_actions = max_actions
        self._max_bytes = max_bytes
        self._flush_interval_s = flush_interval_s
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._clock = clock
        self._buffer: list[BulkAction] = []
        self._buffer_bytes = 0
        self._oldest_at: float | None = None
        self._failures = 0  # consecutive failed attempts, drives the backoff
        self._retry_at = 0.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk") if background else None
        self._in_flight: tuple[list[BulkAction], Future[_SendResult]] | None = None
        self.last_success_at: float | None = None
        self.last_error: str | None = None

    def add(self, action: BulkAction) -> None:
        if not self._buffer:
            self._oldest_at = self._clock()
        self._buffer.append(action)
        self._buffer_bytes += action.size

    @property
    def pending(self) -> int:
        """Documents not yet acknowledged: buffered plus in flight."""
        return len(self._buffer) + (len(self._in_flight[0]) if self._in_flight else 0)

    @property
    def buffered(self) -> int:
        """Documents waiting for a request (not counting the one in flight)."""
        return len(self._buffer)

    @property
    def blocked(self) -> bool:
        """True while the last attempt failed: the caller should stop fetching new records."""
        return self._failures > 0

    @property
    def full(self) -> bool:
        return len(self._buffer) >= self._max_actions or self._buffer_bytes >= self._max_bytes

    def due(self, eager: bool = False) -> bool:
        """Whether ``flush`` has something to do now: an outcome to collect or a batch worth sending.

        ``eager``: the caller has caught up with its input, so a batch is worth sending whatever its size or age
        (nothing more is coming soon; waiting would only add latency). Under load the buffer keeps filling while
        a request is in flight, so batches grow with the load by themselves."""
        if self._in_flight is not None:
            return self._in_flight[1].done()
        return self._ready(eager)

    def _ready(self, eager: bool = False) -> bool:
        if not self._buffer or self._clock() < self._retry_at:
            return False
        if eager or self.full or self._failures > 0:
            return True
        return self._oldest_at is not None and self._clock() - self._oldest_at >= self._flush_interval_s

    def flush(self, force: bool = False, eager: bool = False) -> FlushReport:
        """Collect a finished request's outcomes and send the next batch (``force``: regardless of its age, waiting
        for a request in flight; ``eager``: regardless of its size or age, without waiting, see ``due``)."""
        report = FlushReport()
        if self._in_flight is not None:
            batch, future = self._in_flight
            if not future.done():
                if not force:
                    report.retrying = self.pending
                    return report
                future.result()  # draining: wait for the request in flight
            self._in_flight = None
            self._complete(batch, future.result(), report)
        backing_off = self._clock() < self._retry_at
        if self._buffer and not backing_off and (force or self._ready(eager)):
            batch = self._take_batch()
            if self._executor is None:
                self._complete(batch, self._send(batch), report)
            else:
                self._in_flight = (batch, self._executor.submit(self._send, batch))
        report.retrying = self.pending
        return report

    def wait(self, timeout_s: float) -> bool:
        """Block until the request in flight (if any) has its answer, at most ``timeout_s``; True if it has."""
        if self._in_flight is None:
            return True
        try:
            self._in_flight[1].result(timeout=timeout_s)
        except FutureTimeout:
            return False
        return True

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _send(self, batch: list[BulkAction]) -> _SendResult:
        """The network part only (runs on the worker thread in background mode)."""
        started = time.monotonic()
        try:
            statuses = self._transport.send(_ndjson_lines(batch))
        except TransportUnavailable as exc:
            return _SendResult(None, str(exc))
        except RequestTooLarge as exc:
            return _SendResult(None, str(exc), too_large=True)
        return _SendResult(statuses, latency_s=time.monotonic() - started)

    def _complete(self, batch: list[BulkAction], result: _SendResult, report: FlushReport) -> None:
        statuses = result.statuses
        if result.too_large:
            self._shrink(batch, result.error or "HTTP 413", report)
            return
        if statuses is None:
            self._requeue(batch)
            self._note_failure(result.error or "bulk request failed")
            report.request_error = result.error
            return
        report.latency_s = result.latency_s
        retry: list[BulkAction] = []
        for action, item in zip(batch, statuses, strict=True):
            if 200 <= item.status < 300:
                report.delivered.append(action)
            elif is_retryable(item):
                retry.append(action)
            else:
                report.rejected.append(Rejection(action, item.status, item.error_type or "unknown", item.reason or ""))
        if retry:
            report.throttled = len(retry)
            self._requeue(retry)
            self._note_failure(f"{len(retry)} items rejected with a retryable status")
        else:
            self._failures = 0
            self._retry_at = 0.0
            self.last_success_at = self._clock()

    def _shrink(self, batch: list[BulkAction], error: str, report: FlushReport) -> None:
        """The cluster refused ``batch`` for its size: send it again in requests half as large, for good.

        The limit is learned, not configured: it stays at the smaller size for the life of the sink (clusters
        rarely raise their limit at runtime; a restart starts from the setting again). No backoff: the cluster
        is not overloaded, the request was only too big. A single document too large to go alone is refused for
        good (the caller DLQs it with the reason); the documents around it still go."""
        if len(batch) == 1:
            action = batch[0]
            reason = (
                f"the document alone makes a {action.size}-byte bulk request, more than Elasticsearch (or a proxy "
                f"in front of it) accepts: {error}"
            )
            report.rejected.append(Rejection(action, 413, "request_too_large", reason))
            return
        batch_bytes = sum(action.size for action in batch)
        self._max_bytes = max(1, min(self._max_bytes, batch_bytes // 2))
        log.warning(
            "Elasticsearch refused a bulk request of %d documents (%d bytes) as too large (%s); bulk requests are "
            "now limited to %d bytes",
            len(batch),
            batch_bytes,
            error,
            self._max_bytes,
        )
        self._requeue(batch)

    def _take_batch(self) -> list[BulkAction]:
        batch: list[BulkAction] = []
        size = 0
        for action in self._buffer:
            if batch and (len(batch) >= self._max_actions or size + action.size > self._max_bytes):
                break
            batch.append(action)
            size += action.size
        del self._buffer[: len(batch)]
        self._buffer_bytes -= size
        self._oldest_at = self._clock() if self._buffer else None
        return batch

    def _requeue(self, actions: list[BulkAction]) -> None:
        # Put them back in front: retried documents keep their order relative to newer ones.
        self._buffer[:0] = actions
        self._buffer_bytes += sum(action.size for action in actions)
        self._oldest_at = self._oldest_at or self._clock()

    def _note_failure(self, message: str) -> None:
        self._failures += 1
        self.last_error = message
        delay = min(self._backoff_max_s, self._backoff_base_s * 2 ** (self._failures - 1))
        # Jitter spreads retries of many pipelines hitting one recovering cluster.
        self._retry_at = self._clock() + delay * random.uniform(0.8, 1.0)


def _ndjson_lines(batch: list[BulkAction]) -> list[bytes]:
    lines: list[bytes] = []
    for action in batch:
        lines.append(orjson.dumps({action.op_type: {"_index": action.index, "_id": action.doc_id}}))
        lines.append(action.source)
    return lines
