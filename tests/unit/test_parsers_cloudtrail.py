"""CloudTrail parser: envelopes, key variants, digests, redaction, DLQ reasons and the Panther corpus."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import orjson

from parsers.base import ErrorType, SourceRecord
from parsers.cloudtrail import CloudTrailParser
from parsers.common import ParserOptions
from parsers.ids import coordinate_id
from parsers.redaction import MARKER, PathRedactor
from siem.config import MAX_JSON_DEPTH

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
CLOCK = lambda: datetime(2024, 1, 1, tzinfo=UTC)  # noqa: E731
REC = {
    "eventVersion": "1.08", "eventTime": "2024-05-01T10:00:00Z", "eventSource": "sts.amazonaws.com",
    "eventName": "AssumeRole", "awsRegion": "eu-west-1", "sourceIPAddress": "198.51.100.7",
    "userIdentity": {"type": "IAMUser", "userName": "alice", "accountId": "111122223333"},
    "responseElements": {"credentials": {"accessKeyId": "ASIAX", "sessionToken": "secret-token",
                                         "expiration": "x"}},
    "eventID": "ev-1",
}


def parse(value: bytes, parser: CloudTrailParser | None = None, key: bytes | None = None):
    parser = parser or CloudTrailParser(ParserOptions(clock=CLOCK))
    return parser.parse(SourceRecord("siem.raw.cloudtrail", 2, 40, value, key=key, timestamp_ms=1_700_000_000_000))


def test_single_record_core_fields_and_redaction() -> None:
    result = parse(orjson.dumps(REC))
    (event,) = result.events
    ecs = event.ecs
    assert event.id == "ev-1" and event.dataset == "aws.cloudtrail"
    assert ecs["@timestamp"] == "2024-05-01T10:00:00.000Z"
    assert ecs["event"]["action"] == "AssumeRole" and ecs["event"]["category"] == ["authentication"]
    assert ecs["event"]["ingested"] == "2024-01-01T00:00:00.000Z"
    assert ecs["cloud"] == {"provider": "aws", "region": "eu-west-1", "account": {"id": "111122223333"}}
    assert ecs["source"]["ip"] == "198.51.100.7" and ecs["related"]["ip"] == ["198.51.100.7"]
    creds = event.native["responseElements"]["credentials"]
    assert creds["sessionToken"] == MARKER and creds["accessKeyId"] == "ASIAX"
    assert "secret-token" not in orjson.dumps(ecs).decode()
    assert "original" not in ecs["event"]


def test_s3_object_gzip_with_one_bad_record_keeps_the_good_ones() -> None:
    body = {"Records": [REC, {"eventName": "X", "eventTime": "not a time"}, 42, dict(REC, eventID="ev-2")]}
    result = parse(gzip.compress(orjson.dumps(body)))
    assert [e.id for e in result.events] == ["ev-1", "ev-2"]
    assert [(f.error_type, f.index_in_record) for f in result.failures] == [
        (ErrorType.TIMESTAMP, 1), (ErrorType.SHAPE, 2)]
    assert orjson.loads(result.failures[0].original)["eventTime"] == "not a time"


def test_eventbridge_and_cloudwatch_envelopes() -> None:
    bridge = {"detail-type": "AWS API Call via CloudTrail", "source": "aws.sts", "detail": REC}
    assert parse(orjson.dumps(bridge)).events[0].ecs["event"]["id"] == "ev-1"
    other = parse(orjson.dumps({"detail-type": "EC2 Instance State-change Notification", "detail": {}}))
    assert other.failures[0].error_type == ErrorType.SHAPE
    cwl = {"messageType": "DATA_MESSAGE", "logEvents": [
        {"id": "1", "timestamp": 1, "message": json.dumps(REC)}, {"id": "2", "timestamp": 1, "message": "{oops"}]}
    result = parse(gzip.compress(orjson.dumps(cwl)))
    assert len(result.events) == 1 and result.failures[0].error_type == ErrorType.JSON
    assert result.failures[0].original == b"{oops" and result.failures[0].index_in_record == 1
    control = parse(gzip.compress(orjson.dumps({"messageType": "CONTROL_MESSAGE", "logEvents": []})))
    assert control.skipped == 1 and not control.failures


def test_digest_files_are_skipped() -> None:
    digest = {"awsAccountId": "1", "digestStartTime": "x", "digestEndTime": "y", "digestS3Bucket": "b"}
    assert parse(orjson.dumps(digest)).skipped == 1
    keyed = parse(orjson.dumps(REC), key=b"AWSLogs/1/CloudTrail-Digest/eu-west-1/x.json.gz")
    assert keyed.skipped == 1 and not keyed.events


def test_lowercase_keys_are_canonicalized_and_missing_time_uses_kafka_time() -> None:
    rec = {"eventname": "GetRecords", "eventsource": "dynamodb.amazonaws.com", "awsregion": "eu-west-1",
           "useridentity": {"arn": "arn:aws:iam::1:user/bob", "username": "bob"}}
    (event,) = parse(orjson.dumps(rec)).events
    assert event.native["eventName"] == "GetRecords" and event.native["userIdentity"]["userName"] == "bob"
    assert event.ecs["user"]["name"] == "bob"
    assert event.ecs["@timestamp"] == "2023-11-14T22:13:20.000Z"  # Kafka record time
    assert event.id == coordinate_id("siem.raw.cloudtrail", 2, 40, 0)


def test_bad_input_goes_to_the_dlq_with_reason() -> None:
    parser = CloudTrailParser(ParserOptions(max_bytes=1000, max_depth=8, clock=CLOCK))
    cases = {
        b"\xff\xfe\x00bad": ErrorType.DECODE,
        b'{"eventName": ': ErrorType.JSON,
        b"[1, 2": ErrorType.JSON,
        b'"just a string"': ErrorType.SHAPE,
        b'{"foo": 1}': ErrorType.SHAPE,
        b"{" + b" " * 2000 + b"}": ErrorType.OVERSIZE,
        b'{"eventName": "x", "a": ' + b"[" * 20 + b"]" * 20 + b"}": ErrorType.TOO_DEEP,
        gzip.compress(b"x" * 5000): ErrorType.OVERSIZE,
        b"\x1f\x8bnot-gzip": ErrorType.DECODE,
    }
    for raw, expected in cases.items():
        result = parser.parse(SourceRecord("t", 0, 0, raw))
        assert [f.error_type for f in result.failures] == [expected], raw[:40]
        assert result.failures[0].original == raw and result.failures[0].message


def test_deepest_allowed_nesting_parses_or_dead_letters_without_crashing() -> None:
    """The parsers run compiled (mypyc), where recursion has no interpreter limit: the deepest input the settings
    allow must still end as an event or a DLQ entry (a stack overflow would kill the process)."""
    max_depth = MAX_JSON_DEPTH
    parser = CloudTrailParser(ParserOptions(max_depth=max_depth, clock=CLOCK))
    for levels in (max_depth - 10, max_depth - 1, max_depth, 1_000):
        params = b'{"a":' * (levels - 1) + b'{"token":"t"}' + b"}" * (levels - 1)  # too deep for orjson.dumps
        raw = orjson.dumps(REC)[:-1] + b',"requestParameters":' + params + b"}"
        result = parser.parse(SourceRecord("t", 0, 0, raw))
        if levels + 1 <= max_depth:  # the record object is one level more
            (event,) = result.events
            assert b'"token":"[REDACTED]"' in orjson.dumps(event.ecs), levels  # redacted at the bottom, serializable
        else:
            assert [f.error_type for f in result.failures] == [ErrorType.TOO_DEEP], levels


def test_keep_original_and_extra_redaction_paths() -> None:
    options = ParserOptions(keep_original=True, redactor=PathRedactor(["requestParameters.policyDocument"]),
                            clock=CLOCK)
    rec = dict(REC, requestParameters={"policyDocument": "{...}", "roleName": "r"})
    (event,) = parse(orjson.dumps(rec), CloudTrailParser(options)).events
    assert event.native["requestParameters"]["policyDocument"] == MARKER
    assert "secret-token" not in event.ecs["event"]["original"]
    assert "{...}" not in orjson.dumps(event.ecs).decode()


def test_panther_corpus_parses() -> None:
    parser = CloudTrailParser(ParserOptions(clock=CLOCK))
    rows = [json.loads(line) for line in (DATA / "panther" / "cloudtrail_tests.jsonl").read_text().splitlines()]
    assert len(rows) == 472
    failed = []
    for i, row in enumerate(rows):
        result = parser.parse(SourceRecord("t", 0, i, orjson.dumps(row["log"])))
        if result.failures:
            failed.append((row["log"].get("eventTime"), result.failures[0].error_type))
            continue
        (event,) = result.events
        ecs = event.ecs
        assert ecs["@timestamp"].endswith("Z") and len(ecs["@timestamp"]) == 24
        assert ecs["event"]["action"] or ecs["event"]["provider"]
        assert ecs["event"]["outcome"] in ("success", "failure")
        assert "eventName" in event.native or "eventSource" in event.native
        orjson.dumps(ecs)
    # The two deliberately redacted records in the corpus have no usable time.
    assert failed == [("redacted", ErrorType.TIMESTAMP), ("...", ErrorType.TIMESTAMP)]


def test_resources_that_are_not_objects_keep_a_mapping_of_their_own() -> None:
    arn = {"ARN": "arn:aws:iam::111122223333:role/R", "accountId": "111122223333", "type": "AWS::IAM::Role"}
    mixed = {**REC, "resources": [arn, "arn:aws:s3:::bucket"]}
    (event,) = parse(orjson.dumps(mixed)).events
    ct = event.ecs["aws"]["cloudtrail"]
    assert ct["resources"] == [arn] and ct["resources_text"] == ["arn:aws:s3:::bucket"]
    (only_objects,) = parse(orjson.dumps({**REC, "resources": [arn]})).events
    assert only_objects.ecs["aws"]["cloudtrail"]["resources"] == [arn]
    assert "resources_text" not in only_objects.ecs["aws"]["cloudtrail"]
    (only_text,) = parse(orjson.dumps({**REC, "resources": ["x"]})).events
    assert "resources" not in only_text.ecs["aws"]["cloudtrail"]
    assert only_text.ecs["aws"]["cloudtrail"]["resources_text"] == ["x"]
