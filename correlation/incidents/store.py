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


@dataclass(frozen=True)
class IncidentWrite:
    """One incident document to write: on top of ``version`` (optimistic concurrency), or created (``None``)."""

    incident_id: str
    doc: dict[str, Any]
    version: Version | None


@dataclass(frozen=True)
class Claim:
    """Which incident took a detection alert: the incident store's replay check (see ``record_batch``)."""

    alert_id: str
    day: str  # the alert's day (yyyy.mm.dd): claims live in daily indices, dropped with the alerts
    incident_id: str
    # "topic/partition" and offset of the message that carried the alert into the incident; None when the alert
    # was already in the incident before the batch (or came without a message). See ``IncidentStore._valid``.
    source: str | None = None
    offset: int | None = None


class BackendUnavailable(Exception):
    """Elasticsearch could not take part of a request right now (an item refused with 429 or 5xx): retry."""


class IncidentBackend(Protocol):
    def get(self, incident_id: str) -> tuple[dict[str, Any], int, int] | None: ...
    def replace(self, incident_id: str, doc: dict[str, Any], seq_no: int, primary_term: int) -> Version: ...
    # Many writes in one request; per write its new version, or None on a version conflict.
    def write_many(self, writes: Sequence[IncidentWrite]) -> list[Version | None]: ...
    def find(self, flt: IncidentFilter) -> list[dict[str, Any]]: ...  # near-real-time, like a search
    def sync(self) -> None: ...  # make every acknowledged write visible to ``find`` and ``claimed_many``
    # alert id -> its claim, for those of ``alerts`` (alert id, day) claimed as of the last sync
    def claimed_many(self, alerts: Sequence[tuple[str, str]]) -> dict[str, Claim]: ...
    def claim_many(self, claims: Sequence[Claim], now_ms: int) -> None: ...
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
class _PendingWrite:
    """An incident changed in memory during a batch, written at its end."""

    incident: Incident
    base: Version | None  # the version the change was made on; None: a new incident
    signals: list[tuple[int, Signal]]  # (place in the batch, signal) that changed it, to apply again on a conflict


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
        # the batch being recorded (see record_batch)
        self._pending: dict[str, _PendingWrite] = {}
        self._placed: dict[int, str] = {}  # place in the batch -> incident id that took (or had taken) the signal
        self._batch_claims: dict[str, str] = {}  # alert id -> incident id, claimed by this batch
        self._taken: set[str] = set()  # alert ids this batch attached (not found attached already)

    def get(self, incident_id: str) -> Versioned | None:
        self.stats.reads += 1
        found = self.backend.get(incident_id)
        if found is None:
            return None
        doc, seq_no, term = found
        return Versioned(Incident.from_doc(doc), seq_no, term)

    def update(self, incident_id: str, mutate: Mutation) -> Incident:
        """Read (or take the version this store last wrote), mutate, write with optimistic concurrency; on a
        conflict read again and retry. One write per call: a responder's change, not the pipeline's path."""
        remembered = self._written.get(incident_id)
        for _ in range(self.settings.update_retries):
            # A copy: the mutation changes the incident in place, and a failed write must not leave it changed.
            cached = remembered is not None
            current = _copy(remembered) if remembered is not None else self.get(incident_id)
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
        """:meth:`record_batch` of one signal; returns the incident that took it."""
        incident_id = self.record_batch([signal])[0]
        remembered = self._written.get(incident_id)
        current = remembered if remembered is not None else self.get(incident_id)
        if current is None:
            raise IndexingError("incident not found", doc_id=incident_id)
        return current.incident

    def record_batch(self, signals: Sequence[Signal]) -> list[str]:
        """Attach each signal, in order, to the open incident with its key, or open a new one; returns the id of
        the incident that took each. An alert an incident already took (its message delivered again) changes
        nothing.

        The changes are made in memory and written at the end, each changed incident once, in one bulk request;
        the claims were read in one multi-get first and are written in one bulk request before the incidents: a
        burst of alerts costs three requests, not three per alert. An incident that changed meanwhile (a
        responder's write: a version conflict) is read again and its signals applied again; an alert that moved to
        another incident that way is claimed again.

        Detection alerts are claimed (``claim_many``): a crash of the detect stage before its commit makes it
        produce the same alerts again, at new offsets, and they may meet an incident that does not list them (a
        later incident of the key, or one past ``max_alert_ids``). The claims are written first, each with the
        message that carried the alert: a claim whose incident does not show that message (a kill between the two
        writes) is not trusted, and the alert is placed again. Written the other way round, a kill between the
        writes left alerts counted but unclaimed, and a copy produced again could be counted by a second incident.

        On any error nothing is remembered of the batch (caches dropped, as on a take-over): the caller retries
        the whole batch, and what a partly successful write stored is then found and not counted again."""
        try:
            claimed = self._claimed(signals)
            to_claim: list[int] = []  # places of detection alerts no incident had claimed
            for place, signal in enumerate(signals):
                owner = (self._claims.get(signal.alert_id) or claimed.get(signal.alert_id)) if (
                    signal.kind == "detection") else None
                if owner is not None:
                    self.stats.duplicates += 1
                    self._placed[place] = owner
                    continue
                self._place(place, signal)
                if signal.kind == "detection":
                    to_claim.append(place)
            claims = self._claims_of(signals, to_claim)
            if claims:
                self.backend.claim_many(list(claims.values()), self.clock_ms())
            self._write_pending()
            # A conflict applied an incident's signals again on its current version: an alert may have gone to
            # another incident, or be found already there (its claim then carries no message). Those claims are
            # written again; the whole claim is compared, not only the incident.
            after = self._claims_of(signals, to_claim)
            changed = [claim for alert_id, claim in after.items() if claim != claims[alert_id]]
            if changed:
                self.backend.claim_many(changed, self.clock_ms())
            # Where each alert ended up (a conflict may have moved it; an alert seen twice follows its first).
            for place in to_claim:
                self._placed[place] = self._batch_claims[signals[place].alert_id]
            for claim in claims.values():
                self._claims.put(claim.alert_id, self._batch_claims[claim.alert_id])
            return [self._placed[place] for place in range(len(signals))]
        except BaseException:
            self.take_over()
            raise
        finally:
            self._pending.clear()
            self._placed.clear()
            self._batch_claims.clear()
            self._taken.clear()

    def _claims_of(self, signals: Sequence[Signal], places: Sequence[int]) -> dict[str, Claim]:
        """The claims of the alerts at ``places`` as placed now; an alert seen twice is claimed as its first copy
        was placed, with that copy's message when it changed the incident."""
        claims: dict[str, Claim] = {}
        for place in places:
            signal = signals[place]
            if signal.alert_id in claims:
                continue
            source, offset = None, None
            if signal.position is not None and signal.alert_id in self._taken:
                topic, partition, offset = signal.position
                source = f"{topic}/{partition}"
            claims[signal.alert_id] = Claim(signal.alert_id, day(signal.timestamp_ms),
                                            self._batch_claims[signal.alert_id], source, offset)
        return claims

    def _claimed(self, signals: Sequence[Signal]) -> dict[str, str]:
        """Alert id -> incident, for the batch's detection alerts this store does not remember that an incident
        took (a trusted claim), in one request (plus a read of each claimed incident not remembered)."""
        unknown = [
            (s.alert_id, day(s.timestamp_ms))
            for s in signals
            if s.kind == "detection" and self._claims.get(s.alert_id) is None
        ]
        if not unknown:
            return {}
        self._sync_once()
        found = self.backend.claimed_many(unknown)
        return {alert_id: claim.incident_id for alert_id, claim in found.items() if self._valid(claim)}

    def _valid(self, claim: Claim) -> bool:
        """Whether the claimed incident was written with the alert: it lists the alert, or took the claim's message
        (or a later one of its partition: those are handled in offset order). A claim without a message was
        written for an alert its incident already held."""
        if claim.source is None or claim.offset is None:
            return True
        current = self._written.get(claim.incident_id) or self.get(claim.incident_id)
        if current is None:
            return False
        self._written.put(claim.incident_id, current)
        incident = current.incident
        return incident.applied_offsets.get(claim.source, -1) >= claim.offset or claim.alert_id in incident.alert_ids

    def _sync_once(self) -> None:
        if self._sync_before_search:
            self.backend.sync()  # raises like a search would when Elasticsearch is down: the caller retries
            self._sync_before_search = False

    def _place(self, place: int, signal: Signal) -> None:
        """Attach ``signal`` (in memory) to its key's open incident, or open a new one."""
        if signal.kind == "detection":
            earlier = self._batch_claims.get(signal.alert_id)  # the same alert twice in one batch
            if earlier is not None:
                self.stats.duplicates += 1
                self._placed[place] = earlier
                return
        target = self._open_by_key.get(signal.key) or self._find_latest(signal)
        attached, refusing = (False, None) if target is None else self._attach(target, place, signal)
        if target is None or not attached:
            incident = open_incident(signal, self.settings, self.clock_ms())
            if refusing is not None:
                self._inherit(incident, refusing)
            # Created when the batch is written; if it exists already (the signal opened it before a restart),
            # the conflict makes the signal attach to the stored one instead.
            self._pending[incident.id] = _PendingWrite(incident, None, [(place, signal)])
            self._open_by_key.put(signal.key, incident.id)
            self._taken.add(signal.alert_id)
            target = incident.id
        self._placed[place] = target
        if signal.kind == "detection":
            self._batch_claims[signal.alert_id] = target

    def _inherit(self, incident: Incident, predecessor: Incident) -> None:
        """A key's new incident takes over what the one that refused the signal took (message offsets, correlation
        match ids), so replays of those are recognized here rather than counted again."""
        for source, offset in predecessor.applied_offsets.items():
            incident.applied_offsets[source] = max(offset, incident.applied_offsets.get(source, -1))
        taken = predecessor.inherited_correlation_ids + predecessor.correlation_ids
        incident.inherited_correlation_ids = taken[-self.settings.max_alert_ids:]

    def _attach(self, incident_id: str, place: int, signal: Signal) -> tuple[bool, Incident | None]:
        """Attach to ``incident_id`` in memory. Returns (attached, refusing incident): (False, incident) when it
        refuses the signal (closed, outside the attach window), (False, None) when it is gone."""
        refusing: Incident | None = None

        def mutate(incident: Incident) -> bool:
            nonlocal refusing
            refusing = None  # may run twice (a remembered version, then the current one)
            if already_attached(incident, signal):  # a replay: whatever the window says now
                return False
            if not is_attachable(incident, signal, self.settings):
                refusing = incident
                return False
            return attach(incident, signal, self.settings, self.clock_ms())

        changed = self._change(incident_id, place, signal, mutate)
        if changed is None or refusing is not None:
            self._open_by_key.pop(signal.key)
            return False, refusing
        if changed:
            self.stats.attached += 1
            self._taken.add(signal.alert_id)
        else:
            self.stats.duplicates += 1
        self._open_by_key.put(signal.key, incident_id)
        return True, None

    def _change(self, incident_id: str, place: int, signal: Signal, mutate: Mutation) -> bool | None:
        """Apply ``mutate`` to the latest version known of the incident (changed in this batch, remembered, or
        read); a change is kept to be written at the end of the batch. None if the incident does not exist."""
        pending = self._pending.get(incident_id)
        if pending is not None:
            changed = mutate(pending.incident)
            if changed:
                pending.signals.append((place, signal))
            return changed
        remembered = self._written.get(incident_id)
        if remembered is not None:
            copy = _copy(remembered)  # a failed write must not leave the remembered version changed
            if mutate(copy.incident):
                self._keep(incident_id, copy, place, signal)
                return True
            # decided "no change" on the remembered version: decide again on the current one
        current = self.get(incident_id)
        if current is None:
            return None
        if mutate(current.incident):
            self._keep(incident_id, current, place, signal)
            return True
        self._written.put(incident_id, current)
        return False

    def _keep(self, incident_id: str, changed: Versioned, place: int, signal: Signal) -> None:
        self._pending[incident_id] = _PendingWrite(
            changed.incident, (changed.seq_no, changed.primary_term), [(place, signal)]
        )

    def _write_pending(self) -> None:
        """Write every incident the batch changed, in one request; on version conflicts read those incidents
        again, apply their signals again (in batch order) and write what changed, up to ``update_retries`` times."""
        for _ in range(self.settings.update_retries):
            if not self._pending:
                return
            pending, self._pending = self._pending, {}
            writes = [IncidentWrite(i, p.incident.to_doc(), p.base) for i, p in pending.items()]
            again: list[tuple[int, Signal]] = []
            for write, version in zip(writes, self.backend.write_many(writes), strict=True):
                written = pending[write.incident_id]
                if version is None:
                    self.stats.conflicts += 1
                    self._written.pop(write.incident_id)
                    again.extend(written.signals)
                    continue
                if written.base is None:
                    self.stats.created += 1
                self._written.put(write.incident_id, Versioned(written.incident, *version))
            for place, signal in sorted(again, key=lambda item: item[0]):
                self._batch_claims.pop(signal.alert_id, None)
                self._taken.discard(signal.alert_id)
                self._place(place, signal)
        if self._pending:
            raise IndexingError(f"gave up after {self.settings.update_retries} version conflicts")

    def take_over(self) -> None:
        """The keys routed to this process changed (partition assignment), or a batch failed: forget the cached
        open incidents and versions (the previous owner, or the failed write, may have changed them) and sync
        before the next search."""
        self._open_by_key.clear()
        self._written.clear()
        self._claims.clear()
        self._sync_before_search = True

    def _find_latest(self, signal: Signal) -> str | None:
        """The key's latest open incident, however old: when it is outside the attach window it refuses the signal,
        and the incident opened instead inherits what it took (see ``_place``). Searching only within the window
        would open that incident without the inheritance, and a replay of what the older one took would count
        again there."""
        self._sync_once()
        flt = IncidentFilter(statuses=[s.value for s in ACTIVE], key=signal.key, size=1)
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


