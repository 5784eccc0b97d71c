"""Application log parser: JSON shapes, logfmt, syslog, plain text, and the Apache access samples."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from parsers.app import AppLogParser
from parsers.base import ErrorType, SourceRecord
from parsers.common import ParserOptions
from parsers.registry import build_parsers, parsers_for_topics
from siem.config import KafkaSettings, ParserSettings
from siem.errors import ConfigError

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "elastic_integrations" / "apache_access"
CLOCK = lambda: datetime(2024, 6, 1, tzinfo=UTC)  # noqa: E731


def parse(value: bytes):
    return AppLogParser(ParserOptions(clock=CLOCK)).parse(SourceRecord("siem.raw.app", 1, 9, value))


@pytest.mark.parametrize(
    ("line", "timestamp", "level", "message"),
    [
        (b'{"@timestamp":"2024-01-01T00:00:00.5Z","log.level":"INFO","message":"ecs","ecs.version":"1.6.0"}',
         "2024-01-01T00:00:00.500Z", "info", "ecs"),
        (b'{"event":"user logged in","level":"warning","timestamp":"2024-01-01T01:00:00+01:00"}',
         "2024-01-01T00:00:00.000Z", "warning", "user logged in"),
        (b'{"level":50,"time":1704067200000,"msg":"pino","pid":1,"hostname":"h"}',
         "2024-01-01T00:00:00.000Z", "error", "pino"),
        (b'{"level":"debug","ts":1704067200.25,"msg":"zap","caller":"main.go:1"}',
         "2024-01-01T00:00:00.250Z", "debug", "zap"),
        (b'{"asctime":"2024-01-01 00:00:00,123","levelname":"ERROR","name":"app.db","message":"py"}',
         "2024-01-01T00:00:00.123Z", "error", "py"),
        (b'time="2024-01-01T00:00:00Z" level=info msg="logfmt line" user=bob',
         "2024-01-01T00:00:00.000Z", "info", "logfmt line"),
        (b"<165>1 2024-01-01T00:00:00.000Z host1 app 42 ID1 [ex@1 a=\"b\"] syslog 5424",
         "2024-01-01T00:00:00.000Z", "notice", "syslog 5424"),
        (b"<13>Jan  1 00:00:00 host2 sshd[77]: Accepted password for bob",
         "2024-01-01T00:00:00.000Z", "notice", "Accepted password for bob"),
    ],
)
def test_structured_lines(line: bytes, timestamp: str, level: str, message: str) -> None:
    (ev,) = parse(line).events
    assert ev.dataset == "app.logs"
    assert ev.ecs["@timestamp"] == timestamp
    assert ev.ecs["log"]["level"] == level
    assert ev.ecs["message"] == message


def test_plain_text_is_an_event_and_multiline_splits() -> None:
    result = parse(b"hello world\n\nsecond line\n")
    assert [e.ecs["message"] for e in result.events] == ["hello world", "second line"]
    assert result.events[0].ecs["@timestamp"] == "2024-06-01T00:00:00.000Z" and not result.failures
    assert len({e.id for e in result.events}) == 2


def test_bad_lines_go_to_the_dlq() -> None:
    result = parse(b'{"msg": "ok"}\n{"msg": broken}\n{"time": "soon", "msg": "x"}')
    assert len(result.events) == 1
    assert [(f.error_type, f.index_in_record) for f in result.failures] == [
        (ErrorType.JSON, 1), (ErrorType.TIMESTAMP, 2)]
    assert parse(b"\xff\xfe").failures[0].error_type == ErrorType.DECODE


def test_apache_access_samples_including_malformed() -> None:
    for name in ("test-access-basic.log", "test-access-newer-input-only.log"):
        raw = (DATA / name).read_bytes()
        result = parse(raw)
        assert not result.failures
        assert len(result.events) == len(raw.decode().splitlines())
        for ev in result.events:
            assert ev.dataset == "app.access" and ev.ecs["event"]["category"] == ["web"]
            assert ev.ecs["http"]["response"]["status_code"] >= 200 and ev.native["sc-status"]
            assert ev.ecs["source"]["address"] and ev.native["c-ip"]
    basic = parse((DATA / "test-access-basic.log").read_bytes()).events
    assert basic[0].ecs["@timestamp"] == "2016-12-26T14:16:29.000Z"
    assert basic[0].ecs["url"]["path"] == "/favicon.ico" and basic[0].ecs["source"]["ip"] == "::1"
    assert basic[1].ecs["user_agent"]["original"].startswith("Mozilla/5.0")
    newer = parse((DATA / "test-access-newer-input-only.log").read_bytes()).events
    xss = next(e for e in newer if "NXSSTEST" in e.native["cs-request"])
    assert xss.ecs["http"]["response"]["status_code"] == 400
    frank = next(e for e in newer if e.native.get("cs-username") == "frank")
    assert frank.native["cs-uri-stem"] == "/apache_pb.gif" and frank.ecs["user"]["name"] == "frank"


def test_query_string_w3c_fields() -> None:
    (ev,) = parse(b'1.2.3.4 - - [01/Jan/2024:00:00:00 +0000] "GET /a.php?id=1%27 HTTP/1.1" 200 5 "-" "sqlmap"').events
    assert ev.native["cs-uri-query"] == "id=1%27" and ev.ecs["url"]["query"] == "id=1%27"
    assert ev.native["cs-user-agent"] == "sqlmap"


def test_registry_and_routing() -> None:
    parsers = build_parsers(ParserSettings())
    assert set(parsers) == {"cloudtrail", "k8s_audit", "app"}
    routes = parsers_for_topics(KafkaSettings().raw_topics, parsers)
    assert routes["siem.raw.k8s-audit"].dataset == "kubernetes.audit_logs"
    with pytest.raises(ConfigError):
        parsers_for_topics({"x": "nope"}, parsers)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"msg":"login failed","client_ip":"203.0.113.9","user":"bob"}', "203.0.113.9"),
        (b'{"msg":"x","remoteAddress":"2001:db8::1"}', "2001:db8::1"),
        (b'level=warn msg="login failed" src_ip=198.51.100.4', "198.51.100.4"),
        (b'{"msg":"x","client_ip":"not-an-ip","ip":"192.0.2.1"}', "192.0.2.1"),
        (b'{"msg":"no address here"}', None),
    ],
)
def test_client_address_becomes_source_ip(line: bytes, expected: str | None) -> None:
    (event,) = parse(line).events
    assert event.ecs.get("source", {}).get("ip") == expected
    if expected:
        assert event.ecs["related"]["ip"] == [expected]
