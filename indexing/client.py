"""Elasticsearch client construction and the bulk transport used by :class:`indexing.bulk.BulkSink`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import elastic_transport
from elasticsearch import ApiError, Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

from indexing.bulk import ItemStatus, RequestTooLarge, TransportUnavailable
from siem.config import ElasticsearchSettings
from siem.errors import IndexingError


def make_client(settings: ElasticsearchSettings, **overrides: Any) -> Elasticsearch:
    options = settings.client_options()
    # orjson decodes a 2,000-item bulk response several times faster than the stdlib json the client defaults
    # to (the response is parsed on every request; measured in the end-to-end profile).
    options.setdefault("serializer", OrjsonSerializer())
    options.update(overrides)
    return Elasticsearch(**options)


class ElasticsearchBulkTransport:
    """Sends pre-serialized NDJSON through elasticsearch-py; maps failures to retryable/permanent."""

    def __init__(self, client: Elasticsearch) -> None:
        # Retries are ours (capped backoff without blocking the consumer), not the client's.
        self._client = client.options(max_retries=0, retry_on_timeout=False)

    def send(self, lines: Sequence[bytes]) -> list[ItemStatus]:
        try:
            response = self._client.bulk(operations=cast(Any, list(lines)), filter_path="items.*.status,items.*.error")
        except ApiError as exc:
            if exc.meta.status == 429 or exc.meta.status >= 500:
                raise TransportUnavailable(f"bulk request failed with HTTP {exc.meta.status}") from exc
            if exc.meta.status == 413:
                raise RequestTooLarge(f"bulk request refused with HTTP 413 ({len(lines) // 2} documents)") from exc
            raise IndexingError(f"bulk request refused with HTTP {exc.meta.status}: {exc.message}") from exc
        except elastic_transport.TransportError as exc:
            raise TransportUnavailable(f"Elasticsearch unreachable: {type(exc).__name__}: {exc}") from exc
        items: list[dict[str, Any]] = response.body.get("items", [])
        statuses: list[ItemStatus] = []
        for item in items:
            outcome = next(iter(item.values()))
            error = outcome.get("error")
            if error:
                statuses.append(ItemStatus(outcome["status"], error.get("type"), _reason(error)))
            else:
                statuses.append(ItemStatus(outcome["status"]))
        return statuses


def _reason(error: dict[str, Any]) -> str:
    """The item's reason plus its root cause: "failed to parse field [x]" alone does not say what to fix."""
    reason = str(error.get("reason", ""))[:1500]
    cause = error.get("caused_by")
    if isinstance(cause, dict):
        reason += f" (caused by {cause.get('type')}: {str(cause.get('reason', ''))[:500]})"
    return reason
