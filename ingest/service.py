"""Assembles the running service from settings: setup (topics, templates), stages, health, shutdown.

`siem run` runs both stages in one process (threads, one consumer group each); `--stage` runs one. Each stage
owns its consumer, producer and bulk sink, so a slow stage never blocks the other's commits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from elasticsearch import Elasticsearch

from correlation.detection.engine import RuleSetHolder
from indexing.bulk import BulkSink
from indexing.client import ElasticsearchBulkTransport, make_client
from indexing.templates import install_templates
from ingest.correlation_rules import CorrelationsFollower
from ingest.detect import DetectStage
from ingest.detector import SigmaDetector
from ingest.gc_tuning import LongLivedObjects
from ingest.health import ConnectivityProbe, HealthServer
from ingest.jobs import service_jobs, service_scheduler
from ingest.kafka_io import (
    KafkaEndOffsets,
    KafkaMessageProducer,
    KafkaRecordConsumer,
    MessageProducer,
    Partition,
    RecordConsumer,
    ensure_topics,
    pipeline_topics,
)
from ingest.runner import StageRunner
from ingest.silence import SilentSourceWatcher
from parsers.registry import build_parsers, parsers_for_topics
from siem.config import Settings
from siem.errors import ConfigError
from siem.scheduling import JobScheduler

log = logging.getLogger(__name__)

StageName = Literal["detect", "correlate"]


def setup(settings: Settings, client: Elasticsearch | None = None) -> dict[str, list[str]]:
    """Create topics and install index templates (idempotent)."""
    created = ensure_topics(settings.kafka, pipeline_topics(settings.kafka))
    es = client or make_client(settings.elasticsearch)
    templates = install_templates(es, settings.elasticsearch)
    return {"topics_created": created, "templates": templates}


def make_sink(settings: Settings, client: Elasticsearch) -> BulkSink:
    p = settings.pipeline
    return BulkSink(
        ElasticsearchBulkTransport(client),
        max_actions=p.bulk_max_actions,
        max_bytes=p.bulk_max_bytes,
        flush_interval_s=p.bulk_flush_interval_s,
        backoff_max_s=p.bulk_backoff_max_s,
        background=True,  # one bulk request in flight while the stage keeps parsing and matching
    )


def build_detect_runner(
    settings: Settings,
    rules: RuleSetHolder,
    sink: BulkSink,
    *,
    consumer_factory: Callable[[Callable[[set[Partition]], None]], RecordConsumer] | None = None,
    producer: MessageProducer | None = None,
) -> StageRunner:
    """The detect stage's runner; the Kafka consumer and producer default to the settings' cluster (a benchmark
    replaces them: ``bench/bench_stage_loop.py``)."""
    parsers = parsers_for_topics(settings.kafka.raw_topics, build_parsers(settings.parsers))
    follower = CorrelationsFollower(rules, settings.correlation.entity_fields)
    router = follower.router(follower.current)
    detector = SigmaDetector(rules, router, settings.rules.alert_incident_level, follower)
    stage = DetectStage(
        parsers,
        detector,
        settings.elasticsearch,
        settings.pipeline,
        settings.kafka.alerts_topic,
        settings.kafka.dlq_topic,
    )

    def kafka_consumer(on_revoked: Callable[[set[Partition]], None]) -> KafkaRecordConsumer:
        return KafkaRecordConsumer(
            settings.kafka, list(settings.kafka.raw_topics), settings.kafka.detect_group_id, on_revoked
        )

    return StageRunner(
        "detect",
        consumer_factory or kafka_consumer,
        stage,
        sink,
        producer or KafkaMessageProducer(settings.kafka),
        poll_timeout_ms=settings.pipeline.poll_timeout_ms,
        poll_max_records=settings.pipeline.poll_max_records,
        shutdown_timeout_s=settings.pipeline.shutdown_timeout_s,
        eager_flush=settings.pipeline.bulk_eager_flush,
    )


@dataclass
class Service:
    """The running pipeline: stage runners in threads plus the health server."""

    settings: Settings
    runners: list[StageRunner]
    client: Elasticsearch
    stop_event: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    health: HealthServer | None = None
    jobs: JobScheduler = field(default_factory=lambda: JobScheduler([]))
    probe: ConnectivityProbe | None = None  # Kafka / Elasticsearch reachability for /healthz
    closers: list[Callable[[], None]] = field(default_factory=list)  # after the stages: job-owned clients
    started_at: float = field(default_factory=time.time)
    errors: list[str] = field(default_factory=list)
    long_lived: LongLivedObjects = field(default_factory=LongLivedObjects)  # rules etc.: out of the GC's walks

    def start(self) -> None:
        # The health server binds first: a taken port fails the start before any record is consumed.
        port = self.settings.pipeline.metrics_port
        if port:
            host = self.settings.pipeline.metrics_host
            try:
                self.health = HealthServer(host, port, self.health_report)
            except OSError as exc:
                raise ConfigError(
                    f"pipeline.metrics_port: cannot listen on {host}:{port} ({exc.strerror}); is another "
                    "`siem run` running? Stop it, or set SIEM_PIPELINE__METRICS_PORT (0 disables /metrics)."
                ) from None
            self.health.start()
        # Everything long-lived is built now (rules, parsers, clients): see ingest.gc_tuning.
        self.long_lived.settle()
        self.jobs.start()
        for runner in self.runners:
            thread = threading.Thread(target=self._run_stage, args=(runner,), name=f"stage-{runner.name}")
            thread.start()
            self.threads.append(thread)

    def _run_stage(self, runner: StageRunner) -> None:
        try:
            runner.run(self.stop_event)
        except Exception as exc:  # a dead stage must stop the process so a supervisor restarts it
            log.exception("stage %s failed", runner.name)
            self.errors.append(f"{runner.name}: {type(exc).__name__}: {exc}")
            self.stop_event.set()

    def stop(self, timeout_s: float | None = None) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + (timeout_s or self.settings.pipeline.shutdown_timeout_s + 15)
        self.jobs.stop()  # waits for a job that is running (they are short and bounded)
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for close in self.closers:
            try:
                close()
            except Exception:  # noqa: BLE001 - shutting down: report and go on
                log.exception("closing a job client failed")
        self.closers.clear()
        if self.health:
            self.health.stop()
        self.long_lived.release()

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    def health_report(self) -> dict[str, Any]:
        stages: dict[str, Any] = {}
        healthy = not self.errors
        now = time.monotonic()
        for runner in self.runners:
            sink = runner.sink
            last_ok = None if sink.last_success_at is None else round(now - sink.last_success_at, 1)
            stages[runner.name] = {
                "records": runner.stats.records,
                "indexed": runner.stats.indexed,
                "alerts": runner.stats.alerts,
                "dlq": runner.stats.dlq,
                "pending": sink.pending,
                "elasticsearch_ok": not sink.blocked,
                "last_error": sink.last_error if sink.blocked else None,
                "seconds_since_last_bulk": last_ok,
                "assigned_partitions": len(runner.assignment()),
            }
            healthy = healthy and not sink.blocked
        report: dict[str, Any] = {"healthy": healthy}
        if self.probe is not None:
            kafka, elasticsearch = self.probe.kafka, self.probe.elasticsearch
            # Not checked yet (None) is not a failure: the first probe runs as the service starts.
            report["healthy"] = healthy and kafka.ok is not False and elasticsearch.ok is not False
            report["kafka"] = kafka.report(now)
            report["elasticsearch"] = elasticsearch.report(now)
        report.update(
            uptime_s=round(time.time() - self.started_at, 1),
            consumers_assigned=all(len(runner.assignment()) > 0 for runner in self.runners),
            stages=stages,
            errors=self.errors,
        )
        return report


def build_service(settings: Settings, stages: tuple[StageName, ...] = ("detect", "correlate")) -> Service:
    client = make_client(settings.elasticsearch)
    setup(settings, client)
    rules = RuleSetHolder.from_settings(settings.rules)
    runners: list[StageRunner] = []
    closers: list[Callable[[], None]] = []
    silence: SilentSourceWatcher | None = None
    if "detect" in stages:
        detect = build_detect_runner(settings, rules, make_sink(settings, client))
        runners.append(detect)
        if settings.pipeline.silent_sources:
            end_offsets = KafkaEndOffsets(settings.kafka)
            producer = KafkaMessageProducer(settings.kafka)
            closers += [end_offsets.close, producer.close]
            silence = SilentSourceWatcher(
                settings, end_offsets, lambda partition: partition in detect.assignment(), client, producer
            )
    if "correlate" in stages:
        from ingest.correlate import build_correlate_runner

        runners.append(build_correlate_runner(settings, rules, client))
    probe_offsets = KafkaEndOffsets(settings.kafka)  # its own consumer: the probe job may run beside the check above
    closers.append(probe_offsets.close)
    probed_partition = (next(iter(settings.kafka.raw_topics)), 0)
    probe_client = client.options(request_timeout=5, max_retries=0)

    def kafka_answers() -> None:
        probe_offsets.of([probed_partition])  # raises when it does not

    def elasticsearch_answers() -> None:
        probe_client.cluster.health()  # raises when it does not

    probe = ConnectivityProbe(kafka_answers, elasticsearch_answers)
    long_lived = LongLivedObjects()
    jobs = service_scheduler(
        service_jobs(settings, client, rules, silence, probe, long_lived)
    )
    return Service(settings, runners, client, jobs=jobs, probe=probe, closers=closers, long_lived=long_lived)
