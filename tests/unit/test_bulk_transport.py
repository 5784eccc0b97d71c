"""The Elasticsearch bulk transport, through the real client over HTTP: the request body it sends, how it reads
per-item answers, and its mapping of whole-request HTTP answers.

A local HTTP server on 127.0.0.1 plays the part of a cluster (or a proxy in front of it): it answers bulk requests
with a given body, or refuses a request for its size, as Elasticsearch does above ``http.max_content_length``
(HTTP 413, empty body)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from elasticsearch import Elasticsearch

from indexing.bulk import ItemStatus, RequestTooLarge, TransportUnavailable
from indexing.client import ElasticsearchBulkTransport, make_client
from siem.config import ElasticsearchSettings


class _Refusing(BaseHTTPRequestHandler):
    """Answers ``server.status`` with ``server.answer`` (JSON, or an empty body); keeps what it was sent."""

    status = 413

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        server = self.server
        server.requests.append(  # type: ignore[attr-defined]
            (self.path, self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        )
        body = b"" if server.answer is None else orjson.dumps(server.answer)  # type: ignore[attr-defined]
        self.send_response(server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST  # noqa: N815 - the client sends bulk requests as PUT

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
    httpd.requests = []  # type: ignore[attr-defined]
    httpd.answer = None  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _transport(httpd: ThreadingHTTPServer) -> ElasticsearchBulkTransport:
    host, port = httpd.server_address[:2]
    return ElasticsearchBulkTransport(Elasticsearch(f"http://{host!s}:{port}", request_timeout=5))


LINES = [b'{"index":{"_index":"i","_id":"1"}}', b'{"a":1}', b'{"index":{"_index":"i","_id":"2"}}', b'{"a":2}']


def test_http_413_is_request_too_large(server: ThreadingHTTPServer) -> None:
    server.status = 413  # type: ignore[attr-defined]
    with pytest.raises(RequestTooLarge, match="HTTP 413 \\(2 documents\\)"):
        _transport(server).send(LINES)


def test_http_503_is_unavailable_not_too_large(server: ThreadingHTTPServer) -> None:
    server.status = 503  # type: ignore[attr-defined]
    with pytest.raises(TransportUnavailable, match="HTTP 503"):
        _transport(server).send(LINES)


def _answer(server: ThreadingHTTPServer, answer: dict[str, object]) -> None:
    server.status = 200  # type: ignore[attr-defined]
    server.answer = answer  # type: ignore[attr-defined]


@pytest.mark.parametrize("client", ["make_client", "plain client"])
def test_the_body_is_the_lines_each_ending_in_a_newline(server: ThreadingHTTPServer, client: str) -> None:
    """With the project's client (its pass-through NDJSON serializer) and with a stock one alike."""
    _answer(server, {"errors": False, "items": [{"index": {"status": 201}}, {"index": {"status": 200}}]})
    host, port = server.server_address[:2]
    url = f"http://{host!s}:{port}"
    es = make_client(ElasticsearchSettings(hosts=[url])) if client == "make_client" else Elasticsearch(url)
    statuses = ElasticsearchBulkTransport(es).send(LINES)
    assert [s.status for s in statuses] == [201, 200]
    (path, body), = server.requests  # type: ignore[attr-defined]
    assert body == b"\n".join(LINES) + b"\n"
    assert "filter_path=errors" in path  # the sink reads only these: no ids, versions or shard counts come back


def test_a_request_without_errors_accepts_every_item(server: ThreadingHTTPServer) -> None:
    _answer(server, {"errors": False, "items": [{"create": {"status": 201}}, {"index": {"status": 200}}]})
    statuses = _transport(server).send(LINES)
    assert statuses == [ItemStatus(201), ItemStatus(200)]


def test_a_request_with_errors_reads_each_item(server: ThreadingHTTPServer) -> None:
    rejected = {"type": "mapper_parsing_exception", "reason": "failed to parse field [x]",
                "caused_by": {"type": "illegal_argument_exception", "reason": "not a number"}}
    _answer(server, {"errors": True, "items": [
        {"index": {"status": 201}},
        {"index": {"status": 400, "error": rejected}},
    ]})
    ok, refused = _transport(server).send(LINES)
    assert ok == ItemStatus(201)
    assert (refused.status, refused.error_type) == (400, "mapper_parsing_exception")
    assert refused.reason == (
        "failed to parse field [x] (caused by illegal_argument_exception: not a number)"
    )


def test_a_response_without_the_errors_flag_reads_each_item(server: ThreadingHTTPServer) -> None:
    """Only an explicit ``errors: false`` takes the shortcut (a proxy or filter could leave the flag out)."""
    _answer(server, {"items": [{"index": {"status": 201}}, {"index": {"status": 429, "error": {"type": "x"}}}]})
    statuses = _transport(server).send(LINES)
    assert [s.status for s in statuses] == [201, 429]
