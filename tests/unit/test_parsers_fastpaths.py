"""The hot-path shortcuts agree with the general code they bypass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from parsers.base import SourceRecord
from parsers.cloudtrail import CloudTrailParser
from parsers.limits import InputRejected
from parsers.redaction import MARKER
from parsers.timestamps import fast_utc_seconds, format_ms, parse_timestamp


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-01-01T00:00:00Z", "2019-01-01T00:00:00.000Z"),
        ("2020-02-29T23:59:59Z", "2020-02-29T23:59:59.000Z"),
        ("2020-02-29T23:59:59.123456Z", "2020-02-29T23:59:59.123Z"),
        ("2020-02-29T23:59:59.1Z", "2020-02-29T23:59:59.100Z"),
        ("2019-02-29T00:00:00Z", None),  # not a calendar date
        ("2019-01-01T24:00:00Z", None),
        ("2019-01-01T00:60:00Z", None),
        ("2019-01-01T00:00:60Z", None),  # leap second: the general parser decides
        ("2019-01-01 00:00:00Z", None),
        ("2019-01-01T00:00:00.Z", None),
        ("2019-01-01T00:00:00,5Z", None),
        ("٢٠١٩-01-01T00:00:00Z", None),  # non-ASCII digits
    ],
)
def test_fast_utc_path_is_strict(text: str, expected: str | None) -> None:
    assert fast_utc_seconds(text) == expected
    if expected is not None:
        assert parse_timestamp(text) == expected


def test_fast_path_falls_back_to_the_general_parser() -> None:
    assert parse_timestamp("2019-01-01T00:00:60Z") == "2019-01-01T00:00:59.000Z"
    assert parse_timestamp("2019-01-01T00:00:00,5Z") == "2019-01-01T00:00:00.500Z"
    with pytest.raises(InputRejected):
        parse_timestamp("2019-02-29T00:00:00Z")


def test_format_ms() -> None:
    assert format_ms(datetime(5, 1, 2, 3, 4, 5, 999)) == "0005-01-02T03:04:05.000Z"
    assert format_ms(datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == "2020-01-02T03:04:05.678Z"
    east = timezone(timedelta(hours=5))
    assert format_ms(datetime(2020, 1, 2, 3, 4, 5, 1000, tzinfo=east)) == "2020-01-01T22:04:05.001Z"


def test_escaped_credential_keys_are_redacted() -> None:
    raw = (b'{"eventName": "GetSessionToken", "eventSource": "sts.amazonaws.com", "eventTime": "2019-01-01T00:00:00Z",'
           b' "responseElements": {"credentials": {"session\\u0054oken": "s3cr3t", "Secret\\u0041ccessKey": "k",'
           b' "accessKeyId": "AKIA"}}}')
    event = CloudTrailParser().parse(SourceRecord("t", 0, 0, raw)).events[0]
    creds = event.native["responseElements"]["credentials"]
    assert creds == {"sessionToken": MARKER, "SecretAccessKey": MARKER, "accessKeyId": "AKIA"}
    assert "s3cr3t" not in event.ecs["aws"]["cloudtrail"]["response_elements"]
    assert event.ecs["aws"]["cloudtrail"]["flattened"]["response_elements"]["credentials"]["sessionToken"] == MARKER
