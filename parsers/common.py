"""Pieces shared by every source parser: options, the no-raise boundary and ECS helpers."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from time import time_ns
from typing import Any

from parsers.base import ErrorType, ParseFailure, ParseResult, SourceRecord
from parsers.limits import InputRejected
from parsers.redaction import PathRedactor
from parsers.timestamps import Clock, epoch_ms_to_iso, format_ms, system_clock
from siem.config import ParserSettings

ECS_VERSION = "8.11.0"  # the ECS version of the field set we emit (same as Elastic's integrations)


@dataclass(slots=True)
class ParserOptions:
    """What a parser needs from :class:`ParserSettings`, resolved once (not per event)."""

    max_bytes: int = 10 * 1024 * 1024
    max_depth: int = 64
    keep_original: bool = False
    k8s_stages: frozenset[str] = frozenset({"ResponseComplete", "Panic"})
    k8s_streaming_subresources: frozenset[str] = frozenset({"exec", "attach", "portforward"})
    redactor: PathRedactor = field(default_factory=lambda: PathRedactor(()))
    clock: Clock = system_clock

    @classmethod
    def from_settings(cls, settings: ParserSettings, clock: Clock | None = None) -> ParserOptions:
        return cls(
            max_bytes=settings.max_message_bytes,
            max_depth=settings.max_depth,
            keep_original=settings.keep_original,
            k8s_stages=frozenset(settings.k8s_stages),
            k8s_streaming_subresources=frozenset(settings.k8s_streaming_subresources),
            redactor=PathRedactor(settings.extra_redaction_paths),
            clock=clock or system_clock,
        )


def run_guarded(record: SourceRecord, parser: Callable[[SourceRecord, ParseResult], None]) -> ParseResult:
    """The no-raise boundary: bad input and parser bugs both become DLQ entries with the original bytes."""
    result = ParseResult([], [])  # explicit lists: cheaper than the default factories
    try:
        parser(record, result)
    except InputRejected as exc:
        result.failures.append(ParseFailure(exc.error_type, exc.message, record.value))
    except RecursionError:
        result.failures.append(ParseFailure(ErrorType.TOO_DEEP, "input nested too deeply", record.value))
    except Exception as exc:  # noqa: BLE001 - a parser bug must not stop the consumer
        message = f"{type(exc).__name__}: {exc}"[:500]
        result.failures.append(ParseFailure(ErrorType.INTERNAL, message, record.value))
    return result


def item_failure(exc: Exception, original: bytes, index: int) -> ParseFailure:
    """Failure of one item inside a batch (S3 file, EventList, JSON lines); the others still parse."""
    if isinstance(exc, InputRejected):
        return ParseFailure(exc.error_type, exc.message, original, index)
    return ParseFailure(ErrorType.INTERNAL, f"{type(exc).__name__}: {exc}"[:500], original, index)


def fallback_timestamp(record: SourceRecord, clock: Clock) -> str:
    """For events that carry no time at all: the Kafka record time, else the ingest clock."""
    if record.timestamp_ms is not None and record.timestamp_ms > 0:
        return epoch_ms_to_iso(record.timestamp_ms)
    return now_iso(clock)  # the same clock reading as format_ms(clock()), formatted once per millisecond


# The system clock's last reading, formatted: (epoch milliseconds, ECS string). The ingest time is taken for every
# record and only changes every millisecond, so formatting it once per millisecond is enough.
_last_now: tuple[int, str] = (-1, "")


def now_iso(clock: Clock) -> str:
    global _last_now
    if clock is system_clock:
        # Same value as format_ms(datetime.now(UTC)): both read the system clock and truncate to milliseconds.
        ms = time_ns() // 1_000_000
        last = _last_now
        if last[0] == ms:
            return last[1]
        text = epoch_ms_to_iso(ms)
        _last_now = (ms, text)
        return text
    now: datetime = clock()
    return format_ms(now)


@lru_cache(maxsize=65536)
def as_ip(value: str) -> str | None:
    """``value`` if it is an IP address (IPv4/IPv6, optional zone), else None. Cached: sources repeat IPs."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return None
    return value


# The values ``put`` drops, as one containment test. Written ``value or value not in DROPPED``: a truthy value is
# never one of them, so the common case costs one truth test instead of four comparisons.
DROPPED: tuple[Any, ...] = (None, "", [], {})


def put(target: dict[str, Any], key: str, value: Any) -> None:
    """Set only non-empty values, as Elastic's pipelines drop nulls, empty strings and empty lists/objects."""
    if value or value not in DROPPED:
        target[key] = value


def add_unique(values: list[str], value: Any) -> None:
    if isinstance(value, str) and value and value not in values:
        values.append(value)
