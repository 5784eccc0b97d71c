"""`siem setup kibana` against a local HTTP server that records the request and answers like Kibana."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from kibana.build import generate
from kibana.cli import kibana_app
from kibana.setup import IMPORT_PATH, KibanaError, import_saved_objects
from siem.config import KibanaSettings


class FakeKibana:
    """Answers each POST with the next queued ``(status, body)``; records what it received."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[tuple[int, dict[str, Any]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                length = int(self.headers.get("Content-Length", "0"))
                fake.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                                      "body": self.rfile.read(length)})
                status, body = fake.answers.pop(0) if fake.answers else (200, {"success": True, "successCount": 0})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeKibana:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture()
def kibana() -> Iterator[FakeKibana]:
    with FakeKibana() as fake:
        yield fake


@pytest.fixture(autouse=True)
def _no_config(monkeypatch):
    monkeypatch.delenv("SIEM_CONFIG", raising=False)
    monkeypatch.delenv("SIEM_KIBANA__URL", raising=False)


def _file_part(request: dict[str, Any]) -> tuple[str | None, bytes]:
    content_type = request["headers"]["content-type"]
    message = message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + request["body"],
                                 policy=HTTP)
    parts = list(message.iter_parts())
    assert len(parts) == 1
    part = parts[0]
    assert part.get_param("name", header="content-disposition") == "file"
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return part.get_filename(), payload


def _success(count: int) -> dict[str, Any]:
    return {"success": True, "successCount": count,
            "successResults": [{"type": "index-pattern", "id": "siem-dv-events"}]}


def test_import_sends_multipart_ndjson_with_xsrf_header(kibana):
    ndjson = generate()
    kibana.answers.append((200, _success(13)))
    result = import_saved_objects(KibanaSettings(url=kibana.url, timeout=5), ndjson)
    assert result.success_count == 13
    assert result.imported == ["index-pattern/siem-dv-events"]
    (request,) = kibana.requests
    assert request["path"] == IMPORT_PATH == "/api/saved_objects/_import?overwrite=true"
    assert request["headers"]["kbn-xsrf"] == "true"
    assert request["headers"]["content-type"].startswith("multipart/form-data; boundary=")
    assert "authorization" not in request["headers"]
    filename, content = _file_part(request)
    assert filename is not None and filename.endswith(".ndjson")
    assert content.decode() == ndjson


def test_import_authenticates_with_api_key_or_basic(kibana):
    import_saved_objects(KibanaSettings(url=kibana.url, api_key=SecretStr("abc=="), username="x"), "{}\n")
    import_saved_objects(KibanaSettings(url=kibana.url, username="elastic", password=SecretStr("pw")), "{}\n")
    assert kibana.requests[0]["headers"]["authorization"] == "ApiKey abc=="
    assert kibana.requests[1]["headers"]["authorization"] == "Basic " + base64.b64encode(b"elastic:pw").decode()


def test_rejected_objects_raise_with_kibana_messages(kibana):
    kibana.answers.append((200, {
        "success": False, "successCount": 11,
        "errors": [
            {"id": "siem-dash-overview", "type": "dashboard", "title": "SIEM overview",
             "error": {"type": "missing_references", "references": [{"type": "index-pattern", "id": "gone"}]}},
            {"id": "siem-search-dlq", "type": "search", "error": {"type": "unknown", "message": "bad attribute"}},
        ],
    }))
    with pytest.raises(KibanaError) as caught:
        import_saved_objects(KibanaSettings(url=kibana.url), generate())
    text = str(caught.value)
    assert "rejected 2" in text
    assert "dashboard/siem-dash-overview: missing_references: missing index-pattern/gone" in text
    assert "search/siem-search-dlq: unknown: bad attribute" in text
    assert len(caught.value.errors) == 2


def test_http_error_is_reported(kibana):
    kibana.answers.append((401, {"statusCode": 401, "error": "Unauthorized", "message": "missing credentials"}))
    with pytest.raises(KibanaError, match="HTTP 401: missing credentials"):
        import_saved_objects(KibanaSettings(url=kibana.url), "{}\n")


def test_retries_while_kibana_is_not_ready(kibana):
    kibana.answers += [(503, {"message": "Kibana server is not ready yet"})] * 2 + [(200, _success(1))]
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    result = import_saved_objects(KibanaSettings(url=kibana.url), "{}\n", wait_seconds=60, sleep=sleep,
                                  clock=lambda: now[0])
    assert result.success_count == 1
    assert len(kibana.requests) == 3 and len(sleeps) == 2


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_kibana_is_a_clear_error_after_the_wait():
    url = f"http://127.0.0.1:{_closed_port()}"
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(KibanaError, match=r"unreachable at http://127\.0\.0\.1:\d+: .* after 5s"):
        import_saved_objects(KibanaSettings(url=url, timeout=2), "{}\n", wait_seconds=5, sleep=sleep,
                             clock=lambda: now[0])
    assert now[0] >= 5


def test_cli_setup_imports_generated_objects(kibana):
    kibana.answers.append((200, _success(13)))
    result = CliRunner().invoke(kibana_app, ["setup", "--url", kibana.url])
    assert result.exit_code == 0, result.output
    assert f"imported 13 saved objects into {kibana.url}" in result.output
    assert _file_part(kibana.requests[0])[1].decode() == generate()


def test_cli_setup_fails_with_the_errors(kibana):
    kibana.answers.append((200, {"success": False, "successCount": 0, "errors": [
        {"id": "siem-dv-dlq", "type": "index-pattern", "error": {"type": "conflict"}}]}))
    result = CliRunner().invoke(kibana_app, ["setup", "--url", kibana.url])
    assert result.exit_code == 1
    assert "index-pattern/siem-dv-dlq: conflict" in result.output


def test_cli_setup_reports_unreachable_kibana():
    result = CliRunner().invoke(kibana_app, ["setup", "--url", f"http://127.0.0.1:{_closed_port()}"])
    assert result.exit_code == 1
    assert "Kibana is unreachable" in result.output and "--wait-seconds" in result.output


def test_kibana_settings_defaults_and_env(monkeypatch):
    from siem.config import load_settings

    monkeypatch.setenv("SIEM_KIBANA__URL", "https://kibana.example:5601")
    monkeypatch.setenv("SIEM_KIBANA__API_KEY", "secret")
    settings = load_settings()
    assert settings.kibana.url == "https://kibana.example:5601"
    assert settings.kibana.api_key is not None and settings.kibana.api_key.get_secret_value() == "secret"
    assert KibanaSettings().url == "http://127.0.0.1:5601" and KibanaSettings().verify_certs
