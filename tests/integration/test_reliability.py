"""Lossless Kafka -> Elasticsearch under crashes and outages, with the real `siem run` process and real services.

* SIGKILL of the pipeline at random points while 100,000 mixed records flow: exactly the expected documents
  and alerts end up in Elasticsearch (ids compared as sets), none twice.
* Elasticsearch down for over a minute (on a private stack): `/healthz` says so the whole time, nothing is lost,
  the pipeline resumes on its own.
* Kafka restarted (private stack): nothing is lost, the pipeline keeps running.
* SIGTERM under load: exit 0 within the shutdown timeout, and the committed offsets cover exactly the records
  whose documents are indexed.

Every wait is bounded; every child process is stopped in ``finally``; the private stack is always stopped.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from ingest.service import setup
from siem.config import Settings
from stack.services import LocalStack
from tests.integration.pipeline_support import cleanup, committed_offsets, isolated_settings
from tests.integration.reliability_support import (
    Accounting,
    BackgroundProducer,
    PipelineProcess,
    Placed,
    RuleOracle,
    check_exact,
    check_incidents,
    detect_stage,
    doc_count,
    free_port,
    healthz,
    ids_in,
    log_path,
    make_corpus,
    pipeline_env,
    pipeline_process,
    private_stack_settings,
    produce_placed,
    remove_private_home,
    wait_until,
)

pytestmark = pytest.mark.integration

CRASH_RECORDS = 100_000
KILLS = 6
OUTAGE_S = 62.0
SHUTDOWN_TIMEOUT_S = 20.0


def _settings_for(stack: LocalStack) -> Settings:
    settings = isolated_settings()
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"bootstrap_servers": stack.kafka_bootstrap}),
            "elasticsearch": settings.elasticsearch.model_copy(update={"hosts": [stack.elasticsearch_url]}),
        }
    )


def _committed_total(settings: Settings) -> dict[tuple[str, int], int]:
    positions: dict[tuple[str, int], int] = {}
    for topic in settings.kafka.raw_topics:
        for partition, position in committed_offsets(settings, settings.kafka.detect_group_id, topic).items():
            positions[(topic, partition)] = position
    return positions


def _expected_positions(placed: list[Placed]) -> dict[tuple[str, int], int]:
    ends: dict[tuple[str, int], int] = {}
    for p in placed:
        key = (p.topic, p.partition)
        ends[key] = max(ends.get(key, 0), p.offset + 1)
    return ends


def _assert_exact(events: Accounting, alerts: Accounting, log_tail: str) -> None:
    detail = f"{events.summary()}; {alerts.summary()}\n--- pipeline log ---\n{log_tail}"
    assert not events.missing and not alerts.missing, f"lost documents: {detail}"
    assert not events.duplicates and not alerts.duplicates, f"duplicates: {detail}"
    assert not events.unexpected and not alerts.unexpected, f"unexpected documents: {detail}"
    assert events.exact and alerts.exact, detail


def _wait_all_indexed(
    es: Elasticsearch, settings: Settings, expected: int, timeout_s: float, process: PipelineProcess
) -> bool:
    events = f"{settings.elasticsearch.index_prefix}-events-*"

    def done() -> bool:
        assert process.alive(), f"pipeline exited\n{process.log_tail()}"
        return doc_count(es, events) >= expected

    return wait_until(done, timeout_s, interval_s=1.0)


def _finish(process: PipelineProcess, settings: Settings, placed: list[Placed], timeout_s: float) -> None:
    """Wait until every offset is committed, then stop gracefully (exit 0)."""
    ends = _expected_positions(placed)
    committed = wait_until(lambda: _committed_total(settings) == ends, timeout_s, interval_s=1.0)
    assert committed, f"offsets not committed: {_committed_total(settings)} != {ends}\n{process.log_tail()}"
    code = process.terminate(SHUTDOWN_TIMEOUT_S + 20)
    assert code == 0, f"graceful stop exited {code}\n{process.log_tail()}"


# ------------------------------------------------------------------------------------------------------------
# 1. crashes
# ------------------------------------------------------------------------------------------------------------
def test_sigkill_at_random_points_loses_and_duplicates_nothing(local_stack: LocalStack) -> None:
    started = time.monotonic()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    settings = isolated_settings()
    es = Elasticsearch(hosts=[local_stack.elasticsearch_url])
    setup(settings, es)
    records = make_corpus(CRASH_RECORDS, seed)
    oracle = RuleOracle(records)
    port = free_port()
    env = pipeline_env(settings, port, bulk_max_actions=2000, poll_max_records=2000, bulk_flush_interval_s=0.5)
    producer = BackgroundProducer(settings, records, chunk=5000, pause_s=1.0)
    kills: list[tuple[float, int]] = []  # (seconds since start, records the killed process had indexed)
    try:
        with pipeline_process(env, log_path("crash"), stage=None) as process:  # both stages: incidents too
            producer.start()
            for _ in range(KILLS):
                process.start()
                threshold = rng.randint(1500, 9000)

                def progressed(threshold: int = threshold) -> bool:
                    assert process.alive(), f"pipeline died on its own\n{process.log_tail()}"
                    return int(detect_stage(healthz(port)[1]).get("records", 0)) >= threshold

                assert wait_until(progressed, 60, interval_s=0.1), f"no progress\n{process.abort()}"
                time.sleep(rng.uniform(0.0, 1.0))  # somewhere between polls, bulks and commits
                stats = detect_stage(healthz(port)[1])
                process.kill()
                kills.append((time.monotonic() - started, int(stats.get("indexed", -1))))
            placed = producer.join(120)
            process.start()
            indexed = _wait_all_indexed(es, settings, len(placed), 180, process)
            assert indexed, (
                f"not everything indexed: {doc_count(es, settings.elasticsearch.index_prefix + '-events-*')}"
            )
            oracle.apply(placed)
            expected_in_incidents = len({a for p in placed for a in p.incident_alert_ids})
            assert wait_until(
                lambda: check_incidents(es, settings, placed).counted >= expected_in_incidents, 120, interval_s=1.0
            ), f"{check_incidents(es, settings, placed).summary()}\n{process.log_tail()}"
            time.sleep(2)  # anything still on its way would show up as a double count below
            _finish(process, settings, placed, 60)
        events, alerts = check_exact(es, settings, placed)
        incidents = check_incidents(es, settings, placed)
        elapsed = time.monotonic() - started
        print(
            f"\n[crash] seed {seed}: records {len(placed)}, kills {len(kills)} "
            f"(at s/indexed-by-victim: {[(round(t, 1), n) for t, n in kills]}), restarts {process.starts}, "
            f"elapsed {elapsed:.1f} s, events {events.actual}/{events.expected}, "
            f"alerts {alerts.actual}/{alerts.expected}, "
            f"losses {len(events.missing) + len(alerts.missing)}, "
            f"duplicates {sum(events.duplicates.values()) + sum(alerts.duplicates.values())}; "
            f"{incidents.summary()}"
        )
        _assert_exact(events, alerts, process.log_tail())
        assert incidents.exact, f"{incidents.summary()}\n{process.log_tail()}"
        assert incidents.expected > 500, "the corpus must open incidents"
        assert len(kills) >= 5
        assert alerts.expected > 1000, "the corpus must trigger alerts"
    finally:
        oracle.close()
        producer.stop()
        cleanup(es, settings)


# ------------------------------------------------------------------------------------------------------------
# 4. graceful shutdown
# ------------------------------------------------------------------------------------------------------------
def test_sigterm_under_load_commits_exactly_what_was_indexed(local_stack: LocalStack) -> None:
    started = time.monotonic()
    settings = isolated_settings()
    es = Elasticsearch(hosts=[local_stack.elasticsearch_url])
    setup(settings, es)
    records = make_corpus(30_000, 4242)
    oracle = RuleOracle(records)
    port = free_port()
    env = pipeline_env(settings, port, shutdown_timeout_s=SHUTDOWN_TIMEOUT_S, bulk_flush_interval_s=0.5)
    producer = BackgroundProducer(settings, records, chunk=1500, pause_s=1.0)
    prefix = settings.elasticsearch.index_prefix
    try:
        with pipeline_process(env, log_path("sigterm")) as process:
            process.start()

            def flowing(at_least: int) -> bool:
                assert process.alive(), process.log_tail()
                return int(detect_stage(healthz(port)[1]).get("assigned_partitions", 0)) > 0 and (
                    int(detect_stage(healthz(port)[1]).get("records", 0)) >= at_least
                )

            assert wait_until(lambda: flowing(0), 60, interval_s=0.2), process.log_tail()
            producer.start()

            assert wait_until(lambda: flowing(4000), 90, interval_s=0.1), process.log_tail()
            before = producer.sent
            stop_at = time.monotonic()
            code = process.terminate(SHUTDOWN_TIMEOUT_S + 20)
            shutdown_s = time.monotonic() - stop_at
            assert code == 0, f"exit code {code}\n{process.log_tail()}"
            assert shutdown_s < SHUTDOWN_TIMEOUT_S, f"shutdown took {shutdown_s:.1f} s"

            # Per partition: the committed position splits the records into indexed (below) and not (above).
            placed = producer.join(120)
            committed = _committed_total(settings)
            below = [p for p in placed if p.offset < committed.get((p.topic, p.partition), 0)]
            found = ids_in(es, f"{prefix}-events-*")
            assert sum(committed.values()) == len(below)
            assert len(below) < len(placed), "records must still be flowing when SIGTERM arrives"
            assert set(found) == {p.event_id for p in below}, (
                f"committed {sum(committed.values())} records, ES holds {len(found)} events: "
                f"indexed-but-uncommitted {len(set(found) - {p.event_id for p in below})}, "
                f"committed-but-missing {len({p.event_id for p in below} - set(found))}"
            )
            assert sum(found.values()) == len(found) == sum(committed.values())
            at_sigterm = (sum(committed.values()), before)

            process.start()
            assert _wait_all_indexed(es, settings, len(placed), 120, process), process.log_tail()
            _finish(process, settings, placed, 60)
        oracle.apply(placed)
        events, alerts = check_exact(es, settings, placed)
        print(
            f"\n[sigterm] records {len(placed)}, produced at SIGTERM ~{at_sigterm[1]}, committed = indexed at exit "
            f"{at_sigterm[0]}, shutdown {shutdown_s:.1f} s (exit 0), after restart events "
            f"{events.actual}/{events.expected}, alerts {alerts.actual}/{alerts.expected}, "
            f"losses {len(events.missing) + len(alerts.missing)}, duplicates {sum(events.duplicates.values())}, "
            f"elapsed {time.monotonic() - started:.1f} s"
        )
        _assert_exact(events, alerts, process.log_tail())
    finally:
        oracle.close()
        producer.stop()
        cleanup(es, settings)


# ------------------------------------------------------------------------------------------------------------
# 2 + 3. outages, on a private stack
# ------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def private_stack() -> Iterator[LocalStack]:
    """Kafka + Elasticsearch of our own (other ports, own home, shared artifact cache): stopping them cannot
    disturb the shared stack other tests use. Always stopped and removed at the end of the module."""
    stack = LocalStack(private_stack_settings())
    stack.down()  # left over from an aborted run
    remove_private_home()
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
        remove_private_home()


def test_elasticsearch_outage_is_reported_and_survived(private_stack: LocalStack) -> None:
    started = time.monotonic()
    settings = _settings_for(private_stack)
    es = Elasticsearch(hosts=[private_stack.elasticsearch_url])
    setup(settings, es)
    records = make_corpus(40_000, 777)
    oracle = RuleOracle(records)
    port = free_port()
    env = pipeline_env(settings, port, bulk_backoff_max_s=4, bulk_flush_interval_s=0.5)
    producer = BackgroundProducer(settings, records, chunk=1000, pause_s=1.0)  # still flowing during the outage
    polls: list[tuple[float, int, bool | None]] = []
    try:
        with pipeline_process(env, log_path("es-outage")) as process:
            process.start()
            producer.start()
            events_index = f"{settings.elasticsearch.index_prefix}-events-*"
            assert wait_until(lambda: doc_count(es, events_index) >= 3000, 90), process.log_tail()
            private_stack.elasticsearch.stop()
            down_at = time.monotonic()
            while time.monotonic() - down_at < OUTAGE_S:
                status, body = healthz(port)
                ok = detect_stage(body).get("elasticsearch_ok")
                polls.append((time.monotonic() - down_at, status, ok))
                assert process.alive(), f"pipeline died during the outage\n{process.log_tail()}"
                time.sleep(1.0)
            produced_during_outage = producer.sent
            private_stack.elasticsearch.launch()
            private_stack.elasticsearch.wait_ready()
            up_at = time.monotonic()
            outage_s = up_at - down_at

            def healthy() -> bool:
                status, body = healthz(port)
                return status == 200 and detect_stage(body).get("elasticsearch_ok") is True

            assert wait_until(healthy, 60, interval_s=0.2), f"/healthz did not recover\n{process.log_tail()}"
            health_recovered_s = time.monotonic() - up_at
            placed = producer.join(120)
            assert _wait_all_indexed(es, settings, len(placed), 120, process), process.log_tail()
            caught_up_s = time.monotonic() - up_at
            _finish(process, settings, placed, 60)
            assert process.starts == 1, "the pipeline resumed on its own, without a restart"
        oracle.apply(placed)
        events, alerts = check_exact(es, settings, placed)
        first_503 = next((t for t, status, ok in polls if status == 503 and ok is False), None)
        print(
            f"\n[es-outage] records {len(placed)} ({produced_during_outage} produced by the end of the outage), "
            f"outage {outage_s:.1f} s, /healthz 503 from +{first_503} s in {sum(s == 503 for _, s, _ in polls)}/"
            f"{len(polls)} polls, healthy again {health_recovered_s:.1f} s and caught up {caught_up_s:.1f} s after "
            f"ES was back, events {events.actual}/{events.expected}, alerts {alerts.actual}/{alerts.expected}, "
            f"losses {len(events.missing) + len(alerts.missing)}, duplicates {sum(events.duplicates.values())}, "
            f"elapsed {time.monotonic() - started:.1f} s"
        )
        assert outage_s >= 60
        assert first_503 is not None and first_503 < 15, f"/healthz never reported the outage: {polls}"
        after_first = [(t, s, ok) for t, s, ok in polls if t >= first_503]
        assert all(s == 503 and ok is False for _, s, ok in after_first), f"/healthz flapped: {after_first}"
        _assert_exact(events, alerts, process.log_tail())
    finally:
        oracle.close()
        producer.stop()
        cleanup(es, settings)


def test_kafka_restart_mid_run_loses_nothing(private_stack: LocalStack) -> None:
    started = time.monotonic()
    settings = _settings_for(private_stack)
    es = Elasticsearch(hosts=[private_stack.elasticsearch_url])
    setup(settings, es)
    before = make_corpus(30_000, 99)
    after = make_corpus(10_000, 100)
    oracle = RuleOracle([*before, *after])
    port = free_port()
    env = pipeline_env(settings, port, bulk_flush_interval_s=0.5, health_probe_interval_s=1)
    try:
        placed = produce_placed(settings, before)
        with pipeline_process(env, log_path("kafka-restart")) as process:
            process.start()
            events_index = f"{settings.elasticsearch.index_prefix}-events-*"
            assert wait_until(lambda: doc_count(es, events_index) >= 5000, 90), process.log_tail()
            private_stack.kafka.stop()
            down_at = time.monotonic()
            at_stop = doc_count(es, events_index)
            reported_down: list[float] = []  # /healthz polls during the outage that said Kafka is unreachable
            while time.monotonic() - down_at < 10:
                status, body = healthz(port)
                if status == 503 and body is not None and body.get("kafka", {}).get("reachable") is False:
                    reported_down.append(round(time.monotonic() - down_at, 1))
                time.sleep(0.5)
            assert process.alive(), f"pipeline died while Kafka was down\n{process.log_tail()}"
            assert reported_down, f"/healthz never reported Kafka unreachable\n{process.log_tail()}"
            private_stack.kafka.launch()
            private_stack.kafka.wait_ready()
            outage_s = time.monotonic() - down_at

            def kafka_reachable() -> bool:
                body = healthz(port)[1]
                return body is not None and body.get("kafka", {}).get("reachable") is True

            assert wait_until(kafka_reachable, 30, interval_s=0.5), f"/healthz kept Kafka down\n{process.log_tail()}"
            up_at = time.monotonic()
            placed += produce_placed(settings, after)
            assert _wait_all_indexed(es, settings, len(placed), 150, process), process.log_tail()
            caught_up_s = time.monotonic() - up_at
            _finish(process, settings, placed, 90)
            assert process.starts == 1, "the pipeline kept running through the Kafka restart"
        oracle.apply(placed)
        events, alerts = check_exact(es, settings, placed)
        print(
            f"\n[kafka-restart] records {len(placed)}, Kafka down {outage_s:.1f} s with {at_stop} events indexed, "
            f"/healthz said Kafka unreachable from +{reported_down[0]} s, "
            f"caught up {caught_up_s:.1f} s after Kafka was back, events {events.actual}/{events.expected}, "
            f"alerts {alerts.actual}/{alerts.expected}, losses {len(events.missing) + len(alerts.missing)}, "
            f"duplicates {sum(events.duplicates.values())}, elapsed {time.monotonic() - started:.1f} s"
        )
        _assert_exact(events, alerts, process.log_tail())
    finally:
        oracle.close()
        cleanup(es, settings)
