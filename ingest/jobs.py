"""The service's scheduled jobs (one background scheduler per process): the /healthz reachability probe, index
retention, rule hot reload and silent-source detection. (The correlation timer runs with the correlate stage, on
the same kind of scheduler.)

A failing run is logged and counted in ``siem_failures_total{stage="jobs"}``; the next run tries again, and a job
never stops the stages.
"""

from __future__ import annotations

import logging

from elasticsearch import Elasticsearch

from correlation.detection.engine import RuleSetHolder
from indexing.retention import delete_expired
from ingest import metrics
from ingest.gc_tuning import LongLivedObjects
from ingest.health import ConnectivityProbe
from ingest.silence import SilentSourceWatcher
from siem.config import Settings
from siem.scheduling import Job, JobScheduler

log = logging.getLogger(__name__)


def count_failure(name: str, exc: Exception) -> None:
    log.warning("scheduled job %s failed: %s: %s", name, type(exc).__name__, exc)
    metrics.FAILED.labels("jobs", name, "job_error").inc()


def reload_rules(rules: RuleSetHolder, settings: Settings, long_lived: LongLivedObjects | None = None) -> bool:
    """Swap in the rule set if a rule file changed. As at start, a rule file that does not load is reported and
    left out (the others still load); a reload that loads nothing keeps the running set and says why."""
    swapped = rules.reload_if_changed(list(settings.rules.directories))
    if swapped:
        if long_lived is not None:
            long_lived.refreeze()  # the old rules go to the collector, the new ones out of its walks
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
    probe: ConnectivityProbe | None = None,
    long_lived: LongLivedObjects | None = None,
) -> list[Job]:
    """The jobs a process runs: the /healthz reachability probe, retention (when enabled), rule reload (both
    stages follow it: detection and correlation rules share the files), the silent-source check with a detect
    stage and sources to watch."""
    jobs: list[Job] = []
    if probe is not None:
        jobs.append(Job("health_probe", probe.check, settings.pipeline.health_probe_interval_s, at_start=True))
    if settings.pipeline.retention_interval_s > 0:
        jobs.append(
            Job("retention", lambda: delete_expired(client, settings.elasticsearch),
                settings.pipeline.retention_interval_s, at_start=True)
        )
    if rules is not None and settings.rules.reload_interval_s > 0:
        jobs.append(Job("rule_reload", lambda: reload_rules(rules, settings, long_lived),
                        settings.rules.reload_interval_s))
    if silence is not None:
        jobs.append(Job("silent_sources", silence.check, settings.pipeline.silent_check_interval_s))
    return jobs


def service_scheduler(jobs: list[Job]) -> JobScheduler:
    return JobScheduler(jobs, on_failure=count_failure)
