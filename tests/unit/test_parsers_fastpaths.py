"""The hot-path shortcuts agree with the general code they bypass."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.base import ErrorType, SourceRecord
from parsers.cloudtrail import CloudTrailParser
from parsers.common import ParserOptions, now_iso
from parsers.limits import InputRejected
from parsers.redaction import CREDENTIAL_KEYS, MARKER, redact_credentials
from parsers.timestamps import fast_utc_seconds, format_ms, parse_timestamp, system_clock


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


def test_timestamp_caches_agree_with_the_uncached_parse() -> None:
    texts = ["2019-01-01T00:00:00Z", "2019-01-01T00:00:00.5Z", "2022-12-11 19:42:55", "2024-01-01 00:00:00.000",
             "2019-01-01T00:00:00+02:00", "1546300800", "2019-01-01T00:00:60Z"]
    first = [parse_timestamp(t) for t in texts]
    assert [parse_timestamp(t) for t in texts] == first  # second call: from the caches
    assert first[2] == "2022-12-11T19:42:55.000Z" and first[4] == "2018-12-31T22:00:00.000Z"
    for bad in ("2019-02-29T00:00:00Z", "nonsense"):
        for _ in range(2):  # failures are never cached
            with pytest.raises(InputRejected):
                parse_timestamp(bad)


def test_system_clock_ingest_time_matches_format_ms() -> None:
    before = format_ms(datetime.now(UTC))
    cached = [now_iso(system_clock) for _ in range(3)]
    after = format_ms(datetime.now(UTC))
    assert all(before <= value <= after and len(value) == 24 for value in cached)
    fixed = datetime(2020, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert now_iso(lambda: fixed) == "2020-01-02T03:04:05.678Z"  # other clocks: formatted per call


def test_nesting_beyond_orjsons_own_limit_is_too_deep() -> None:
    for raw in (b"[" * 2000 + b"]" * 2000, b"[" * 70 + b"]" * 70):
        (failure,) = CloudTrailParser().parse(SourceRecord("t", 0, 0, raw)).failures
        assert failure.error_type == ErrorType.TOO_DEEP
    at_limit = b'{"eventName": "x", "a": ' + b"[" * 63 + b"]" * 63 + b"}"
    assert CloudTrailParser().parse(SourceRecord("t", 0, 0, at_limit)).events


def test_redaction_survives_python_recursion_limit() -> None:
    node: dict[str, Any] = {}
    deep = node
    for _ in range(3000):
        deep["n"] = {}
        deep = deep["n"]
    deep["sessionToken"] = "s3cr3t"
    redact_credentials(node)
    assert deep["sessionToken"] == MARKER


SECRET = "PLANTED-S3CR3T"
CREDENTIAL_NAMES = sorted(CREDENTIAL_KEYS) + ["SessionToken", "SecretAccessKey", "PASSWORD", "NewPassword",
                                              "session\u0054oken", "to\u212aen"]
PAYLOAD = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["a", "credentials", "items", "userName", "Token", "tokenType"]) | st.text(max_size=6),
        children, max_size=3),
    max_leaves=12,
)


def _plant(payload: Any, path: list[int], key: str) -> Any:
    """Put ``{key: SECRET}`` somewhere inside ``payload`` (following ``path`` through containers)."""
    secret = {key: SECRET}
    if not isinstance(payload, dict | list) or not path:
        return {"wrap": payload, **secret} if isinstance(payload, dict | list) else secret
    children = list(payload.values()) if isinstance(payload, dict) else payload
    containers = [c for c in children if isinstance(c, dict | list)]
    if not containers:
        if isinstance(payload, dict):
            payload[key] = SECRET
        else:
            payload.append(secret)
        return payload
    _plant(containers[path[0] % len(containers)], path[1:], key)
    return payload


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=PAYLOAD, path=st.lists(st.integers(0, 5), max_size=4), key=st.sampled_from(CREDENTIAL_NAMES),
       where=st.sampled_from(["requestParameters", "responseElements"]),
       name=st.sampled_from(["AssumeRole", "ListBuckets", "GetSecretValue", "PutObject", "CreateAccessKey"]),
       escape=st.booleans())
def test_planted_credentials_never_survive(payload: Any, path: list[int], key: str, where: str, name: str,
                                           escape: bool) -> None:
    """Whatever the event and wherever in the payloads a credential key is planted, its value is not output."""
    rec = {"eventName": name, "eventSource": "sts.amazonaws.com", "eventTime": "2024-05-01T10:00:00Z",
           where: _plant(payload, path, key)}
    raw = orjson.dumps(rec)
    if escape:  # the key spelled with a JSON escape must be found too
        raw = raw.replace(b"oken", b"\\u006fken").replace(b"ass", b"\\u0061ss")
    for options in (ParserOptions(), ParserOptions(keep_original=True)):
        result = CloudTrailParser(options).parse(SourceRecord("t", 0, 0, raw))
        (event,) = result.events
        assert SECRET not in orjson.dumps(event.ecs).decode()
        assert SECRET not in orjson.dumps(event.native).decode()
