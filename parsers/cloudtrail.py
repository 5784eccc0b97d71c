"""AWS CloudTrail parser: every envelope CloudTrail arrives in -> one ECS event per record.

Accepted shapes (plain or gzip bytes):
- a single record;
- an S3 log file object ``{"Records": [...]}`` (one bad record fails alone, with its index);
- an EventBridge envelope (``detail-type`` "... via CloudTrail", record in ``detail``);
- a CloudWatch Logs subscription payload (``logEvents[].message`` hold records; control messages are skipped);
- a JSON array of records.
Digest files are skipped and counted, not errors.
"""

from __future__ import annotations

from typing import Any

import orjson

from parsers.base import ErrorType, ParsedEvent, ParseResult, SourceRecord
from parsers.cloudtrail_ecs import DATASET, build_ecs
from parsers.common import ParserOptions, fallback_timestamp, item_failure, now_iso, run_guarded
from parsers.ids import coordinate_id
from parsers.limits import GZIP_MAGIC, InputRejected, loads_json, unwrap_payload
from parsers.timestamps import UTC_TEXT, parse_timestamp

# Keys CloudTrail uses, for records written with lower-cased keys (seen from some forwarders and data lakes).
_CANONICAL = [
    "eventVersion", "userIdentity", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress",
    "userAgent", "errorCode", "errorMessage", "requestParameters", "responseElements", "additionalEventData",
    "requestID", "eventID", "readOnly", "resources", "eventType", "apiVersion", "managementEvent",
    "recipientAccountId", "serviceEventDetails", "sharedEventID", "vpcEndpointId", "eventCategory",
    "tlsDetails", "sessionCredentialFromConsole", "edgeDeviceDetails", "insightDetails", "addendum",
]
_IDENTITY = [
    "type", "principalId", "arn", "accountId", "accessKeyId", "userName", "sessionContext", "invokedBy",
    "identityProvider", "onBehalfOf", "credentialId",
]
_CANONICAL_BY_LOWER = {k.lower(): k for k in _CANONICAL}
_IDENTITY_BY_LOWER = {k.lower(): k for k in _IDENTITY}
_DIGEST_KEYS = ("digestS3Bucket", "digestStartTime", "digestEndTime", "digestSignatureAlgorithm")


def _canonical_keys(rec: dict[str, Any]) -> dict[str, Any]:
    out = {_CANONICAL_BY_LOWER.get(k.lower(), k): v for k, v in rec.items()}
    ui = out.get("userIdentity")
    if isinstance(ui, dict):
        out["userIdentity"] = {_IDENTITY_BY_LOWER.get(k.lower(), k): v for k, v in ui.items()}
    return out


def _is_digest(obj: dict[str, Any]) -> bool:
    return any(k in obj for k in _DIGEST_KEYS)


