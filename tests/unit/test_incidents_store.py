"""Incidents: opening, attaching by key within the period, idempotency, concurrency, triage history."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from correlation.incidents.builder import Signal, entity_kind, signal_from_alert, signal_from_match
from correlation.incidents.model import Incident, Status, TransitionError, add_note, assign, change_status
from correlation.incidents.store import IncidentFilter, IncidentStore, MemoryBackend, RecentCache, VersionConflict
from correlation.windows.engine import CorrelationEngine
from correlation.windows.router import CorrelationRouter
from correlation.windows.rules import load_correlations_from_yaml
from siem.config import IncidentSettings

ARN = "arn:aws:iam::123456789012:user/mallory"
T0 = 1_735_732_800_000  # 2025-01-01T12:00:00Z


def sig(doc: dict[str, Any], settings: IncidentSettings, level: str = "high") -> Signal:
    signal = signal_from_alert(doc, settings, level)
    assert signal is not None
    return signal


def mut(change: Callable[..., None], *args: Any) -> Callable[[Incident], bool]:
    def mutate(incident: Incident) -> bool:
        change(incident, *args)
        return True

    return mutate


def alert_doc(n: int, ts_ms: int, level: str = "high", arn: str = ARN, ip: str = "203.0.113.5") -> dict[str, Any]:
    return {
        "@timestamp": ts_ms,
        "event": {"kind": "alert", "id": f"alert-{n}", "severity": 73},
        "rule": {"id": "r-console", "name": "Console login without MFA"},
        "siem": {"level": level, "source_event": {"id": f"event-{n}"}},
        "threat": {"tactic": {"name": ["initial-access"]}, "technique": {"id": ["T1078"]}},
        "aws": {"cloudtrail": {"user_identity": {"arn": arn}}},
        "source": {"ip": ip},
    }


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self) -> int:
        return self.now


def make_store(**overrides):
    settings = IncidentSettings(**overrides)
    backend = MemoryBackend()
    return IncidentStore(backend, settings, Clock()), backend, settings


def test_alert_below_level_or_without_entity_opens_nothing():
    settings = IncidentSettings()
    assert signal_from_alert(alert_doc(1, T0, level="medium"), settings, "high") is None
    doc = alert_doc(1, T0)
    del doc["aws"], doc["source"]
    assert signal_from_alert(doc, settings, "high") is None


def test_alerts_with_same_key_attach_within_period_then_open_new():
    store, backend, settings = make_store(attach_window_s=600)
    first = store.record(sig(alert_doc(1, T0), settings, "high"))
    second = store.record(sig(alert_doc(2, T0 + 300_000, ip="198.51.100.7"), settings, "high"))
    assert second.id == first.id
    assert (second.alert_count, second.alert_ids, second.evidence_event_ids) == (
        2, ["alert-1", "alert-2"], ["event-1", "event-2"])
    assert second.entities["users"] == [ARN] and second.entities["ips"] == ["203.0.113.5", "198.51.100.7"]
    assert (second.tactics, second.techniques, second.severity) == (["initial-access"], ["T1078"], "high")
    assert second.first_seen == "2025-01-01T12:00:00.000Z" and second.last_seen == "2025-01-01T12:05:00.000Z"
    # 11 minutes after the last alert: outside the 10 minute period -> a new incident
    third = store.record(sig(alert_doc(3, T0 + 960_000), settings, "high"))
    assert third.id != first.id and len(backend.docs) == 2


def test_replayed_alert_is_not_counted_twice():
    store, backend, settings = make_store()
    signal = sig(alert_doc(1, T0), settings, "high")
    store.record(signal)
    fresh = IncidentStore(backend, settings, Clock())  # restarted process: empty key cache
    again = fresh.record(signal)
    assert again.alert_count == 1 and len(backend.docs) == 1 and fresh.stats.duplicates == 1


def test_resolved_incident_is_not_reused():
    store, backend, settings = make_store()
    first = store.record(sig(alert_doc(1, T0), settings, "high"))
    store.update(first.id, mut(change_status, Status.RESOLVED, "bob", "t", "done"))
    second = store.record(sig(alert_doc(2, T0 + 1000), settings, "high"))
    assert second.id != first.id


class ConflictOnce(MemoryBackend):
    """A responder writes between the pipeline's get and index (by default: acknowledges and takes it)."""

    def __init__(self, **responder_change: Any) -> None:
        super().__init__()
        self.armed = False
        self.responder_change = responder_change or {"status": "acknowledged", "assignee": "alice"}

    def replace(self, incident_id, doc, seq_no, primary_term):
        if self.armed:
            self.armed = False
            stored, _ = self.docs[incident_id]
            MemoryBackend.replace(self, incident_id, dict(stored, **self.responder_change), seq_no, primary_term)
        return MemoryBackend.replace(self, incident_id, doc, seq_no, primary_term)


