"""Small fakes behind the runtime's interfaces (consumer, producer, bulk transport, parser)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson

from indexing.bulk import ItemStatus, TransportUnavailable
from ingest.kafka_io import FlushTimeout
from parsers.base import ErrorType, ParsedEvent, ParseFailure, ParseResult, SourceRecord


class FakeConsumer:
    def __init__(self, records: list[SourceRecord]) -> None:
        self.queue = list(records)
        self.paused = False
        self.commits: list[dict[tuple[str, int], int]] = []
        self.committed: dict[tuple[str, int], int] = {}
        self.closed = False
        self.on_revoked: Callable[[set[tuple[str, int]]], None] | None = None
        self.poll_timeouts: list[tuple[int, bool]] = []  # (timeout_ms, paused) of each poll

    def poll(self, timeout_ms: int, max_records: int) -> list[SourceRecord]:
        self.poll_timeouts.append((timeout_ms, self.paused))
        if self.paused:
            return []
        batch, self.queue = self.queue[:max_records], self.queue[max_records:]
        return batch

    def pause_all(self) -> None:
        self.paused = True

    def resume_all(self) -> None:
        self.paused = False

    def commit(self, positions: dict[tuple[str, int], int]) -> None:
        self.commits.append(dict(positions))
        self.committed.update(positions)

    def assignment(self) -> set[tuple[str, int]]:
        return {("raw", 0)}

    def lag(self) -> dict[tuple[str, int], int]:
        return {("raw", 0): len(self.queue)}  # the records not polled yet

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.flushed = 0
        self.closed = False
        self.pending_flushes = 0  # the next N flushes time out

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.sent.append((topic, key, value))

    def flush(self, timeout_s: float) -> None:
        if self.pending_flushes:
            self.pending_flushes -= 1
            raise FlushTimeout("Kafka is restarting")
        self.flushed += 1

    def close(self) -> None:
        self.closed = True


class FakeTransport:
    """Records what was indexed; can be 'down' or refuse documents whose source contains a marker."""

    def __init__(self) -> None:
        self.down = False
        self.indexed: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests = 0
        self.refuse_marker = b"REFUSE"
        self.throttle_once: set[str] = set()

    def send(self, lines: Sequence[bytes]) -> list[ItemStatus]:
        self.requests += 1
        if self.down:
            raise TransportUnavailable("connection refused")
        statuses = []
        for header, source in zip(lines[::2], lines[1::2], strict=True):
            meta = next(iter(orjson.loads(header).values()))
            if self.refuse_marker in source and not meta["_index"].endswith("dlq"):
                statuses.append(ItemStatus(400, "document_parsing_exception", "failed to parse field [x]"))
            elif meta["_id"] in self.throttle_once:
                self.throttle_once.discard(meta["_id"])
                statuses.append(ItemStatus(429, "es_rejected_execution_exception", "queue full"))
            else:
                self.indexed[(meta["_index"], meta["_id"])] = orjson.loads(source)
                statuses.append(ItemStatus(201))
        return statuses


class JsonTestParser:
    """Parses `{"id": ..., "ts": ...}`; anything else is a DLQ failure; `{"boom": true}` raises (a parser bug)."""

    name = "test"
    dataset = "test.events"

    def parse(self, record: SourceRecord) -> ParseResult:
        try:
            data = orjson.loads(record.value)
        except orjson.JSONDecodeError as exc:
            return ParseResult(failures=[ParseFailure(ErrorType.JSON, str(exc), record.value)])
        if data.get("boom"):
            raise RuntimeError("parser bug")
        if data.get("skip"):
            return ParseResult(skipped=1)
        ecs = {"@timestamp": data.get("ts", "2026-11-22T10:00:00.000Z"), "message": data.get("msg", "")}
        return ParseResult(events=[ParsedEvent(str(data["id"]), self.dataset, ecs, data)])
