"""`/metrics` (Prometheus) and `/healthz` (JSON) on one small HTTP server in a daemon thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

HealthProbe = Callable[[], dict[str, Any]]


def _handler(probe: HealthProbe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - name fixed by http.server
            if self.path == "/metrics":
                self._reply(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif self.path.startswith("/healthz"):
                report = probe()
                self._reply(200 if report.get("healthy") else 503, orjson.dumps(report), "application/json")
            else:
                self._reply(404, b"not found\n", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not worth a log line
            return

    return Handler


class HealthServer:
    def __init__(self, host: str, port: int, probe: HealthProbe) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(probe))
        self._thread = threading.Thread(target=self._server.serve_forever, name="health-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class Reachability:
    ok: bool | None = None  # None: not checked yet
    error: str | None = None
    checked_at: float | None = None  # time.monotonic() of the last check

    def report(self, now: float) -> dict[str, Any]:
        age = None if self.checked_at is None else round(now - self.checked_at, 1)
        return {"reachable": self.ok, "error": self.error, "checked_s_ago": age}


class ConnectivityProbe:
    """Kafka and Elasticsearch reachability for /healthz, checked by a scheduled job (never by the request
    itself: a scrape must answer at once, and a stalled broker would stall it).

    Kafka: the end offset of one pipeline partition, asked with a bounded timeout by a consumer outside any group
    (a metadata refresh in kafka-python can block without one). Elasticsearch: ``GET _cluster/health`` (not the
    client's ping, ``HEAD /``, which a minimal distribution answers with 405). Either also fails on authentication
    or TLS problems, which a plain port check would not see. Each probe raises when its service is not reachable.
    """

    def __init__(
        self,
        kafka_probe: Callable[[], None],
        es_probe: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kafka_probe = kafka_probe
        self._es_probe = es_probe
        self._clock = clock
        self.kafka = Reachability()
        self.elasticsearch = Reachability()

    def check(self) -> None:
        self.kafka = self._run(self._kafka_probe)
        self.elasticsearch = self._run(self._es_probe)

    def _run(self, probe: Callable[[], None]) -> Reachability:
        try:
            probe()
        except Exception as exc:  # noqa: BLE001 - whatever the reason, the service is not reachable
            return Reachability(False, f"{type(exc).__name__}: {exc}"[:300], self._clock())
        return Reachability(True, None, self._clock())