def test_concurrent_update_retries_and_keeps_both_changes():
    settings = IncidentSettings()
    backend = ConflictOnce()
    store = IncidentStore(backend, settings, Clock())
    first = store.record(sig(alert_doc(1, T0), settings, "high"))
    backend.armed = True
    merged = store.record(sig(alert_doc(2, T0 + 1000), settings, "high"))
    assert store.stats.conflicts == 1
    assert (merged.id, merged.alert_count, merged.status, merged.assignee) == (
        first.id, 2, Status.ACKNOWLEDGED, "alice")


def test_attaching_writes_on_the_remembered_version_without_reading():
    store, backend, settings = make_store()
    first = store.record(sig(alert_doc(1, T0), settings))
    for n in range(2, 6):
        store.record(sig(alert_doc(n, T0 + n * 1000), settings))
    stored = Incident.from_doc(backend.docs[first.id][0])
    assert (stored.alert_count, store.stats.attached, store.stats.reads) == (5, 4, 0)
    assert backend.docs[first.id][1] == 5  # one create and four replaces, each on the version before


def test_a_refusal_decided_on_the_remembered_version_is_checked_against_the_current_one():
    # Another owner of the key (before a rebalance) attached an alert at T0+50 min; this store still remembers
    # the version with last_seen T0. At T0+70 min the remembered version says "outside the 60 min window",
    # the current one says attach.
    store, backend, settings = make_store(attach_window_s=3600)
    first = store.record(sig(alert_doc(1, T0), settings))
    other = IncidentStore(backend, settings, Clock())
    other._open_by_key.put(first.key, first.id)
    other.record(sig(alert_doc(2, T0 + 50 * 60_000), settings))
    third = store.record(sig(alert_doc(3, T0 + 70 * 60_000), settings))
    assert third.id == first.id and third.alert_ids == ["alert-1", "alert-2", "alert-3"]
    assert store.stats.reads == 1 and len(backend.docs) == 1


def test_remembered_keys_and_versions_are_bounded():
    store, backend, settings = make_store(cache_size=2)
    ips = ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
    opened = [store.record(sig(alert_doc(n, T0, arn=f"arn:aws:iam::1:user/u{n}", ip=ip), settings))
              for n, ip in enumerate(ips)]
    assert len(store._open_by_key) == 2 and len(store._written) == 2
    # the forgotten first key is found again by search, and its alert attaches (one read, nothing duplicated)
    again = store.record(sig(alert_doc(9, T0 + 1000, arn="arn:aws:iam::1:user/u0", ip=ips[0]), settings))
    assert again.id == opened[0].id and again.alert_count == 2 and len(backend.docs) == 3
    assert store.stats.reads == 1


def test_recent_cache_evicts_the_least_recently_used():
    cache: RecentCache[str, int] = RecentCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.put("c", 3)
    assert (cache.get("b"), cache.get("a"), cache.get("c"), len(cache)) == (None, 1, 3, 2)
    cache.pop("a")
    cache.pop("missing")
    assert len(cache) == 1


