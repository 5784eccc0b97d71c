"""The service's scheduled jobs (apscheduler, one background scheduler per process): index retention, rule hot
reload and silent-source detection. (The correlation timer has its own scheduler, with the correlate stage.)

Every job is guarded: a failing run is logged and counted, and the next run tries again; a job never stops the
stages. Each job runs at most once at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler
from elasticsearch import Elasticsearch

from correlation.detection.engine import RuleSetHolder
from indexing.retention import delete_expired
from ingest import metrics
from ingest.silence import SilentSourceWatcher
from siem.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[], object]
    interval_s: float
    at_start: bool = False  # also once right away (retention: a pipeline restarted daily still cleans up)


def guarded(job: Job) -> Callable[[], None]:
    def run() -> None:
        try:
            job.run()
        except Exception as exc:  # noqa: BLE001 - e.g. Elasticsearch unreachable: the next run retries
            log.warning("scheduled job %s failed: %s: %s", job.name, type(exc).__name__, exc)
            metrics.FAILED.labels("jobs", job.name, "job_error").inc()

    return run


def reload_rules(rules: RuleSetHolder, settings: Settings) -> bool:
    """Swap in the rule set if a rule file changed. As at start, a rule file that does not load is reported and
    left out (the others still load); a reload that loads nothing keeps the running set and says why."""
    swapped = rules.reload_if_changed(list(settings.rules.directories))
    if swapped:
        problems = rules.current.problems
        log.info("rules reloaded: %d rules, %d files with problems", len(rules.current.rules), len(problems))
        for problem in problems:
            log.warning("rule file left out: %s", problem)
    elif rules.last_error:
        log.warning("rule reload failed, the running rules stay: %s", rules.last_error)
    return swapped


def service_jobs(
    settings: Settings,
    client: Elasticsearch,
    rules: RuleSetHolder | None,
    silence: SilentSourceWatcher | None,
) -> list[Job]:
    """The jobs a process runs: retention always (when enabled), rule reload with a detect stage, the silent-source
    check with a detect stage and sources to watch."""
    jobs: list[Job] = []
    if settings.pipeline.retention_interval_s > 0:
        jobs.append(
            Job("retention", lambda: delete_expired(client, settings.elasticsearch),
                settings.pipeline.retention_interval_s, at_start=True)
        )
    if rules is not None and settings.rules.reload_interval_s > 0:
        jobs.append(Job("rule_reload", lambda: reload_rules(rules, settings), settings.rules.reload_interval_s))
    if silence is not None:
        jobs.append(Job("silent_sources", silence.check, settings.pipeline.silent_check_interval_s))
    return jobs


class JobScheduler:
    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self._scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        if not self.jobs:
            return
        scheduler = BackgroundScheduler(timezone="UTC")
        for job in self.jobs:
            scheduler.add_job(guarded(job), "interval", seconds=job.interval_s, id=job.name, max_instances=1,
                              coalesce=True)
            if job.at_start:
                scheduler.add_job(guarded(job), id=f"{job.name}-at-start", max_instances=1)
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