def _copy(versioned: Versioned) -> Versioned:
    return Versioned(versioned.incident.model_copy(deep=True), versioned.seq_no, versioned.primary_term)


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
        self.requests = 0  # write_many and claim_many calls (one request each against Elasticsearch)
        self.claims: dict[str, Claim] = {}
        self._claims_visible: dict[str, Claim] | None = {} if near_real_time else None

    def sync(self) -> None:
        self.syncs += 1
        if self._searchable is not None:
            self._searchable = dict(self.docs)
        if self._claims_visible is not None:
            self._claims_visible = dict(self.claims)

    def claimed_many(self, alerts: Sequence[tuple[str, str]]) -> dict[str, Claim]:
        visible = self.claims if self._claims_visible is None else self._claims_visible
        return {alert_id: visible[alert_id] for alert_id, _ in alerts if alert_id in visible}

    def claim_many(self, claims: Sequence[Claim], now_ms: int) -> None:
        self.requests += 1
        for claim in claims:
            self.claims[claim.alert_id] = claim

    def write_many(self, writes: Sequence[IncidentWrite]) -> list[Version | None]:
        """Each write through ``create``/``replace`` (so a subclass that interferes with them sees these too)."""
        self.requests += 1
        results: list[Version | None] = []
        for write in writes:
            try:
                if write.version is None:
                    results.append(self.create(write.incident_id, write.doc))
                else:
                    results.append(self.replace(write.incident_id, write.doc, *write.version))
            except VersionConflict:
                results.append(None)
        return results

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


__all__ = ["Claim", "IncidentStore", "MemoryBackend", "Status", "VersionConflict", "matches_filter"]