def test_memory_backend_rejects_stale_write():
    backend = MemoryBackend()
    backend.create("x", {"a": 1})
    current = backend.get("x")
    assert current is not None
    _, seq, term = current
    backend.replace("x", {"a": 2}, seq, term)
    with pytest.raises(VersionConflict):
        backend.replace("x", {"a": 3}, seq, term)
    with pytest.raises(VersionConflict):
        backend.create("x", {})


def test_status_changes_are_recorded_and_validated():
    store, _, settings = make_store()
    inc = store.record(sig(alert_doc(1, T0), settings, "high"))
    inc = store.update(inc.id, mut(change_status, Status.ACKNOWLEDGED, "bob", "t1", "looking"))
    inc = store.update(inc.id, mut(assign, "carol", "bob", "t2"))
    inc = store.update(inc.id, mut(add_note, "MFA reset", "carol", "t3"))
    inc = store.update(inc.id, mut(change_status, Status.FALSE_POSITIVE, "carol", "t4", "test acct"))
    inc = store.update(inc.id, mut(change_status, Status.OPEN, "dave", "t5", "not a test"))
    assert [(h.by, h.action, h.from_status, h.to_status, h.reason) for h in inc.history] == [
        ("bob", "status", Status.OPEN, Status.ACKNOWLEDGED, "looking"),
        ("bob", "assign:carol", None, None, None),
        ("carol", "note", None, None, "MFA reset"),
        ("carol", "status", Status.ACKNOWLEDGED, Status.FALSE_POSITIVE, "test acct"),
        ("dave", "status", Status.FALSE_POSITIVE, Status.OPEN, "not a test"),
    ]
    with pytest.raises(TransitionError):
        change_status(inc, Status.OPEN, "x", "t6")


def test_filters():
    store, _, settings = make_store()
    store.record(sig(alert_doc(1, T0), settings, "high"))
    store.record(sig(alert_doc(2, T0, level="critical", arn="arn:aws:iam::1:role/x"), settings, "high"))
    assert len(store.search(IncidentFilter())) == 2
    assert len(store.search(IncidentFilter(min_severity="critical"))) == 1
    assert len(store.search(IncidentFilter(entity="arn:aws:iam::1:role/x"))) == 1
    assert len(store.search(IncidentFilter(rule="Console login without MFA", statuses=["open"]))) == 2
    assert store.search(IncidentFilter(since_ms=T0 + 1)) == []


def test_entity_kinds():
    assert entity_kind("aws.cloudtrail.user_identity.arn", "arn:aws:sts::1:assumed-role/Admin/x") == "roles"
    assert entity_kind("orchestrator.namespace", "prod") == "namespaces"
    assert entity_kind("kubernetes.pod.name", "web-1") == "pods"
    assert entity_kind("cloud.account.id", "123") == "accounts"
    assert entity_kind("kubernetes.audit.user.username", "system:admin") == "users"


def test_correlation_match_opens_incident_keyed_by_group_by():
    text = """
title: Many failed
id: bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb
level: critical
tags: [attack.credential-access, attack.t1110.001]
correlation:
    type: event_count
    rules: [fl]
    group-by: [user.name]
    timespan: 1m
    condition: {gte: 2}
---
title: Failed login
name: fl
id: 11111111-1111-1111-1111-111111111111
logsource: {product: test}
detection: {sel: {x: 1}, condition: sel}
"""
    _, compiled = load_correlations_from_yaml(text)
    router = CorrelationRouter(compiled, entity_fields=["source.ip"])
    engine = CorrelationEngine(compiled, allowed_lateness_ms=0)
    matches = []
    for n in range(2):
        fields = {"user.name": "eve", "source.ip": f"10.0.0.{n}"}
        for inp in router.route("11111111-1111-1111-1111-111111111111", "fl", fields.get, T0 + n, f"a{n}", f"e{n}"):
            matches.extend(engine.process(inp))
    store, _, settings = make_store()
    incident = store.record(signal_from_match(compiled[0], matches[0], settings))
    assert incident.key == "corr:bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb:user.name=eve"
    assert (incident.severity, incident.techniques) == ("critical", ["T1110.001"])
    assert incident.tactics == ["credential-access"]
    assert incident.entities["users"] == ["eve"] and incident.entities["ips"] == ["10.0.0.0", "10.0.0.1"]
    assert incident.evidence_event_ids == ["e0", "e1"] and incident.correlation_ids == [matches[0].id]
    assert incident.risk_score == 100.0 or incident.risk_score > 99


