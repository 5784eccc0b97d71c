"""Nothing raises out of a parser: hypothesis throws random bytes and random JSON at every parser."""

from __future__ import annotations

import gzip
import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from parsers.base import ErrorType, ParseResult, SourceRecord
from parsers.registry import build_parsers
from siem.config import ParserSettings

PARSERS = build_parsers(ParserSettings(max_message_bytes=64 * 1024, max_depth=16))
KEYS = st.sampled_from(["eventName", "eventTime", "Records", "userIdentity", "kind", "items", "stage",
                        "auditID", "protoPayload", "properties", "log", "logEvents", "detail-type", "detail",
                        "stageTimestamp", "time", "level", "msg", "objectRef", "requestObject", "x"])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS | st.text(max_size=8), children,
                                                                       max_size=5),
    max_leaves=25,
)


def check(result: ParseResult, raw: bytes) -> None:
    assert isinstance(result, ParseResult)
    for failure in result.failures:
        assert failure.error_type in ErrorType and failure.message
        assert failure.error_type != ErrorType.INTERNAL, failure.message
    for event in result.events:
        orjson.dumps(event.ecs)
        assert event.id and event.ecs["@timestamp"].endswith("Z")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.binary(max_size=300))
def test_random_bytes_never_raise(raw: bytes) -> None:
    for parser in PARSERS.values():
        check(parser.parse(SourceRecord("t", 0, 0, raw)), raw)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=JSON, compress=st.booleans())
def test_random_json_never_raises(doc: object, compress: bool) -> None:
    raw = json.dumps(doc).encode()
    if compress:
        raw = gzip.compress(raw)
    for parser in PARSERS.values():
        check(parser.parse(SourceRecord("t", 0, 0, raw)), raw)


@settings(max_examples=200, deadline=None)
@given(line=st.text(max_size=200))
def test_random_text_lines_never_raise(line: str) -> None:
    raw = line.encode()
    check(PARSERS["app"].parse(SourceRecord("t", 0, 0, raw)), raw)
