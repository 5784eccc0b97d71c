"""The Elasticsearch side of the incident store (elasticsearch-py 8 client)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from elasticsearch import ConflictError, Elasticsearch, NotFoundError

from correlation.incidents.model import LEVEL_SCORE
from correlation.incidents.store import IncidentFilter, Version, VersionConflict

MAPPINGS: dict[str, Any] = {
    "dynamic": True,
    "dynamic_templates": [{"strings": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}],
    "properties": {
        "applied_offsets": {"type": "object", "enabled": False},  # bookkeeping, kept in _source only
        "@timestamp": {"type": "date"},
        "first_seen": {"type": "date"},
        "last_seen": {"type": "date"},
        "created": {"type": "date"},
        "updated": {"type": "date"},
        "first_seen_ms": {"type": "long"},
        "last_seen_ms": {"type": "long"},
        "severity_score": {"type": "integer"},
        "risk_score": {"type": "float"},
        "alert_count": {"type": "long"},
        "evidence_event_count": {"type": "long"},
        "title": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
        "notes": {"properties": {"text": {"type": "text"}}},
    },
}


def build_query(flt: IncidentFilter) -> dict[str, Any]:
    clauses: list[dict[str, Any]] = []
    if flt.statuses:
        clauses.append({"terms": {"status": list(flt.statuses)}})
    if flt.min_severity:
        clauses.append({"range": {"severity_score": {"gte": LEVEL_SCORE.get(flt.min_severity, 0)}}})
    if flt.since_ms is not None:
        clauses.append({"range": {"last_seen_ms": {"gte": flt.since_ms}}})
    if flt.key:
        clauses.append({"term": {"key": flt.key}})
    if flt.rule:
        clauses.append({"bool": {"should": [{"term": {"rules.id": flt.rule}}, {"term": {"rules.name": flt.rule}}],
                                 "minimum_should_match": 1}})
    if flt.entity:
        fields = [f"entities.{kind}" for kind in ("users", "roles", "accounts", "ips", "namespaces", "pods")]
        clauses.append({"multi_match": {"query": flt.entity, "fields": fields, "type": "best_fields"}})
    return {"bool": {"filter": clauses}} if clauses else {"match_all": {}}


class ElasticsearchBackend:
    def __init__(
        self,
        client: Elasticsearch,
        index: str,
        refresh: bool = True,
        claims_index: Callable[[str], str] | None = None,
    ) -> None:
        self.client = client
        self.index = index
        # Daily index (by the alert's day) of which incident took each alert (``claimed``/``claim``); None: no
        # claims (a responder's command line).
        self.claims_index = claims_index
        # ``refresh``: make each write searchable at once (an explicit refresh; "wait_for" would park every write
        # for up to the refresh interval). Right for a responder's command-line change: the next list shows it.
        # The pipeline passes False: a forced refresh writes a new Lucene segment per incident write, which cost
        # Elasticsearch ~4 CPU-s per bench_e2e run; the store calls ``sync`` once instead, before its first search
        # after taking over keys (see IncidentStore.take_over).
        self.refresh = refresh

    def sync(self) -> None:
        """Make every acknowledged write searchable (an explicit refresh of the incidents and claims indices)."""
        indices = self.index + (f",{self.claims_index('*')}" if self.claims_index else "")
        self.client.indices.refresh(index=indices, ignore_unavailable=True, allow_no_indices=True)

    def ensure_index(self) -> None:
        if not self.client.indices.exists(index=self.index):
            try:
                self.client.indices.create(index=self.index, mappings=MAPPINGS)
            except Exception as exc:  # created concurrently by another process
                if "resource_already_exists_exception" not in str(exc):
                    raise

    def claimed(self, alert_id: str, day: str) -> str | None:
        """The incident that took ``alert_id``, as of the last ``sync`` (not real-time: a real-time GET of a
        document written since the last refresh makes Elasticsearch refresh the shard; the store remembers its
        own recent claims instead)."""
        if not self.claims_index:
            return None
        try:
            resp = self.client.get(index=self.claims_index(day), id=alert_id, realtime=False)
        except NotFoundError:
            return None
        return str(resp["_source"]["incident_id"])

    def claim(self, alert_id: str, day: str, incident_id: str, now_ms: int) -> None:
        if self.claims_index:
            self.client.index(
                index=self.claims_index(day), id=alert_id, document={"incident_id": incident_id, "claimed_ms": now_ms}
            )

    def get(self, incident_id: str) -> tuple[dict[str, Any], int, int] | None:
        try:
            resp = self.client.get(index=self.index, id=incident_id)
        except NotFoundError:
            return None
        return dict(resp["_source"]), int(resp["_seq_no"]), int(resp["_primary_term"])

    def create(self, incident_id: str, doc: dict[str, Any]) -> Version:
        try:
            resp = self.client.index(index=self.index, id=incident_id, document=doc, op_type="create",
                                     refresh=self.refresh)
        except ConflictError as exc:
            raise VersionConflict(incident_id) from exc
        return int(resp["_seq_no"]), int(resp["_primary_term"])

    def replace(self, incident_id: str, doc: dict[str, Any], seq_no: int, primary_term: int) -> Version:
        try:
            resp = self.client.index(index=self.index, id=incident_id, document=doc, if_seq_no=seq_no,
                                     if_primary_term=primary_term, refresh=self.refresh)
        except ConflictError as exc:
            raise VersionConflict(incident_id) from exc
        return int(resp["_seq_no"]), int(resp["_primary_term"])

    def find(self, flt: IncidentFilter) -> list[dict[str, Any]]:
        try:
            resp = self.client.search(index=self.index, query=build_query(flt), size=flt.size,
                                      sort=[{"last_seen_ms": {"order": "desc"}}])
        except NotFoundError:
            return []
        return [dict(hit["_source"]) for hit in resp["hits"]["hits"]]

    def fetch(self, index_pattern: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        if not ids:
            return []
        resp = self.client.search(index=index_pattern, query={"ids": {"values": list(ids)}}, size=len(ids),
                                  ignore_unavailable=True, allow_no_indices=True)
        return [{"_id": hit["_id"], "_index": hit["_index"], **hit["_source"]} for hit in resp["hits"]["hits"]]