# ---- near-real-time search: no refresh per write, one sync per take-over ------------------------------------


def test_new_owner_finds_the_predecessors_incident_after_one_sync():
    settings = IncidentSettings()
    backend = MemoryBackend(near_real_time=True)
    first = IncidentStore(backend, settings, Clock()).record(sig(alert_doc(1, T0), settings))
    assert backend.find(IncidentFilter(key=first.key)) == []  # written, acknowledged, not yet searchable
    successor = IncidentStore(backend, settings, Clock())  # another process took over the partition
    merged = successor.record(sig(alert_doc(2, T0 + 60_000), settings))
    assert merged.id == first.id and merged.alert_count == 2 and len(backend.docs) == 1
    assert backend.syncs == 2  # once per store, before its first search
    successor.record(sig(alert_doc(3, T0 + 120_000, ip="198.51.100.9"), settings))
    assert backend.syncs == 2  # the key is cached now: no search, no further sync


def test_without_the_sync_a_new_owner_would_open_a_duplicate():
    # The failure the sync prevents, shown on the same backend (so the test above cannot pass by accident).
    settings = IncidentSettings()
    backend = MemoryBackend(near_real_time=True)
    IncidentStore(backend, settings, Clock()).record(sig(alert_doc(1, T0), settings))
    successor = IncidentStore(backend, settings, Clock())
    successor._sync_before_search = False
    successor.record(sig(alert_doc(2, T0 + 60_000), settings))
    assert len(backend.docs) == 2


def test_take_over_forgets_cached_keys_and_syncs_before_the_next_search():
    settings = IncidentSettings()
    backend = MemoryBackend(near_real_time=True)
    store = IncidentStore(backend, settings, Clock())
    first = store.record(sig(alert_doc(1, T0), settings))
    assert backend.syncs == 1  # the first search of a new store
    # meanwhile another owner of the key's partition (before a rebalance gave it back) attached an alert
    other = IncidentStore(backend, settings, Clock())
    other._open_by_key.put(first.key, first.id)
    other.record(sig(alert_doc(2, T0 + 30_000), settings))
    syncs = backend.syncs
    store.take_over()
    third = store.record(sig(alert_doc(3, T0 + 60_000), settings))
    assert backend.syncs == syncs + 1
    assert third.id == first.id and third.alert_ids == ["alert-1", "alert-2", "alert-3"]


def test_replayed_alerts_are_not_counted_twice_once_alert_ids_are_truncated():
    store, backend, settings = make_store(max_alert_ids=2)
    signals = [
        replace(sig(alert_doc(n, T0 + n * 1000), settings), position=("siem.alerts", n % 2, 10 + n)) for n in range(5)
    ]
    for signal in signals:
        incident = store.record(signal)
    assert (incident.alert_count, incident.alert_ids_truncated) == (5, True)
    # a crash before the commit: the restarted process gets the last three messages again
    restarted = IncidentStore(backend, settings, Clock())
    for signal in signals[2:]:
        again = restarted.record(signal)
    assert again.id == incident.id and again.alert_count == 5, "replays beyond the kept ids must not count"
    assert again.applied_offsets == {"siem.alerts/0": 14, "siem.alerts/1": 13}
    assert restarted.stats.duplicates == 3


