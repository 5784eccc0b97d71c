"""Rendering of Kafka/Elasticsearch/Maven config, the Kafka probe and host checks; no network, no JVM."""

from __future__ import annotations

import http.server
import json
import os
import socket
import struct
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from siem.config import StackSettings
from siem.errors import StackError
from stack.elasticsearch import ElasticsearchService, ProbeAccess, cluster_health, node_settings, render_yaml
from stack.host import can_traverse, check_traversable, find_java_home
from stack.kafka import (
    KafkaService,
    api_versions_ok,
    check_slf4j_binding,
    random_cluster_id,
    render_log4j2,
    render_properties,
    runtime_dependencies,
    server_properties,
)
from stack.maven import COMPLETE_MARKER, Coordinates, MavenResolver, render_pom
from stack.process import RunAs


@pytest.fixture
def settings(tmp_path: Path) -> StackSettings:
    return StackSettings(home=tmp_path, kafka_port=29092, kafka_controller_port=29093, elasticsearch_port=29200)


def _parse_properties(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_kafka_properties_single_kraft_node(settings: StackSettings, tmp_path: Path) -> None:
    props = _parse_properties(render_properties(server_properties(settings, tmp_path / "data")))
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:29093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:29092"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == "1"


def test_kafka_properties_overrides_replace_defaults(settings: StackSettings, tmp_path: Path) -> None:
    props = server_properties(settings, tmp_path, {"auto.create.topics.enable": "false", "x.y": "1"})
    assert props["auto.create.topics.enable"] == "false"
    assert props["x.y"] == "1"


def test_kafka_log4j2_writes_to_file(tmp_path: Path) -> None:
    text = render_log4j2(tmp_path / "server.log")
    assert f"appender.file.fileName = {tmp_path / 'server.log'}" in text
    assert "rootLogger.appenderRef.file.ref = FILE" in text


def test_kafka_command_uses_heap_classpath_and_properties(settings: StackSettings, tmp_path: Path) -> None:
    service = KafkaService(settings, lambda _m: None, Path("/jdk"))
    service.libs = tmp_path / "libs"
    argv = service.command()
    assert argv[0] == "/jdk/bin/java"
    assert "-Xmx512m" in argv and "-Xms512m" in argv
    assert argv[argv.index("-cp") + 1] == f"{tmp_path / 'libs'}/*"
    assert argv[-2:] == ["kafka.Kafka", str(service.properties_file)]
    assert service.marker() in " ".join(argv)


def test_kafka_command_needs_resolution(settings: StackSettings) -> None:
    with pytest.raises(StackError, match="resolve"):
        KafkaService(settings, lambda _m: None, Path("/jdk")).command()


def test_kafka_runtime_dependencies() -> None:
    modern = [str(c) for c in runtime_dependencies("4.1.1")]
    assert "org.apache.kafka:kafka_2.13:4.1.1:jar" in modern
    assert any("log4j-slf4j-impl" in c for c in modern)
    assert not any("log4j-1.2-api" in c for c in modern)
    assert any("log4j-1.2-api" in str(c) for c in runtime_dependencies("3.9.1"))


def test_slf4j_binding_check(tmp_path: Path) -> None:
    (tmp_path / "slf4j-api-1.7.36.jar").touch()
    check_slf4j_binding(tmp_path)
    (tmp_path / "slf4j-api-2.0.17.jar").touch()
    with pytest.raises(StackError, match="slf4j2"):
        check_slf4j_binding(tmp_path)


def test_random_cluster_id_has_kafka_format() -> None:
    ids = {random_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") and "=" not in i for i in ids)


def test_elasticsearch_settings_defaults(settings: StackSettings, tmp_path: Path) -> None:
    config = yaml.safe_load(render_yaml(node_settings(settings, tmp_path / "data", tmp_path / "logs")))
    assert config["discovery.type"] == "single-node"
    assert config["network.host"] == "127.0.0.1"
    assert config["http.port"] == 29200
    assert config["transport.port"] == settings.elasticsearch_transport_port
    assert config["xpack.security.enabled"] is False
    assert config["cluster.routing.allocation.disk.threshold_enabled"] is False
    assert config["path.data"] == str(tmp_path / "data")


def test_elasticsearch_security_hook(settings: StackSettings, tmp_path: Path) -> None:
    config = node_settings(
        settings, tmp_path, tmp_path, security=True, overrides={"xpack.security.http.ssl.enabled": True}
    )
    assert config["xpack.security.enabled"] is True
    assert config["xpack.security.http.ssl.enabled"] is True


def test_elasticsearch_environment(settings: StackSettings) -> None:
    service = ElasticsearchService(settings, lambda _m: None, Path("/jdk"))
    env = service.environment()
    assert env["ES_JAVA_HOME"] == "/jdk"
    assert env["ES_JAVA_OPTS"] == "-Xms1g -Xmx1g"
    assert env["ES_PATH_CONF"] == str(settings.home / "elasticsearch" / "config")
    assert service.command() == [str(settings.home / "cache" / "elasticsearch-8.19.21" / "elasticsearch-8.19.21"
                                     / "bin" / "elasticsearch")]
    assert service.url == "http://127.0.0.1:29200"


def test_pom_lists_dependencies() -> None:
    pom = render_pom([Coordinates("g", "a", "1"), Coordinates("g2", "b", "2", "zip")])
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    deps = ET.fromstring(pom).findall("m:dependencies/m:dependency", ns)
    assert [d.findtext("m:artifactId", namespaces=ns) for d in deps] == ["a", "b"]
    assert deps[1].findtext("m:type", namespaces=ns) == "zip"


def test_warm_cache_does_not_run_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = MavenResolver(tmp_path)
    target = tmp_path / "kafka-4.1.1"
    (target / "libs").mkdir(parents=True)
    (target / COMPLETE_MARKER).touch()

    def no_network(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("maven must not run on a warm cache")

    monkeypatch.setattr(resolver, "_run", no_network)
    assert resolver.copy_dependencies([Coordinates("g", "a", "1")], target) == target / "libs"
    assert resolver.unpack(Coordinates("g", "a", "1", "zip"), target) == target


def test_partial_download_is_not_a_cache_hit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    resolver = MavenResolver(tmp_path)
    target = tmp_path / "kafka-4.1.1"
    (target / "libs").mkdir(parents=True)  # left behind without the completion marker
    calls: list[list[str]] = []
    monkeypatch.setattr(resolver, "_run", lambda goals, cwd: calls.append(goals))
    resolver.copy_dependencies([Coordinates("g", "a", "1")], target)
    assert len(calls) == 1 and MavenResolver.is_complete(target)
    assert (target / "pom.xml").is_file()


def _fake_broker(response: bytes) -> tuple[socket.socket, threading.Thread]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            (size,) = struct.unpack(">i", conn.recv(4))
            request = conn.recv(size)
            assert struct.unpack(">hhi", request[:8]) == (18, 0, 1)  # ApiVersions v0, correlation 1
            conn.sendall(struct.pack(">i", len(response)) + response)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.parametrize(("error_code", "expected"), [(0, True), (35, False)])
def test_kafka_probe_reads_api_versions_error_code(error_code: int, expected: bool) -> None:
    server, thread = _fake_broker(struct.pack(">ih", 1, error_code) + b"\0\0\0\0")
    with server:
        assert api_versions_ok("127.0.0.1", server.getsockname()[1]) is expected
        thread.join(5)


def test_kafka_probe_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert api_versions_ok("127.0.0.1", port, timeout_s=0.5) is False


def test_traverse_check_names_the_blocking_directory(tmp_path: Path) -> None:
    # The owner of the test's directories, judged by the owner bits (the real check also ignores root's bypass).
    owner = RunAs("owner", uid=os.getuid(), gid=os.getgid())
    stranger = RunAs("stranger", uid=65000, gid=65000)
    blocked = tmp_path / "blocked"
    inner = blocked / "inner"
    inner.mkdir(parents=True)
    blocked.chmod(0o650)
    try:
        assert not can_traverse(blocked, owner)
        with pytest.raises(StackError, match=f"cannot traverse {blocked},.*chmod o\\+x {blocked}"):
            check_traversable(inner, owner)
        blocked.chmod(0o750)
        check_traversable(inner, owner)
        assert not can_traverse(blocked, stranger)
        blocked.chmod(0o751)
        assert can_traverse(blocked, stranger)
    finally:
        blocked.chmod(0o755)


def test_java_home_configured_must_be_a_jdk(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="not a JDK"):
        find_java_home(tmp_path)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "java").touch()
    assert find_java_home(tmp_path) == tmp_path


class _HealthHandler(http.server.BaseHTTPRequestHandler):
    status = "yellow"
    seen_auth: list[str | None] = []

    def do_GET(self) -> None:
        type(self).seen_auth.append(self.headers.get("Authorization"))
        assert self.path.startswith("/_cluster/health?wait_for_status=yellow")
        body = json.dumps({"status": type(self).status}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [("green", True), ("yellow", True), ("red", False)])
def test_elasticsearch_probe_reads_health(status: str, healthy: bool) -> None:
    _HealthHandler.status, _HealthHandler.seen_auth = status, []
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HealthHandler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            port = server.server_address[1]
            assert (cluster_health(port) is not None) is healthy
            cluster_health(port, ProbeAccess("elastic", "secret"))
        finally:
            server.shutdown()
    assert _HealthHandler.seen_auth == [None, "Basic ZWxhc3RpYzpzZWNyZXQ="]


def test_elasticsearch_probe_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert cluster_health(port, timeout_s=0.5) is None
