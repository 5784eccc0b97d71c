"""The Elasticsearch side of the incident store (elasticsearch-py 8 client)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from elasticsearch import ConflictError, Elasticsearch, NotFoundError

from correlation.incidents.model import LEVEL_SCORE
from correlation.incidents.store import (
    BackendUnavailable,
    Claim,
    IncidentFilter,
    IncidentWrite,
    Version,
    VersionConflict,
)
from indexing.bulk import ItemStatus, is_retryable
from indexing.templates import INCIDENT_PROPERTIES
from siem.errors import IndexingError

# The incidents index template's properties (one declaration), for an index this store creates itself (a
# command run before ``siem setup``). Fields outside them (the incident model grows) come in as keywords.
MAPPINGS: dict[str, Any] = {
    "dynamic": True,
    "dynamic_templates": [{"strings": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}],
    "properties": INCIDENT_PROPERTIES,
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

    def claimed_many(self, alerts: Sequence[tuple[str, str]]) -> dict[str, Claim]:
        """Which of ``alerts`` (alert id, day) an incident took, as of the last ``sync``, in one multi-get. Not
        real-time: a real-time GET of a document written since the last refresh makes Elasticsearch refresh the
        shard; the store remembers its own recent claims instead."""
        if not self.claims_index or not alerts:
            return {}
        days = dict(alerts)
        docs = [{"_index": self.claims_index(day), "_id": alert_id} for alert_id, day in alerts]
        resp = self.client.mget(docs=docs, realtime=False, filter_path="docs._id,docs.found,docs._source,docs.error")
        claimed: dict[str, Claim] = {}
        for doc in resp.body.get("docs", []):
            # a day whose claims index does not exist yet answers with an index_not_found error: not claimed
            if doc.get("found"):
                alert_id, source = str(doc["_id"]), doc["_source"]
                offset = source.get("offset")
                claimed[alert_id] = Claim(alert_id, days[alert_id], str(source["incident_id"]), source.get("source"),
                                          int(offset) if offset is not None else None)
        return claimed

    def claim_many(self, claims: Sequence[Claim], now_ms: int) -> None:
        if not self.claims_index or not claims:
            return
        operations: list[dict[str, Any]] = []
        for claim in claims:
            operations.append({"index": {"_index": self.claims_index(claim.day), "_id": claim.alert_id}})
            document: dict[str, Any] = {"incident_id": claim.incident_id, "claimed_ms": now_ms}
            if claim.source is not None:
                document.update(source=claim.source, offset=claim.offset)
            operations.append(document)
        self._bulk(operations)

    def write_many(self, writes: Sequence[IncidentWrite]) -> list[Version | None]:
        """Creates and optimistic-concurrency replaces in one bulk request; None for a write whose version
        changed (or whose incident exists, for a create)."""
        operations: list[dict[str, Any]] = []
        for write in writes:
            if write.version is None:
                operations.append({"create": {"_index": self.index, "_id": write.incident_id}})
            else:
                seq_no, term = write.version
                operations.append(
                    {"index": {"_index": self.index, "_id": write.incident_id, "if_seq_no": seq_no,
                               "if_primary_term": term}}
                )
            operations.append(write.doc)
        results: list[Version | None] = []
        for outcome in self._bulk(operations):
            if outcome["status"] == 409:
                results.append(None)
            else:
                results.append((int(outcome["_seq_no"]), int(outcome["_primary_term"])))
        return results

    def _bulk(self, operations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per operation its outcome (status, version); raises when an item failed other than by a conflict:
        :class:`BackendUnavailable` for what Elasticsearch may take later (429/5xx), :class:`IndexingError`
        otherwise."""
        resp = self.client.bulk(
            operations=operations,
            refresh=self.refresh,
            filter_path="items.*.status,items.*._seq_no,items.*._primary_term,items.*.error.type,items.*.error.reason",
        )
        outcomes = [next(iter(item.values())) for item in resp.body.get("items", [])]
        if len(outcomes) * 2 != len(operations):
            raise IndexingError(f"bulk answered {len(outcomes)} items for {len(operations) // 2} operations")
        for outcome in outcomes:
            status = int(outcome["status"])
            if status < 300 or status == 409:
                continue
            error = outcome.get("error", {})
            item = ItemStatus(status, error.get("type"), error.get("reason"))
            message = f"incident store write refused with HTTP {status}: {item.error_type}: {item.reason}"
            if is_retryable(item):  # the bulk sink's classification, so both stages retry the same answers
                raise BackendUnavailable(message)
            raise IndexingError(message)
        return outcomes

    def get(self, incident_id: str) -> tuple[dict[str, Any], int, int] | None:
        try:
            resp = self.client.get(index=self.index, id=incident_id)
        except NotFoundError:
            return None
        return dict(resp["_source"]), int(resp["_seq_no"]), int(resp["_primary_term"])

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