class CloudTrailParser:
    def __init__(self, options: ParserOptions | None = None) -> None:
        # Per instance: compiled (mypyc, setup.py), a class attribute would not be readable from the class.
        self.name = "cloudtrail"
        self.dataset = DATASET
        self.options = options or ParserOptions()
        self._ingested = ""

    def parse(self, record: SourceRecord) -> ParseResult:
        return run_guarded(record, self._parse)

    def _parse(self, record: SourceRecord, result: ParseResult) -> None:
        if record.key is not None and b"CloudTrail-Digest" in record.key:
            result.skipped += 1
            return
        options = self.options
        payload = record.value
        if len(payload) > options.max_bytes or payload.startswith(GZIP_MAGIC):
            payload = unwrap_payload(payload, options.max_bytes)
        obj = loads_json(payload, options.max_depth)
        # Per record, not per event. (Credentials are redacted per event, see build_ecs.)
        self._ingested = now_iso(options.clock)
        if (type(obj) is dict and ("eventName" in obj or "eventSource" in obj) and "Records" not in obj
                and "logEvents" not in obj and "messageType" not in obj and "detail-type" not in obj):
            # A single record, the common shape on the stream: straight to the event (same as ``_one``).
            result.events.append(self._event(obj, record, 0))
        elif isinstance(obj, list):
            self._batch(obj, record, result)
        elif not isinstance(obj, dict):
            raise InputRejected(ErrorType.SHAPE, f"expected a JSON object, got {type(obj).__name__}")
        elif "Records" in obj:
            records = obj["Records"]
            if not isinstance(records, list):
                raise InputRejected(ErrorType.SHAPE, "'Records' is not a list")
            self._batch(records, record, result)
        elif "logEvents" in obj or "messageType" in obj:
            self._cloudwatch(obj, record, result)
        elif "detail-type" in obj:
            detail_type = obj.get("detail-type")
            if not (isinstance(detail_type, str) and detail_type.endswith("via CloudTrail")):
                raise InputRejected(ErrorType.SHAPE, f"EventBridge event {detail_type!r} is not CloudTrail")
            self._one(obj.get("detail"), record, 0, result)
        else:
            self._one(obj, record, 0, result)

    def _batch(self, items: list[Any], record: SourceRecord, result: ParseResult) -> None:
        for index, item in enumerate(items):
            try:
                self._one(item, record, index, result)
            except Exception as exc:  # noqa: BLE001 - one bad record must not lose the others
                result.failures.append(item_failure(exc, orjson.dumps(item), index))

    def _cloudwatch(self, obj: dict[str, Any], record: SourceRecord, result: ParseResult) -> None:
        if obj.get("messageType") == "CONTROL_MESSAGE":
            result.skipped += 1
            return
        events = obj.get("logEvents")
        if not isinstance(events, list):
            raise InputRejected(ErrorType.SHAPE, "'logEvents' is not a list")
        for index, log_event in enumerate(events):
            message = log_event.get("message") if isinstance(log_event, dict) else None
            try:
                if not isinstance(message, str):
                    raise InputRejected(ErrorType.SHAPE, "log event without a string 'message'")
                item = loads_json(message, self.options.max_depth)
                self._one(item, record, index, result)
            except Exception as exc:  # noqa: BLE001 - one bad record must not lose the others
                original = message.encode() if isinstance(message, str) else orjson.dumps(log_event)
                result.failures.append(item_failure(exc, original, index))

    def _one(self, rec: Any, record: SourceRecord, index: int, result: ParseResult) -> None:
        if not isinstance(rec, dict):
            raise InputRejected(ErrorType.SHAPE, f"CloudTrail record is a {type(rec).__name__}, not an object")
        if "eventName" not in rec and "eventSource" not in rec:
            rec = _canonical_keys(rec)
            if _is_digest(rec):
                result.skipped += 1
                return
            if "eventName" not in rec and "eventSource" not in rec:
                raise InputRejected(ErrorType.SHAPE, "not a CloudTrail record: no eventName or eventSource")
        result.events.append(self._event(rec, record, index))

    def _event(self, rec: dict[str, Any], record: SourceRecord, index: int) -> ParsedEvent:
        options = self.options
        redactor = options.redactor
        extra_paths = redactor.active
        if extra_paths:
            # Extra paths first, credentials while building: both only replace values, so the order is free.
            redactor.apply(rec)
        event_time = rec.get("eventTime")
        if event_time is None:
            timestamp = fallback_timestamp(record, options.clock)
        elif type(event_time) is str:
            timestamp = UTC_TEXT.get(event_time) or parse_timestamp(event_time)
        else:
            timestamp = parse_timestamp(event_time)
        doc = build_ecs(rec, timestamp, True)  # redact_credentials (positional: cheaper on the hot path)
        event = doc["event"]
        event["ingested"] = self._ingested
        if options.keep_original:
            # Re-serialized from the redacted record: the raw bytes could hold the secrets we just removed.
            event["original"] = orjson.dumps(rec).decode()
        if extra_paths:
            redactor.apply(doc)
        event_id = rec.get("eventID")
        doc_id = event_id if isinstance(event_id, str) and event_id else coordinate_id(
            record.topic, record.partition, record.offset, index)
        return ParsedEvent(doc_id, DATASET, doc, rec)
