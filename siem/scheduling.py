"""Periodic jobs on an apscheduler background scheduler: the one wrapper the service's jobs (retention, rule
reload, silent sources) and the correlation timer share.

A run that raises is handed to ``on_failure`` (by default: logged) and the job runs again at its next interval;
a job never runs twice at once, and runs that were missed while one was slow are merged into one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)

FailureHandler = Callable[[str, Exception], None]


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[[], object]
    interval_s: float
    at_start: bool = False  # also once right away (retention: a pipeline restarted daily still cleans up)


def _log_failure(name: str, exc: Exception) -> None:
    log.error("scheduled job %s failed", name, exc_info=exc)


class JobScheduler:
    def __init__(self, jobs: list[Job], on_failure: FailureHandler = _log_failure) -> None:
        self.jobs = jobs
        self._on_failure = on_failure
        self._scheduler: BackgroundScheduler | None = None

    def _guarded(self, job: Job) -> Callable[[], None]:
        def run() -> None:
            try:
                job.run()
            except Exception as exc:  # noqa: BLE001 - e.g. Elasticsearch unreachable: the next run retries
                self._on_failure(job.name, exc)

        return run

    def start(self) -> None:
        if not self.jobs:
            return
        scheduler = BackgroundScheduler(timezone="UTC")
        for job in self.jobs:
            scheduler.add_job(self._guarded(job), "interval", seconds=job.interval_s, id=job.name, max_instances=1,
                              coalesce=True)
            if job.at_start:
                scheduler.add_job(self._guarded(job), id=f"{job.name}-at-start", max_instances=1)
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        """Stop; waits for a run in progress."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
