"""The Elasticsearch bulk transport's mapping of whole-request HTTP answers, through the real client over HTTP.

A local HTTP server on 127.0.0.1 plays the part of a cluster (or a proxy in front of it) that refuses a request
for its size, as Elasticsearch does above ``http.max_content_length`` (HTTP 413, empty body)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from elasticsearch import Elasticsearch

from indexing.bulk import RequestTooLarge, TransportUnavailable
from indexing.client import ElasticsearchBulkTransport


class _Refusing(BaseHTTPRequestHandler):
    status = 413

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.end_headers()

    do_PUT = do_POST  # noqa: N815 - the client sends bulk requests as PUT

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep test output quiet
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Refusing)
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