def test_a_replay_is_recognized_by_the_latest_incident_of_its_key_across_partitions():
    # p0 @5 opens I1 at 10:00; p1 @7 at 12:00 is outside I1's hour: I2 opens and inherits I1's offsets. A crash
    # before any commit replays both: the new process finds I2 (the key's latest) and takes neither again.

    store, backend, settings = make_store(attach_window_s=3600)
    first = replace(sig(alert_doc(1, T0), settings), position=("siem.alerts", 0, 5))
    second = replace(sig(alert_doc(2, T0 + 2 * 3_600_000), settings), position=("siem.alerts", 1, 7))
    one, two = store.record(first), store.record(second)
    assert one.id != two.id and two.applied_offsets == {"siem.alerts/0": 5, "siem.alerts/1": 7}
    restarted = IncidentStore(backend, settings, Clock())
    restarted.record(first)
    restarted.record(second)
    counts = sorted(Incident.from_doc(doc).alert_count for doc, _ in backend.docs.values())
    assert counts == [1, 1] and restarted.stats.duplicates == 2, "each alert counted once, in one incident"


def test_an_alert_delivered_again_at_a_new_offset_is_not_counted_again():
    # The detect stage crashed before its commit and produced the same alerts again: new offsets, same alert ids.
    # They must not count again, even where the incident no longer lists them (past max_alert_ids) or a later
    # incident of the key is the open one.

    store, backend, settings = make_store(max_alert_ids=2, attach_window_s=3600)
    first = [replace(sig(alert_doc(n, T0 + n * 1000), settings), position=("siem.alerts", 0, n)) for n in range(4)]
    for signal in first:
        store.record(signal)
    later = store.record(replace(sig(alert_doc(9, T0 + 3 * 3_600_000), settings), position=("siem.alerts", 0, 9)))
    restarted = IncidentStore(backend, settings, Clock())
    for n, signal in enumerate(first):  # produced again after offset 9
        again = restarted.record(replace(signal, position=("siem.alerts", 0, 20 + n)))
        assert again.id != later.id
    counts = sorted(Incident.from_doc(doc).alert_count for doc, _ in backend.docs.values())
    assert counts == [1, 4] and restarted.stats.duplicates == 4
    assert backend.claims[first[0].alert_id].incident_id == again.id


# ---- batches (the correlate stage records a poll batch's signals together) ----------------------------------


def _positioned(n: int, settings: IncidentSettings, ts_ms: int, **doc: Any) -> Signal:
    return replace(sig(alert_doc(n, ts_ms, **doc), settings), position=("siem.alerts", 0, n))


def test_a_batch_writes_its_claims_once_then_each_changed_incident_once():
    store, backend, settings = make_store()
    signals = [_positioned(n, settings, T0 + n * 1000, arn=f"arn:aws:iam::1:user/u{n % 2}", ip=f"203.0.113.{n % 2}")
               for n in range(10)]
    placed = store.record_batch(signals)
    assert backend.requests == 2, "one write request for the claims, one for the incidents"
    assert len(set(placed)) == 2 and placed[0] == placed[2] != placed[1] == placed[3]
    counts = sorted(Incident.from_doc(doc).alert_count for doc, _ in backend.docs.values())
    assert counts == [5, 5] and [seq for _, seq in backend.docs.values()] == [1, 2], "created once each"
    assert {a: c.incident_id for a, c in backend.claims.items()} == {
        s.alert_id: p for s, p in zip(signals, placed, strict=True)}
    assert (store.stats.created, store.stats.attached) == (2, 8)


def test_the_same_alert_twice_in_one_batch_counts_once():
    store, backend, settings = make_store(max_alert_ids=1)
    first, second = _positioned(1, settings, T0), _positioned(2, settings, T0 + 1000)
    again = replace(second, position=("siem.alerts", 0, 7))  # produced again by the detect stage, new offset
    placed = store.record_batch([first, second, again])
    ((doc, _),) = backend.docs.values()
    assert Incident.from_doc(doc).alert_count == 2 and placed == [placed[0]] * 3
    assert store.stats.duplicates == 1


