"""The local stack as one object: Kafka + Elasticsearch, brought up and down together.

Used by ``siem stack``, the integration tests and ``siem run``::

    stack = LocalStack(load_settings().stack)
    stack.up()                      # idempotent; downloads only on a cold cache
    stack.kafka_bootstrap, stack.elasticsearch_url
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from siem.config import StackSettings

from .base import ManagedService, Reporter, ServiceStatus
from .elasticsearch import ElasticsearchService
from .host import find_java_home
from .kafka import KafkaService
from .process import file_lock

__all__ = ["LocalStack", "ServiceStatus", "boot"]


def _print_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _blocked_for_others(path: Path) -> Path | None:
    """The first ancestor of ``path`` that other users cannot traverse (e.g. /root, mode 700), if any."""
    for ancestor in reversed(path.parents):
        if ancestor.exists() and not ancestor.stat().st_mode & stat.S_IXOTH:
            return ancestor
    return None


def _reachable_home(settings: StackSettings, report: Reporter) -> StackSettings:
    """As root, Elasticsearch runs as an unprivileged user that must reach the stack home. A checkout under a
    private directory (a clone in /root, say) cannot be reached; rather than fail, keep the stack in a
    per-checkout directory under /var/tmp, which that user can traverse."""
    if os.geteuid() != 0:
        return settings
    blocker = _blocked_for_others(settings.home)
    if blocker is None:
        return settings
    digest = hashlib.sha256(str(settings.home).encode()).hexdigest()[:12]
    home = Path("/var/tmp") / f"siem-stack-{digest}"
    report(f"stack: {blocker} is private to root, so the stack lives in {home} instead of {settings.home}")
    return settings.model_copy(update={"home": home})


def boot(services: list[ManagedService]) -> None:
    """Launch each service right after resolving it, then wait for all of them concurrently (so each "ready in
    N s" is that service's own start-up time); the first failure is raised."""
    for service in services:
        service.resolve()
        service.launch()
    with ThreadPoolExecutor(max_workers=len(services)) as pool:
        futures = [pool.submit(service.wait_ready) for service in services]
    errors = [exc for exc in (future.exception() for future in futures) if exc is not None]
    if errors:
        raise errors[0]


class LocalStack:
    """Kafka (KRaft) and Elasticsearch on loopback, resolved from Maven Central into ``settings.home``."""

    def __init__(self, settings: StackSettings, report: Reporter = _print_progress) -> None:
        if not settings.home.is_absolute():
            # Services run with their logs directory as cwd, so every path written into configs is absolute.
            settings = settings.model_copy(update={"home": settings.home.resolve()})
        settings = _reachable_home(settings, report)
        self.settings = settings
        self.report = report
        self._java_home: Path | None = None
        self._kafka: KafkaService | None = None
        self._elasticsearch: ElasticsearchService | None = None

    @property
    def java_home(self) -> Path:
        if self._java_home is None:
            self._java_home = find_java_home(self.settings.java_home)
        return self._java_home

    @property
    def kafka(self) -> KafkaService:
        if self._kafka is None:
            self._kafka = KafkaService(self.settings, self.report, self.java_home)
        return self._kafka

    @property
    def elasticsearch(self) -> ElasticsearchService:
        if self._elasticsearch is None:
            self._elasticsearch = ElasticsearchService(self.settings, self.report, self.java_home)
        return self._elasticsearch

    @property
    def services(self) -> list[ManagedService]:
        return [self.kafka, self.elasticsearch]

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def elasticsearch_url(self) -> str:
        return self.elasticsearch.url

    def up(self) -> None:
        """Resolve, start what is not running, and wait until every service answers."""
        started = time.monotonic()
        self.settings.home.mkdir(parents=True, exist_ok=True)
        with file_lock(self.settings.home / "stack.lock"):
            # Elasticsearch, the slowest to boot, goes first and boots while Kafka is resolved and boots.
            boot([self.elasticsearch, self.kafka])
        self.report(
            f"stack ready in {time.monotonic() - started:.1f} s: kafka {self.kafka_bootstrap}, "
            f"elasticsearch {self.elasticsearch_url}"
        )

    def down(self) -> None:
        """Stop every service this stack started; fine when nothing runs."""
        self.settings.home.mkdir(parents=True, exist_ok=True)
        with file_lock(self.settings.home / "stack.lock"):
            for service in reversed(self.services):
                service.stop()

    def status(self) -> list[ServiceStatus]:
        return [service.status() for service in self.services]
