"""Application log parser: one event per line, format detected per line.

Order of detection: JSON object, syslog (RFC 5424, RFC 3164), web access log, logfmt, and finally plain
text. A plain-text line is a valid event with ``message`` only, never an error; only undecodable bytes,
a line that is clearly JSON but invalid, limits and unparseable timestamps go to the DLQ.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from parsers.app_access import looks_like_access, parse_access
from parsers.app_json import is_logfmt, json_to_ecs, parse_logfmt, timestamp_value
from parsers.app_syslog import parse_syslog
from parsers.base import ParsedEvent, ParseResult, SourceRecord
from parsers.common import ECS_VERSION, ParserOptions, fallback_timestamp, item_failure, now_iso, run_guarded
from parsers.ids import coordinate_id
from parsers.limits import decode_text, loads_json, unwrap_payload
from parsers.timestamps import parse_timestamp

DATASET_LOGS = "app.logs"
DATASET_ACCESS = "app.access"
_ACCESS_EVENT = {"category": ["web"], "type": ["access"]}


class AppLogParser:
    def __init__(self, options: ParserOptions | None = None) -> None:
        self.name = "app"
        self.dataset = DATASET_LOGS
        self.options = options or ParserOptions()

    def parse(self, record: SourceRecord) -> ParseResult:
        return run_guarded(record, self._parse)

    def _parse(self, record: SourceRecord, result: ParseResult) -> None:
        text = decode_text(unwrap_payload(record.value, self.options.max_bytes))
        lines = [line for line in text.splitlines() if line.strip()]
        if not lines:
            result.skipped += 1
            return
        reference = (
            datetime.fromtimestamp(record.timestamp_ms / 1000, UTC) if record.timestamp_ms
            else self.options.clock()
        )
        for index, line in enumerate(lines):
            try:
                result.events.append(self._line(line.strip(), record, index, reference))
            except Exception as exc:  # noqa: BLE001 - one bad line must not lose the others
                result.failures.append(item_failure(exc, line.encode(), index))

    def _structured(self, line: str, reference: datetime) -> tuple[str, Any, dict[str, Any], dict[str, Any]]:
        """(dataset, raw timestamp or parsed ISO string, ECS fields, native fields)."""
        if line[0] == "{" and line[-1] == "}":
            obj = loads_json(line, self.options.max_depth)
            if isinstance(obj, dict):
                doc: dict[str, Any] = {}
                json_to_ecs(obj, doc)
                raw = timestamp_value(obj)
                return DATASET_LOGS, parse_timestamp(raw) if raw is not None else None, doc, obj
        if line[0] == "<" or line[:3].isalpha():
            syslog = parse_syslog(line, reference)
            if syslog is not None:
                return DATASET_LOGS, syslog[0], syslog[1], syslog[2]
        if looks_like_access(line):
            access = parse_access(line)
            if access is not None:
                return DATASET_ACCESS, access[0], access[1], access[2]
        if is_logfmt(line):
            fields = parse_logfmt(line)
            doc = {}
            json_to_ecs(fields, doc)
            raw = timestamp_value(fields)
            return DATASET_LOGS, parse_timestamp(raw) if raw is not None else None, doc, fields
        return DATASET_LOGS, None, {"message": line}, {"message": line}

    def _line(self, line: str, record: SourceRecord, index: int, reference: datetime) -> ParsedEvent:
        options = self.options
        dataset, timestamp, fields, native = self._structured(line, reference)
        if options.redactor:
            options.redactor.apply(native)
        event: dict[str, Any] = {"kind": "event", "module": "app", "dataset": dataset}
        if dataset == DATASET_ACCESS:
            event.update(_ACCESS_EVENT)
        event.update(fields.pop("event", None) or {})
        event["ingested"] = now_iso(options.clock)
        doc: dict[str, Any] = {"@timestamp": timestamp or fallback_timestamp(record, options.clock),
                               "event": event, "ecs": {"version": ECS_VERSION}}
        doc.update(fields)
        if options.keep_original:
            event["original"] = line if not options.redactor else orjson.dumps(native).decode()
        if options.redactor:
            options.redactor.apply(doc)
        doc_id = coordinate_id(record.topic, record.partition, record.offset, index)
        return ParsedEvent(id=doc_id, dataset=dataset, ecs=doc, native=native)
