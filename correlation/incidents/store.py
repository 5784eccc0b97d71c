"""Incidents in Elasticsearch: get + index with ``if_seq_no``/``if_primary_term`` (the local node has no
painless), retried on version conflict, so the pipeline attaching alerts and a responder changing status
never overwrite each other.

The pipeline's store remembers the version it last wrote of each recent incident and writes the next change on
top of it without reading first: a real-time GET of a document written since the last refresh makes
Elasticsearch refresh the shard internally (a new Lucene segment per alert). If anyone else wrote meanwhile the
write fails with a version conflict, and the store reads the current version and retries as before.

The store talks to a small :class:`IncidentBackend`; :class:`ElasticsearchBackend` is the real one and
:class:`MemoryBackend` (same semantics, including conflicts) serves unit tests.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from correlation.incidents.builder import Signal, already_attached, attach, is_attachable, open_incident
from correlation.incidents.model import ACTIVE, LEVEL_SCORE, Incident, Status
from correlation.windows.documents import day
from siem.config import IncidentSettings
from siem.errors import IndexingError


class VersionConflict(Exception):
    """The document changed since it was read (or already exists on create)."""


@dataclass(frozen=True)
class IncidentFilter:
    statuses: Sequence[str] = ()
    min_severity: str | None = None
    since_ms: int | None = None  # last_seen >= since
    rule: str | None = None  # rule id or name
    entity: str | None = None  # any entity value
    key: str | None = None
    size: int = 50


@dataclass(frozen=True)
class Versioned:
    incident: Incident
    seq_no: int
    primary_term: int


Version = tuple[int, int]  # (seq_no, primary_term) of a write


class IncidentBackend(Protocol):
    def get(self, incident_id: str) -> tuple[dict[str, Any], int, int] | None: ...
    def create(self, incident_id: str, doc: dict[str, Any]) -> Version: ...  # VersionConflict if it exists
    def replace(self, incident_id: str, doc: dict[str, Any], seq_no: int, primary_term: int) -> Version: ...
    def find(self, flt: IncidentFilter) -> list[dict[str, Any]]: ...  # near-real-time, like a search
    def sync(self) -> None: ...  # make every acknowledged write visible to ``find`` and ``claimed``
    # the incident that took the alert (``day``: the alert's, yyyy.mm.dd), as of the last sync
    def claimed(self, alert_id: str, day: str) -> str | None: ...
    def claim(self, alert_id: str, day: str, incident_id: str, now_ms: int) -> None: ...
    def fetch(self, index_pattern: str, ids: Sequence[str]) -> list[dict[str, Any]]: ...


Mutation = Callable[[Incident], bool]  # returns False when nothing changed (no write)


@dataclass
class StoreStats:
    created: int = 0
    attached: int = 0
    duplicates: int = 0
    conflicts: int = 0
    reads: int = 0  # GETs of an incident (the written-version cache saves one per attached alert)


K = TypeVar("K")
V = TypeVar("V")


class RecentCache(Generic[K, V]):
    """A dict that keeps the ``capacity`` most recently used entries: a long-running pipeline sees an unbounded
    number of keys, and what it caches about them is only a shortcut (a miss costs one request)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class IncidentStore:
    backend: IncidentBackend
    settings: IncidentSettings
    clock_ms: Callable[[], int]
    stats: StoreStats = field(default_factory=StoreStats)
    # key -> incident id; only this process opens incidents for the keys routed to it, the cache saves a
    # search (near-real-time) per alert and closes the race between two alerts of one key.
    _open_by_key: RecentCache[str, str] = field(init=False)
    # incident id -> the version this store last wrote or read (see the module docstring).
    _written: RecentCache[str, Versioned] = field(init=False)
    # Writes are not made searchable one by one (see ElasticsearchBackend), so before the first search after
    # taking over keys -- a new process, or a new partition assignment -- the incidents written by their previous
    # owner (acknowledged before it let go of the partitions) are made searchable once.
    _sync_before_search: bool = True

    def __post_init__(self) -> None:
        self._open_by_key = RecentCache(self.settings.cache_size)
        self._written = RecentCache(self.settings.cache_size)
        self._claims: RecentCache[str, str] = RecentCache(self.settings.cache_size)  # alert id -> incident id

    def get(self, incident_id: str) -> Versioned | None:
        self.stats.reads += 1
        found = self.backend.get(incident_id)
        if found is None:
            return None
        doc, seq_no, term = found
        return Versioned(Incident.from_doc(doc), seq_no, term)

    def update(self, incident_id: str, mutate: Mutation) -> Incident:
        """Read (or take the version this store last wrote), mutate, write with optimistic concurrency; on a
        conflict read again and retry."""
        remembered = self._written.get(incident_id)
        for _ in range(self.settings.update_retries):
            # A copy: the mutation changes the incident in place, and a failed write must not leave it changed.
            cached = remembered is not None
            current = (
                Versioned(remembered.incident.model_copy(deep=True), remembered.seq_no, remembered.primary_term)
                if remembered is not None
                else self.get(incident_id)
            )
            remembered = None
            if current is None:
                raise IndexingError("incident not found", doc_id=incident_id)
            if not mutate(current.incident):
                if cached:
                    continue  # decided on the remembered version: decide again on the current one
                self._written.put(incident_id, current)
                return current.incident
            try:
                seq_no, term = self.backend.replace(
                    incident_id, current.incident.to_doc(), current.seq_no, current.primary_term
                )
            except VersionConflict:
                self._written.pop(incident_id)
                self.stats.conflicts += 1
                continue
            self._written.put(incident_id, Versioned(current.incident, seq_no, term))
            return current.incident
        raise IndexingError(f"gave up after {self.settings.update_retries} version conflicts", doc_id=incident_id)

    def record(self, signal: Signal) -> Incident:
        """Attach ``signal`` to the open incident with its key, or open a new one; an alert an incident already
        took (its message delivered again) changes nothing.

        Detection alerts are claimed once taken (``claims``): a crash of the detect stage before its commit makes
        it produce the same alerts again, at new offsets, and they may meet an incident that does not list them
        (a later incident of the key, or one past ``max_alert_ids``). A crash between an incident write and its
        claim can still count that one alert twice."""
        claimed_by = self._claimed_by(signal)
        if claimed_by is not None:
            self.stats.duplicates += 1
            current = self.get(claimed_by)
            if current is not None:
                return current.incident
        incident = self._record(signal)
        if signal.kind == "detection":
            self.backend.claim(signal.alert_id, day(signal.timestamp_ms), incident.id, self.clock_ms())
            self._claims.put(signal.alert_id, incident.id)
        return incident

    def _claimed_by(self, signal: Signal) -> str | None:
        if signal.kind != "detection":
            return None
        known = self._claims.get(signal.alert_id)
        if known is not None:
            return known
        self._sync_once()
        return self.backend.claimed(signal.alert_id, day(signal.timestamp_ms))

    def _sync_once(self) -> None:
        if self._sync_before_search:
            self.backend.sync()  # raises like a search would when Elasticsearch is down: the caller retries
            self._sync_before_search = False

    def _record(self, signal: Signal) -> Incident:
        target = self._open_by_key.get(signal.key) or self._find_open(signal)
        inherited: dict[str, int] = {}  # message offsets the key's incidents took (filled when target refuses)
        if target is not None:
            attached = self._attach(target, signal, inherited)
            if attached is not None:
                return attached
        incident = open_incident(signal, self.settings, self.clock_ms())
        for source, offset in inherited.items():
            incident.applied_offsets[source] = max(offset, incident.applied_offsets.get(source, -1))
        try:
            seq_no, term = self.backend.create(incident.id, incident.to_doc())
            self.stats.created += 1
            self._written.put(incident.id, Versioned(incident.model_copy(deep=True), seq_no, term))
        except VersionConflict:  # replay: this signal already opened it
            attached = self._attach(incident.id, signal, {})
            if attached is not None:
                return attached
        self._open_by_key.put(signal.key, incident.id)
        return incident

    def _attach(self, incident_id: str, signal: Signal, inherited: dict[str, int]) -> Incident | None:
        """Attach to ``incident_id``; None when it refuses the signal (closed, or outside the attach window), with
        ``inherited`` set to its message offsets for the incident that will be opened instead."""
        outcome: dict[str, bool] = {}

        def mutate(incident: Incident) -> bool:
            outcome.clear()  # may run more than once (conflicts, a remembered version)
            if already_attached(incident, signal):  # a replay: whatever the window says now
                return False
            if not is_attachable(incident, signal, self.settings):
                outcome["refused"] = True
                inherited.clear()
                inherited.update(incident.applied_offsets)
                return False
            changed = attach(incident, signal, self.settings, self.clock_ms())
            outcome["changed"] = changed
            return changed

        try:
            incident = self.update(incident_id, mutate)
        except IndexingError:
            self._open_by_key.pop(signal.key)
            return None
        if outcome.get("refused"):
            self._open_by_key.pop(signal.key)
            return None
        if outcome.get("changed"):
            self.stats.attached += 1
        else:
            self.stats.duplicates += 1
        self._open_by_key.put(signal.key, incident_id)
        return incident

    def take_over(self) -> None:
        """The keys routed to this process changed (partition assignment): forget the cached open incidents (the
        previous owner may have changed them) and sync before the next search."""
        self._open_by_key.clear()
        self._written.clear()
        self._claims.clear()
        self._sync_before_search = True

    def _find_open(self, signal: Signal) -> str | None:
        self._sync_once()
        window_ms = int(self.settings.attach_window_s * 1000)
        flt = IncidentFilter(statuses=[s.value for s in ACTIVE], key=signal.key,
                             since_ms=signal.timestamp_ms - window_ms, size=1)
        docs = self.backend.find(flt)
        return str(docs[0]["id"]) if docs else None

    # ---- triage -----------------------------------------------------------------------------------

    def search(self, flt: IncidentFilter) -> list[Incident]:
        return [Incident.from_doc(doc) for doc in self.backend.find(flt)]

    def timeline(self, incident: Incident, alerts_pattern: str, events_pattern: str) -> list[dict[str, Any]]:
        """Alerts and evidence events of an incident, oldest first."""
        docs = [{"kind": "alert", **d} for d in self.backend.fetch(alerts_pattern, incident.alert_ids)]
        docs += [{"kind": "event", **d} for d in self.backend.fetch(events_pattern, incident.evidence_event_ids)]
        return sorted(docs, key=lambda d: str(d.get("@timestamp", "")))


