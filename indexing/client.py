"""Elasticsearch client construction and the bulk transport used by :class:`indexing.bulk.BulkSink`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import elastic_transport
from elasticsearch import ApiError, Elasticsearch
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from indexing.bulk import ItemStatus, RequestTooLarge, TransportUnavailable
from siem.config import ElasticsearchSettings
from siem.errors import IndexingError


def make_client(settings: ElasticsearchSettings, **overrides: Any) -> Elasticsearch:
    options = settings.client_options()
    # orjson decodes a 2,000-item bulk response several times faster than the stdlib json the client defaults
    # to (the response is parsed on every request; measured in the end-to-end profile).
    # Bulk bodies arrive joined (``ElasticsearchBulkTransport.send``): sent as they are, not copied twice more.
    options.setdefault("serializers", {"application/json": OrjsonSerializer(), "application/x-ndjson": _JoinedNdjson()})
    options.update(overrides)
    return Elasticsearch(**options)


class _JoinedNdjson(NdjsonSerializer):
    """NDJSON whose bytes are already joined, one line per document part, each ending in a newline.

    The stock serializer copies a bytes body into a buffer and then into new bytes (two copies of a request of up to
    ``bulk_max_bytes``); anything that is not bytes still goes through it."""

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes) and data.endswith(b"\n"):
            return data
        return super().dumps(data)


# The answers of items that succeeded, made once (``_succeeded``): most items of every request are one of these.
_SUCCEEDED = {status: ItemStatus(status) for status in (200, 201)}


def _succeeded(status: int) -> ItemStatus:
    return _SUCCEEDED.get(status) or ItemStatus(status)


# What the sink reads of a bulk response: whether any item failed, and each item's status and error. Nothing else
# (ids, versions, shard counts) is sent back or decoded.
_FILTER_PATH = "errors,items.*.status,items.*.error"


class ElasticsearchBulkTransport:
    """Sends pre-serialized NDJSON through elasticsearch-py; maps failures to retryable/permanent."""

    def __init__(self, client: Elasticsearch) -> None:
        # Retries are ours (capped backoff without blocking the consumer), not the client's.
        self._client = client.options(max_retries=0, retry_on_timeout=False)

    def send(self, lines: Sequence[bytes]) -> list[ItemStatus]:
        try:
            # Joined in C, each line ending in a newline: elasticsearch-py's NDJSON serializer otherwise appends the
            # lines one by one in Python (~5 µs per document in the end-to-end profile, on the I/O thread).
            body = b"\n".join([*lines, b""])
            response = self._client.bulk(operations=cast(Any, body), filter_path=_FILTER_PATH)
        except ApiError as exc:
            if exc.meta.status == 429 or exc.meta.status >= 500:
                raise TransportUnavailable(f"bulk request failed with HTTP {exc.meta.status}") from exc
            if exc.meta.status == 413:
                raise RequestTooLarge(f"bulk request refused with HTTP 413 ({len(lines) // 2} documents)") from exc
            raise IndexingError(f"bulk request refused with HTTP {exc.meta.status}: {exc.message}") from exc
        except elastic_transport.TransportError as exc:
            raise TransportUnavailable(f"Elasticsearch unreachable: {type(exc).__name__}: {exc}") from exc
        items: list[dict[str, Any]] = response.body.get("items", [])
        if response.body.get("errors") is False:
            # Every item succeeded (Elasticsearch says so itself): only its status to read, no error to look for.
            return [_succeeded(next(iter(item.values()))["status"]) for item in items]
        statuses: list[ItemStatus] = []
        for item in items:
            outcome = next(iter(item.values()))
            error = outcome.get("error")
            if error:
                statuses.append(ItemStatus(outcome["status"], error.get("type"), _reason(error)))
            else:
                statuses.append(_succeeded(outcome["status"]))
        return statuses


def _reason(error: dict[str, Any]) -> str:
    """The item's reason plus its root cause: "failed to parse field [x]" alone does not say what to fix."""
    reason = str(error.get("reason", ""))[:1500]
    cause = error.get("caused_by")
    if isinstance(cause, dict):
        reason += f" (caused by {cause.get('type')}: {str(cause.get('reason', ''))[:500]})"
    return reason
