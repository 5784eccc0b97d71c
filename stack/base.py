"""The life cycle every local service shares: resolve, prepare, launch, wait until ready, stop, report.

A concrete service says *what* to run (artifacts, config files, command line, readiness probe); this class
owns *how*: pid file bookkeeping, stale pid cleanup, port conflicts, start-up timeouts with log tails.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from siem.config import StackSettings
from siem.errors import StackError

from .process import (
    PidFile,
    RunAs,
    pid_alive,
    port_open,
    process_matches,
    start_detached,
    stop_process,
    tail,
    wait_for,
)

Reporter = Callable[[str], None]
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """What ``siem stack status`` shows for one service."""

    name: str
    pid: int | None
    port: int
    running: bool
    healthy: bool
    detail: str = ""


class ManagedService(ABC):
    """One local service, started detached and tracked by a pid file under ``<home>/<name>/``."""

    name: str = "service"

    def __init__(self, settings: StackSettings, report: Reporter, java_home: Path) -> None:
        self.settings = settings
        self.report = report
        self.java_home = java_home
        self.home = settings.home / self.name
        self.logs_dir = self.home / "logs"
        self.console_log = self.logs_dir / "console.log"
        self.pid_file = PidFile(self.home / f"{self.name}.pid")
        self._launched_at: float | None = None

    # --- what a concrete service provides -------------------------------------------------------------
    @property
    @abstractmethod
    def port(self) -> int:
        """The client port whose answer means the service is up."""

    @abstractmethod
    def resolve(self) -> None:
        """Make the artifacts available in the cache (network only on a cold cache)."""

    @abstractmethod
    def prepare(self) -> None:
        """Write config, create/format data dirs, fix permissions; runs right before a launch."""

    @abstractmethod
    def command(self) -> list[str]: ...

    @abstractmethod
    def environment(self) -> dict[str, str]: ...

    @abstractmethod
    def marker(self) -> str:
        """A string in the service's command line, to tell our process from a recycled pid."""

    @abstractmethod
    def probe(self) -> bool:
        """True when the service answers real requests (not only accepts TCP connections)."""

    def run_as(self) -> RunAs | None:
        return None

    def log_files(self) -> list[Path]:
        """Logs whose tail explains a failed start, most useful first."""
        return [self.console_log]

    # --- shared life cycle ----------------------------------------------------------------------------
    def running_pid(self) -> int | None:
        pid = self.pid_file.read()
        if pid is not None and process_matches(pid, self.marker()):
            return pid
        return None

    def launch(self) -> bool:
        """Start the service unless it already runs; True when a new process was started."""
        pid = self.running_pid()
        if pid is not None:
            self.report(f"{self.name}: already running (pid {pid})")
            return False
        if self.pid_file.path.exists():
            self.report(f"{self.name}: removing stale pid file {self.pid_file.path}")
            self.pid_file.remove()
        if port_open(LOOPBACK, self.port):
            raise StackError(
                f"{self.name}: port {self.port} is already in use by a process this stack did not start "
                f"(no live pid in {self.pid_file.path}); stop it or configure another port"
            )
        self.prepare()
        self.report(f"{self.name}: starting on {LOOPBACK}:{self.port} (log: {self.console_log})")
        pid = start_detached(
            self.command(),
            env=self.environment(),
            cwd=self.logs_dir,
            log_path=self.console_log,
            run_as=self.run_as(),
        )
        self.pid_file.write(pid)
        self._launched_at = time.monotonic()
        return True

    def wait_ready(self) -> None:
        """Block until the probe passes; on death or timeout stop what is left and raise with the log tail."""
        pid = self.pid_file.read()
        if pid is None:
            raise StackError(f"{self.name}: not started (no pid file {self.pid_file.path})")
        started = self._launched_at or time.monotonic()

        def ready() -> bool:
            if not pid_alive(pid):
                self.pid_file.remove()
                raise StackError(f"{self.name}: exited during start-up\n{self._log_tails()}")
            return self.probe()

        if not wait_for(ready, self.settings.start_timeout_s, poll_s=0.5):
            # Only a process this call started is ours to clean up; an older one may hold data worth a look.
            note = "stopped it" if self._launched_at is not None else "left it running"
            if self._launched_at is not None:
                self.stop()
            raise StackError(
                f"{self.name}: not ready after {self.settings.start_timeout_s:.0f} s ({note})\n{self._log_tails()}"
            )
        if self._launched_at is not None:
            self.report(f"{self.name}: ready in {time.monotonic() - started:.1f} s (pid {pid})")
            self._launched_at = None
        else:
            self.report(f"{self.name}: healthy (pid {pid})")

    def stop(self) -> None:
        pid = self.running_pid()
        if pid is None:
            if self.pid_file.path.exists():
                self.report(f"{self.name}: not running; removing stale pid file")
                self.pid_file.remove()
            else:
                self.report(f"{self.name}: not running")
            return
        self.report(f"{self.name}: stopping pid {pid}")
        started = time.monotonic()
        killed = stop_process(pid, self.settings.stop_timeout_s)
        self.pid_file.remove()
        how = "killed (SIGKILL after timeout)" if killed else "stopped"
        self.report(f"{self.name}: {how} in {time.monotonic() - started:.1f} s")

    def status(self) -> ServiceStatus:
        pid = self.running_pid()
        if pid is None:
            stale = " (stale pid file)" if self.pid_file.path.exists() else ""
            return ServiceStatus(self.name, None, self.port, running=False, healthy=False, detail=f"stopped{stale}")
        healthy = self.probe()
        return ServiceStatus(
            self.name, pid, self.port, running=True, healthy=healthy, detail="ok" if healthy else "not answering"
        )

    def _log_tails(self) -> str:
        parts = [f"--- tail of {path} ---\n{tail(path)}" for path in self.log_files() if path.exists()]
        return "\n".join(parts) or f"(no log written; see {self.logs_dir})"

    @staticmethod
    def ensure_dirs(*dirs: Path) -> None:
        for directory in dirs:
            os.makedirs(directory, exist_ok=True)