def test_a_conflict_in_a_batch_applies_that_incidents_signals_again_on_the_current_version():
    settings = IncidentSettings()
    backend = ConflictOnce()
    store = IncidentStore(backend, settings, Clock())
    first = store.record(_positioned(1, settings, T0))
    backend.armed = True  # a responder acknowledges the incident while the batch is being recorded
    store.record_batch([_positioned(n, settings, T0 + n * 1000) for n in (2, 3, 4)])
    stored = Incident.from_doc(backend.docs[first.id][0])
    assert (stored.alert_count, stored.status, stored.assignee) == (4, Status.ACKNOWLEDGED, "alice")
    assert store.stats.conflicts == 1 and len(backend.docs) == 1


class IncidentsFailOnce(MemoryBackend):
    """The claims are written, then Elasticsearch goes away before the incidents are."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_incidents = True

    def write_many(self, writes):
        if self.fail_incidents:
            self.fail_incidents = False
            raise ConnectionError("connection refused")
        return super().write_many(writes)


def test_a_batch_retried_after_a_partly_written_attempt_counts_nothing_twice():
    settings = IncidentSettings()
    backend = IncidentsFailOnce()
    store = IncidentStore(backend, settings, Clock())
    signals = [_positioned(n, settings, T0 + n * 1000) for n in range(4)]
    with pytest.raises(ConnectionError):
        store.record_batch(signals)
    assert len(backend.claims) == 4 and not backend.docs
    placed = store.record_batch(signals)  # what the correlate stage does: the whole batch again
    ((doc, _),) = backend.docs.values()
    assert Incident.from_doc(doc).alert_count == 4 and set(placed) == {doc["id"]}
    # the claims were found, but their incident did not take the alerts: not trusted, the alerts placed again
    assert store.stats.duplicates == 0 and len(backend.claims) == 4
    # and once the incident is written, the same claims are trusted: nothing counted again
    again = IncidentStore(backend, settings, Clock())
    again.record_batch([replace(s, position=("siem.alerts", 0, 10 + n)) for n, s in enumerate(signals)])
    assert Incident.from_doc(next(iter(backend.docs.values()))[0]).alert_count == 4
    assert again.stats.duplicates == 4


def test_a_batch_that_would_open_an_existing_incident_again_takes_the_stored_one():
    # A replayed opening alert of an incident a responder resolved meanwhile: the search finds no open incident,
    # so the store opens one with the same id; the create conflicts, and the signal is applied to the stored
    # incident instead, which took it already (claims aside: correlation signals have none).
    store, backend, settings = make_store()
    signals = [_positioned(n, settings, T0 + n * 1000) for n in range(2)]
    (first, _) = store.record_batch(signals)
    store.update(first, mut(change_status, Status.RESOLVED, "bob", "t", "done"))
    backend.claims.clear()
    restarted = IncidentStore(backend, settings, Clock())
    assert restarted.record_batch(signals[:1]) == [first]
    ((doc, _),) = backend.docs.values()
    assert (doc["alert_count"], doc["status"]) == (2, "resolved")
    assert (restarted.stats.conflicts, restarted.stats.duplicates, restarted.stats.created) == (1, 1, 0)


def test_an_alert_moved_by_a_conflict_is_claimed_where_it_ended_up():
    settings = IncidentSettings()
    backend = ConflictOnce(status="resolved")
    store = IncidentStore(backend, settings, Clock())
    first = store.record(_positioned(1, settings, T0))
    second = _positioned(2, settings, T0 + 1000)
    backend.armed = True  # resolved while the batch attaches to it: the alert opens a new incident instead
    placed = store.record_batch([second, replace(second, position=("siem.alerts", 0, 9))])
    assert placed[0] == placed[1] != first.id
    assert backend.claims[second.alert_id].incident_id == placed[0]
    counts = {i: Incident.from_doc(doc).alert_count for i, (doc, _) in backend.docs.items()}
    assert counts == {first.id: 1, placed[0]: 1}


class KilledAfterWrites(MemoryBackend):
    """The process is killed after ``survive`` write requests of a batch (incidents or claims) reached the node."""

    def __init__(self, survive: int) -> None:
        super().__init__()
        self.survive = survive

    def _one_more(self) -> None:
        if self.survive == 0:
            raise SystemExit("SIGKILL")
        self.survive -= 1

    def write_many(self, writes):
        self._one_more()
        return super().write_many(writes)

    def claim_many(self, claims, now_ms):
        self._one_more()
        super().claim_many(claims, now_ms)


@pytest.mark.parametrize("survive", [0, 1, 2])
def test_a_kill_between_the_batch_writes_counts_no_alert_twice(survive):
    # A (p0) opens I; the process is killed after `survive` of the batch's two write requests. The restarted process
    # happens to poll p1 first: C, two hours later, opens K (nothing cached, no open incident within the hour).
    # Then A's message is delivered again; K, the key's latest incident, knows nothing of it. A must end up
    # counted once, in one incident, whichever writes had landed.
    settings = IncidentSettings(attach_window_s=3600)
    backend = KilledAfterWrites(survive)
    first = _positioned(1, settings, T0)
    if survive < 2:
        with pytest.raises(SystemExit):
            IncidentStore(backend, settings, Clock()).record_batch([first])
    else:  # both landed; killed before the commit
        IncidentStore(backend, settings, Clock()).record_batch([first])
    backend.survive = 1_000
    restarted = IncidentStore(backend, settings, Clock())

    later = replace(_positioned(2, settings, T0 + 2 * 3_600_000), position=("siem.alerts", 1, 1))
    restarted.record_batch([later])
    restarted.record_batch([first])
    restarted.record_batch([replace(first, position=("siem.alerts", 0, 9))])  # produced again by the detect stage
    incidents = [Incident.from_doc(doc) for doc, _ in backend.docs.values()]
    listed = [alert for incident in incidents for alert in incident.alert_ids]
    assert sorted(listed) == ["alert-1", "alert-2"], "each alert listed by exactly one incident"
    assert sum(incident.alert_count for incident in incidents) == 2


def _correlation(key: str, ts_ms: int, match_id: str) -> Signal:
    return Signal(key=key, timestamp_ms=ts_ms, level="high", rule_id="corr-brute", rule_name="Brute force",
                  kind="correlation", alert_id=match_id, alert_ids=("alert-x",))


@pytest.mark.parametrize("successor_opened_after_restart", [False, True])
def test_a_replayed_correlation_match_is_not_counted_by_the_keys_later_incident(successor_opened_after_restart):
    # A correlation match (no claim, no message position) goes to I. Two hours later an alert of the same key opens
    # J: before the kill (I refuses it, J inherits what I took) or after the restart (nothing cached, no incident
    # of the key within the hour). The match is decided again on the replay, with the same id: J, the key's latest
    # incident, must know that I took it.
    settings = IncidentSettings(attach_window_s=3600)
    backend = MemoryBackend()
    alert = _positioned(2, settings, T0 + 2 * 3_600_000)
    match = _correlation(alert.key, T0, "match-1")
    store = IncidentStore(backend, settings, Clock())
    store.record_batch([match])
    if not successor_opened_after_restart:
        store.record_batch([alert])
    restarted = IncidentStore(backend, settings, Clock())
    if successor_opened_after_restart:
        restarted.record_batch([alert])
    restarted.record_batch([match])
    incidents = [Incident.from_doc(doc) for doc, _ in backend.docs.values()]
    assert len(incidents) == 2
    assert sorted(i for incident in incidents for i in incident.correlation_ids) == ["match-1"]
    assert sum(incident.alert_count for incident in incidents) == 2
