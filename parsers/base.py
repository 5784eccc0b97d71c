"""What every source parser consumes and produces.

A parser turns one Kafka record (raw bytes plus coordinates) into zero or more :class:`ParsedEvent` s, plus
:class:`ParseFailure` s for the parts that could not be parsed (one bad record in an S3 batch file does not lose
the good ones) and a count of records skipped on purpose (e.g. CloudTrail digest files). Parsers never raise on
bad input: everything bad becomes a ``ParseFailure`` that the runtime sends to the DLQ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol


class ErrorType(StrEnum):
    """Fixed set of reasons a record goes to the DLQ (bounded metric label values)."""

    DECODE = "decode_error"  # bytes are not valid UTF-8 / gzip
    JSON = "invalid_json"
    SHAPE = "wrong_shape"  # valid JSON, but not a record of this source
    OVERSIZE = "oversize"
    TOO_DEEP = "too_deep"
    TIMESTAMP = "bad_timestamp"
    MAPPING = "mapping_error"  # Elasticsearch rejected the document
    INTERNAL = "internal_error"  # a bug in a parser; still never stops the consumer


class SourceRecord(NamedTuple):
    """One Kafka record as the pipeline received it.

    A named tuple: one is made per record, and a frozen dataclass's ``__init__`` (``object.__setattr__`` per
    field, keyword arguments) cost ~1.5 µs of the consumer's ~12 µs per record; a tuple costs a fifth of that."""

    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    timestamp_ms: int | None = None


@dataclass(slots=True)
class ParsedEvent:
    """One normalized event.

    ``ecs`` is the document indexed in Elasticsearch (nested ECS objects, ``@timestamp`` ISO-8601 string).
    ``native`` is the source's own view for Sigma rules that use source-native field names (the raw CloudTrail
    record, the audit event, W3C-style access-log fields); it is already redacted.
    """

    id: str
    dataset: str
    ecs: dict[str, Any]
    native: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ParseFailure:
    """Why (part of) a record could not be parsed; becomes one DLQ entry with the original bytes."""

    error_type: ErrorType
    message: str
    original: bytes
    index_in_record: int | None = None  # position inside a batch (S3 file, EventList, JSON lines)


@dataclass(slots=True)
class ParseResult:
    events: list[ParsedEvent] = field(default_factory=list)
    failures: list[ParseFailure] = field(default_factory=list)
    skipped: int = 0  # deliberately dropped (digest files, non-indexed audit stages), counted not errors


class Parser(Protocol):
    """A source parser. ``name`` is the key used in topic routing (e.g. ``cloudtrail``)."""

    name: str
    dataset: str

    def parse(self, record: SourceRecord) -> ParseResult: ...
