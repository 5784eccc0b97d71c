"""Import the saved objects into Kibana through its saved-objects API (standard library HTTP only).

``POST /api/saved_objects/_import?overwrite=true`` with the NDJSON as a multipart file: the fixed ids make a
second import replace the same objects, so running setup again is harmless. While Kibana is starting (connection
refused, or 503 "Kibana server is not ready yet") the import is retried until ``wait_seconds`` have passed.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from siem.config import KibanaSettings
from siem.errors import PipelineError

IMPORT_PATH = "/api/saved_objects/_import?overwrite=true"
RETRY_STATUSES = frozenset({502, 503, 504})
RETRY_INTERVAL_S = 2.0


class KibanaError(PipelineError):
    """Kibana could not be reached, refused the request, or rejected some of the saved objects."""

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        self.errors = errors or []
        details = "".join(f"\n  - {error}" for error in self.errors)
        super().__init__(message + details)


@dataclass(frozen=True)
class ImportResult:
    success_count: int
    imported: list[str] = field(default_factory=list)  # "type/id" of every object Kibana accepted


def multipart_body(filename: str, content: bytes, boundary: str) -> bytes:
    """A ``multipart/form-data`` body with one ``file`` part, as Kibana's import endpoint expects."""
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/ndjson\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{boundary}--\r\n".encode()


def _headers(settings: KibanaSettings, boundary: str) -> dict[str, str]:
    headers = {"kbn-xsrf": "true", "Content-Type": f"multipart/form-data; boundary={boundary}"}
    if settings.api_key:
        headers["Authorization"] = f"ApiKey {settings.api_key.get_secret_value()}"
    elif settings.username:
        password = settings.password.get_secret_value() if settings.password else ""
        token = base64.b64encode(f"{settings.username}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers


def _ssl_context(settings: KibanaSettings) -> ssl.SSLContext | None:
    if not settings.url.startswith("https"):
        return None
    context = ssl.create_default_context(cafile=str(settings.ca_certs) if settings.ca_certs else None)
    if not settings.verify_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _describe(error: dict[str, Any]) -> str:
    what = f"{error.get('type', '?')}/{error.get('id', '?')}"
    detail = error.get("error") or {}
    kind = detail.get("type", "unknown")
    message = detail.get("message") or ""
    missing = detail.get("references") or []
    if missing:
        message = "missing " + ", ".join(f"{ref.get('type')}/{ref.get('id')}" for ref in missing)
    return f"{what}: {kind}{': ' + message if message else ''}"


def parse_import_response(payload: dict[str, Any]) -> ImportResult:
    """Kibana answers 200 even when objects fail: ``success: false`` plus one entry per failed object."""
    if not payload.get("success", False):
        errors = [_describe(error) for error in payload.get("errors", [])]
        raise KibanaError(
            f"Kibana imported {payload.get('successCount', 0)} objects and rejected {len(errors)}", errors
        )
    imported = [f"{item.get('type')}/{item.get('id')}" for item in payload.get("successResults", [])]
    return ImportResult(int(payload.get("successCount", 0)), imported)


def _post(settings: KibanaSettings, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    request = urllib.request.Request(settings.url.rstrip("/") + IMPORT_PATH, data=body, headers=headers,
                                     method="POST")
    with urllib.request.urlopen(request, timeout=settings.timeout, context=_ssl_context(settings)) as response:
        raw = response.read()
    try:
        payload = json.loads(raw or b"{}")
    except ValueError:
        raise KibanaError(f"Kibana answered the import with something that is not JSON: {raw[:200]!r}") from None
    if not isinstance(payload, dict):
        raise KibanaError(f"unexpected answer from Kibana import: {payload!r}")
    return payload


def _http_error(exc: urllib.error.HTTPError) -> KibanaError:
    try:
        payload = json.loads(exc.read() or b"{}")
        message = payload.get("message") or payload.get("error") or str(payload)
    except (ValueError, AttributeError):
        message = exc.reason
    return KibanaError(f"Kibana refused the import: HTTP {exc.code}: {message}")


def import_saved_objects(
    settings: KibanaSettings,
    ndjson: str,
    wait_seconds: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ImportResult:
    """Import (overwrite) the objects; retry while Kibana is unreachable or not ready, up to ``wait_seconds``."""
    boundary = f"siem-{uuid.uuid4().hex}"
    body = multipart_body("siem_saved_objects.ndjson", ndjson.encode(), boundary)
    headers = _headers(settings, boundary)
    deadline = clock() + wait_seconds
    while True:
        try:
            return parse_import_response(_post(settings, body, headers))
        except urllib.error.HTTPError as exc:
            if exc.code not in RETRY_STATUSES or clock() >= deadline:
                raise _http_error(exc) from None
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = str(getattr(exc, "reason", exc))
            if clock() >= deadline:
                hint = " (use --wait-seconds while it starts)" if wait_seconds <= 0 else f" after {wait_seconds:g}s"
                raise KibanaError(f"Kibana is unreachable at {settings.url}: {reason}{hint}") from None
        sleep(min(RETRY_INTERVAL_S, max(deadline - clock(), 0.0)))
