"""Dead-letter entries: bad input and refused documents, with everything needed to find and replay them.

An entry keeps the original bytes (base64, capped by ``dlq_max_original_bytes``; the untruncated record stays
addressable by its topic/partition/offset), where it came from, which parser or stage refused it, a fixed error
type and a human-readable message. Entries go to the ``siem.dlq`` topic (for replay) and the DLQ index (for
analysts). Their ids are deterministic, so re-processing after a crash does not duplicate them.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from parsers.base import ParseFailure, SourceRecord


@dataclass(frozen=True, slots=True)
class DlqEntry:
    doc_id: str
    document: dict[str, Any]

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.document)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def make_entry(
    record: SourceRecord,
    *,
    parser: str,
    stage: str,
    error_type: str,
    message: str,
    original: bytes,
    index_in_record: int | None,
    max_original_bytes: int,
    extra: dict[str, Any] | None = None,
) -> DlqEntry:
    key = f"{record.topic}\x1f{record.partition}\x1f{record.offset}\x1f{index_in_record}\x1f{error_type}"
    doc_id = hashlib.sha256(key.encode()).hexdigest()[:32]
    kept = original[:max_original_bytes]
    dlq: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "index_in_record": index_in_record,
        "parser": parser,
        "stage": stage,
        "error_type": error_type,
        "message": message,
        "original_base64": base64.b64encode(kept).decode("ascii"),
        "original_size": len(original),
        "original_truncated": len(kept) < len(original),
        "original_sha256": hashlib.sha256(original).hexdigest(),
    }
    if extra:
        dlq.update(extra)
    document = {"@timestamp": _now_iso(), "event": {"kind": "pipeline_error", "id": doc_id}, "dlq": dlq}
    return DlqEntry(doc_id, document)


def entry_for_failure(record: SourceRecord, failure: ParseFailure, parser: str, max_original_bytes: int) -> DlqEntry:
    return make_entry(
        record,
        parser=parser,
        stage="parse",
        error_type=str(failure.error_type),
        message=failure.message,
        original=failure.original,
        index_in_record=failure.index_in_record,
        max_original_bytes=max_original_bytes,
    )


def original_bytes(document: dict[str, Any]) -> bytes:
    """The original record bytes kept in a DLQ document (for `siem dlq replay`)."""
    return base64.b64decode(document["dlq"]["original_base64"])