def matches_filter(doc: dict[str, Any], flt: IncidentFilter) -> bool:
    """The filter semantics, in Python (MemoryBackend; also documents what the ES query does)."""
    checks = [
        not flt.statuses or doc["status"] in flt.statuses,
        flt.min_severity is None or doc["severity_score"] >= LEVEL_SCORE.get(flt.min_severity, 0),
        flt.since_ms is None or doc["last_seen_ms"] >= flt.since_ms,
        flt.key is None or doc["key"] == flt.key,
        flt.rule is None or any(flt.rule in (r["id"], r["name"]) for r in doc["rules"]),
        flt.entity is None or any(flt.entity in values for values in doc["entities"].values()),
    ]
    return all(checks)


class MemoryBackend:
    """In-process backend with Elasticsearch's versioning rules (for tests and dry runs).

    ``near_real_time``: like Elasticsearch without per-write refreshes, ``find`` sees the documents as of the
    last ``sync`` (``get`` is real-time, as in Elasticsearch); otherwise ``find`` sees every write at once.
    """

    def __init__(self, near_real_time: bool = False) -> None:
        self.docs: dict[str, tuple[dict[str, Any], int]] = {}
        self.side_docs: dict[str, dict[str, Any]] = {}  # alerts/events by id, for timelines
        self._seq = 0
        # What ``find`` sees as of the last sync; None: every write at once.
        self._searchable: dict[str, tuple[dict[str, Any], int]] | None = {} if near_real_time else None
        self.syncs = 0
        self.claims: dict[str, str] = {}
        self._claims_visible: dict[str, str] | None = {} if near_real_time else None

    def sync(self) -> None:
        self.syncs += 1
        if self._searchable is not None:
            self._searchable = dict(self.docs)
        if self._claims_visible is not None:
            self._claims_visible = dict(self.claims)

    def claimed(self, alert_id: str, day: str) -> str | None:
        return (self.claims if self._claims_visible is None else self._claims_visible).get(alert_id)

    def claim(self, alert_id: str, day: str, incident_id: str, now_ms: int) -> None:
        self.claims[alert_id] = incident_id

    def get(self, incident_id: str) -> tuple[dict[str, Any], int, int] | None:
        found = self.docs.get(incident_id)
        return (dict(found[0]), found[1], 1) if found else None

    def create(self, incident_id: str, doc: dict[str, Any]) -> Version:
        if incident_id in self.docs:
            raise VersionConflict(incident_id)
        self._seq += 1
        self.docs[incident_id] = (doc, self._seq)
        return self._seq, 1

    def replace(self, incident_id: str, doc: dict[str, Any], seq_no: int, primary_term: int) -> Version:
        current = self.docs.get(incident_id)
        if current is None or current[1] != seq_no or primary_term != 1:
            raise VersionConflict(incident_id)
        self._seq += 1
        self.docs[incident_id] = (doc, self._seq)
        return self._seq, 1

    def find(self, flt: IncidentFilter) -> list[dict[str, Any]]:
        visible = self.docs if self._searchable is None else self._searchable
        hits = [doc for doc, _ in visible.values() if matches_filter(doc, flt)]
        return sorted(hits, key=lambda d: -int(d["last_seen_ms"]))[: flt.size]

    def fetch(self, index_pattern: str, ids: Sequence[str]) -> list[dict[str, Any]]:
        return [self.side_docs[i] for i in ids if i in self.side_docs]


__all__ = ["IncidentStore", "MemoryBackend", "Status", "VersionConflict", "matches_filter"]
