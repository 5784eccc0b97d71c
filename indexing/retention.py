"""Retention of the daily indices: delete events and alerts indices older than ``retention_days``.

ILM is not available on every cluster, so the pipeline deletes its own daily indices. An index is old when both
its day (the date suffix: the day of its events) and its creation are more than ``retention_days`` ago. For live
data the two agree; logs replayed from an archive (``siem replay`` of last year's CloudTrail for an investigation)
land in indices of old days but stay ``retention_days`` after the replay, as ILM's age would keep them, instead
of disappearing at the next run.

Only names this pipeline creates are touched: ``{prefix}-events-{dataset}-yyyy.mm.dd``,
``{prefix}-alerts-yyyy.mm.dd`` and ``{prefix}-incident-claims-yyyy.mm.dd`` (which incident took which alert, kept
as long as the alerts). The DLQ and incidents indices are not daily and are never deleted here (a DLQ entry waits
for a fix, an incident for its responder).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

from elasticsearch import Elasticsearch

from siem.config import ElasticsearchSettings

log = logging.getLogger(__name__)


def _daily_name(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}-(?:events-.+|alerts|incident-claims)-(\d{{4}})\.(\d{{2}})\.(\d{{2}})$")


def expired_indices(
    created_ms: Mapping[str, int], prefix: str, retention_days: int, now: datetime
) -> list[str]:
    """The daily indices among ``created_ms`` (name -> creation time, epoch ms) that are past retention."""
    pattern = _daily_name(prefix)
    oldest_kept_day = now.date() - timedelta(days=retention_days)
    created_before_ms = (now - timedelta(days=retention_days)).timestamp() * 1000
    expired: list[str] = []
    for name, created in created_ms.items():
        found = pattern.match(name)
        if found is None:
            continue
        try:
            day = date(int(found.group(1)), int(found.group(2)), int(found.group(3)))
        except ValueError:  # 2026.13.45: not one of ours after all
            continue
        if day < oldest_kept_day and created < created_before_ms:
            expired.append(name)
    return sorted(expired)


def delete_expired(client: Elasticsearch, settings: ElasticsearchSettings, now: datetime | None = None) -> list[str]:
    """Delete the expired daily indices; returns their names. Safe to run from several processes at once."""
    prefix = settings.index_prefix
    found = client.indices.get_settings(
        index=f"{prefix}-events-*,{prefix}-alerts-*,{prefix}-incident-claims-*",
        name="index.creation_date",
        expand_wildcards="open,closed",
        allow_no_indices=True,
    )
    created_ms = {name: int(body["settings"]["index"]["creation_date"]) for name, body in found.body.items()}
    expired = expired_indices(created_ms, prefix, settings.retention_days, now or datetime.now(UTC))
    for name in expired:
        client.indices.delete(index=name, ignore_unavailable=True)
        log.info("retention: deleted %s (older than %d days)", name, settings.retention_days)
    return expired

