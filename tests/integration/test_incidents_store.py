"""Incident store against the real local Elasticsearch: create, attach, optimistic concurrency, timeline."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from correlation.incidents.builder import Signal, signal_from_alert
from correlation.incidents.es_backend import ElasticsearchBackend
from correlation.incidents.model import Incident, Status, change_status
from correlation.incidents.store import Claim, IncidentFilter, IncidentStore, IncidentWrite, VersionConflict
from siem.config import IncidentSettings

pytestmark = pytest.mark.integration

T0 = 1_735_732_800_000


def sig(doc: dict[str, Any], settings: IncidentSettings, level: str = "high") -> Signal:
    signal = signal_from_alert(doc, settings, level)
    assert signal is not None
    return signal


def mut(change: Callable[..., None], *args: Any) -> Callable[[Incident], bool]:
    def mutate(incident: Incident) -> bool:
        change(incident, *args)
        return True

    return mutate
ARN = "arn:aws:iam::123456789012:user/mallory"


def alert_doc(n: int, ts_ms: int) -> dict[str, Any]:
    return {
        "@timestamp": ts_ms,
        "event": {"kind": "alert", "id": f"alert-{n}", "severity": 73},
        "rule": {"id": "r-console", "name": "Console login without MFA"},
        "siem": {"level": "high", "source_event": {"id": f"event-{n}"}},
        "aws": {"cloudtrail": {"user_identity": {"arn": ARN}}},
        "source": {"ip": "203.0.113.5"},
    }


@pytest.fixture
def es(local_stack):
    client = Elasticsearch(local_stack.elasticsearch_url, request_timeout=30)
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield client, prefix
    client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True, allow_no_indices=True)


def test_incident_lifecycle_with_optimistic_concurrency(es):
    client, prefix = es
    settings = IncidentSettings()
    # As the correlate stage runs it: no refresh per write (the next process syncs before it searches).
    backend = ElasticsearchBackend(client, f"{prefix}-incidents", refresh=False)
    backend.ensure_index()
    pipeline = IncidentStore(backend, settings, lambda: T0)
    first = pipeline.record(sig(alert_doc(1, T0), settings, "high"))

    # stale write is refused by Elasticsearch (if_seq_no / if_primary_term)
    current = backend.get(first.id)
    assert current is not None
    doc, seq_no, term = current
    responder = IncidentStore(ElasticsearchBackend(client, f"{prefix}-incidents"), settings, lambda: T0 + 5)
    at = "2025-01-01T12:00:05Z"
    responder.update(first.id, mut(change_status, Status.ACKNOWLEDGED, "bob", at, "mine"))
    with pytest.raises(VersionConflict):
        backend.replace(first.id, doc, seq_no, term)

    # a new process (empty cache) finds the open incident by search and attaches, keeping bob's change
    restarted = IncidentStore(backend, settings, lambda: T0 + 10)
    merged = restarted.record(sig(alert_doc(2, T0 + 60_000), settings, "high"))
    assert merged.id == first.id
    assert (merged.alert_count, merged.status, merged.alert_ids) == (2, Status.ACKNOWLEDGED, ["alert-1", "alert-2"])
    assert [h.by for h in merged.history] == ["bob"]
    # replay of the same alert: no double count
    assert restarted.record(sig(alert_doc(2, T0 + 60_000), settings, "high")).alert_count == 2

    found = restarted.search(IncidentFilter(statuses=["acknowledged"], entity=ARN, min_severity="high"))
    assert [inc.id for inc in found] == [first.id]
    assert restarted.search(IncidentFilter(statuses=["resolved"])) == []


def test_pipeline_writes_on_its_last_version_and_merges_a_responders_change(es):
    # The correlate stage attaches alerts on top of the version it last wrote (no GET per alert: a real-time GET
    # of an unrefreshed document refreshes the shard). A responder's write in between makes Elasticsearch refuse
    # that write; the store then reads the current version and keeps both changes.
    client, prefix = es
    settings = IncidentSettings()
    backend = ElasticsearchBackend(client, f"{prefix}-incidents", refresh=False)
    backend.ensure_index()
    pipeline = IncidentStore(backend, settings, lambda: T0)
    first = pipeline.record(sig(alert_doc(1, T0), settings))
    for n in (2, 3):
        pipeline.record(sig(alert_doc(n, T0 + n * 1000), settings))
    assert (pipeline.stats.reads, pipeline.stats.attached) == (0, 2)

    responder = IncidentStore(ElasticsearchBackend(client, f"{prefix}-incidents"), settings, lambda: T0 + 5)
    responder.update(first.id, mut(change_status, Status.ACKNOWLEDGED, "bob", "2025-01-01T12:00:05Z", "mine"))
    merged = pipeline.record(sig(alert_doc(4, T0 + 4000), settings))
    assert (pipeline.stats.conflicts, pipeline.stats.reads) == (1, 1)
    stored = backend.get(first.id)
    assert stored is not None
    assert Incident.from_doc(stored[0]) == merged
    assert (merged.alert_count, merged.status, [h.by for h in merged.history]) == (4, Status.ACKNOWLEDGED, ["bob"])


def test_next_owner_finds_an_unrefreshed_incident(es):
    # The correlate stage writes incidents without a refresh; a process taking over the key right after the write
    # (well within the 1 s refresh interval) must still attach to it instead of opening a duplicate.
    client, prefix = es
    settings = IncidentSettings()
    backend = ElasticsearchBackend(client, f"{prefix}-incidents", refresh=False)
    backend.ensure_index()
    client.indices.put_settings(index=f"{prefix}-incidents", settings={"index": {"refresh_interval": "60s"}})
    first = IncidentStore(backend, settings, lambda: T0).record(sig(alert_doc(1, T0), settings, "high"))
    hidden = client.search(index=f"{prefix}-incidents", query={"term": {"key": first.key}})
    assert hidden["hits"]["total"]["value"] == 0  # acknowledged but not searchable: the case the sync is for
    successor = IncidentStore(backend, settings, lambda: T0 + 10)
    merged = successor.record(sig(alert_doc(2, T0 + 60_000), settings, "high"))
    assert merged.id == first.id and merged.alert_ids == ["alert-1", "alert-2"]
    client.indices.refresh(index=f"{prefix}-incidents")
    assert client.count(index=f"{prefix}-incidents")["count"] == 1


def test_timeline_reads_alert_and_event_indices(es):
    client, prefix = es
    settings = IncidentSettings()
    backend = ElasticsearchBackend(client, f"{prefix}-incidents")
    backend.ensure_index()
    store = IncidentStore(backend, settings, lambda: T0)
    incident = store.record(sig(alert_doc(1, T0), settings, "high"))
    client.index(index=f"{prefix}-alerts-2025.01.01", id="alert-1", refresh=True,
                 document={"@timestamp": "2025-01-01T12:00:01Z", "rule": {"name": "Console login"}})
    client.index(index=f"{prefix}-events-cloudtrail-2025.01.01", id="event-1", refresh=True,
                 document={"@timestamp": "2025-01-01T12:00:00Z", "event": {"action": "ConsoleLogin"}})
    timeline = store.timeline(incident, f"{prefix}-alerts-*", f"{prefix}-events-*")
    assert [(d["kind"], d["_id"]) for d in timeline] == [("event", "event-1"), ("alert", "alert-1")]


def test_batch_writes_and_claims_on_the_real_node(es):
    client, prefix = es
    backend = ElasticsearchBackend(
        client, f"{prefix}-incidents", refresh=False, claims_index=lambda day: f"{prefix}-incident-claims-{day}"
    )
    backend.ensure_index()
    first, second = backend.write_many(
        [IncidentWrite("i1", {"id": "i1", "n": 1}, None), IncidentWrite("i2", {"id": "i2", "n": 1}, None)]
    )
    assert first is not None and second is not None
    # a create of an existing incident and a write on a stale version conflict; a write on the current one succeeds
    results = backend.write_many([
        IncidentWrite("i1", {"id": "i1", "n": 9}, None),
        IncidentWrite("i2", {"id": "i2", "n": 2}, second),
        IncidentWrite("i2", {"id": "i2", "n": 3}, second),
    ])
    assert results[0] is None and results[1] is not None and results[2] is None
    found = backend.get("i2")
    assert found is not None and found[0]["n"] == 2
    # claims: a day whose index does not exist yet reads as unclaimed; claims are seen after a sync
    assert backend.claimed_many([("a1", "2025.01.01"), ("a2", "2025.01.02")]) == {}
    claims = [Claim("a1", "2025.01.01", "i1", "siem.alerts/3", 17), Claim("a2", "2025.01.02", "i2")]
    backend.claim_many(claims, T0)
    backend.sync()
    assert backend.claimed_many([("a1", "2025.01.01"), ("a2", "2025.01.02"), ("a3", "2025.01.02")]) == {
        "a1": claims[0], "a2": claims[1]}


def test_a_batch_of_alerts_costs_two_writes_on_the_real_node(es):
    client, prefix = es
    settings = IncidentSettings()
    backend = ElasticsearchBackend(
        client, f"{prefix}-incidents", refresh=False, claims_index=lambda day: f"{prefix}-incident-claims-{day}"
    )
    backend.ensure_index()
    store = IncidentStore(backend, settings, lambda: T0)
    calls: list[str] = []
    original = client.bulk

    def counting_bulk(*args: Any, **kwargs: Any) -> Any:
        calls.append("bulk")
        return original(*args, **kwargs)

    client.bulk = counting_bulk
    placed = store.record_batch([sig(alert_doc(n, T0 + n * 1000), settings) for n in range(50)])
    assert len(set(placed)) == 1 and calls == ["bulk", "bulk"]
    found = backend.get(placed[0])
    assert found is not None and found[0]["alert_count"] == 50
    # the same batch again (a replay): nothing is counted twice
    IncidentStore(backend, settings, lambda: T0).record_batch([sig(alert_doc(n, T0 + n * 1000), settings)
                                                               for n in range(50)])
    found = backend.get(placed[0])
    assert found is not None and found[0]["alert_count"] == 50
