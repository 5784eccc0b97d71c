"""Pid files, starting detached processes, probing ports and stopping process groups.

Every service is started as the leader of a new session, so its pid is also its process group id: stopping
the group also stops the children a launcher script spawned (Elasticsearch's CLI forks the server JVM).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from siem.errors import StackError


@dataclass(frozen=True, slots=True)
class RunAs:
    """An unprivileged identity a service is started as (Elasticsearch refuses to run as root)."""

    name: str
    uid: int
    gid: int


class PidFile:
    """A file holding the pid of one running service."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> int | None:
        """The recorded pid, or None when there is no file or it does not hold a positive integer."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except (FileNotFoundError, UnicodeDecodeError):
            return None
        if not text.isdigit() or int(text) <= 0:
            return None
        return int(text)

    def write(self, pid: int) -> None:
        # Write then rename, so a reader never sees a half-written pid.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(f"{pid}\n", encoding="ascii")
        tmp.replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _proc_stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may itself contain spaces)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    """True when the process exists and is not a zombie (a dead child nobody reaped yet)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    fields = _proc_stat_fields(pid)
    if fields is None:
        return True  # no procfs: trust kill(0)
    return fields[0] != "Z"


def _reap(pid: int) -> None:
    # When this Python process started the service (tests), its exit leaves a zombie until reaped.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def cmdline(pid: int) -> str:
    """The command line of a process, arguments joined by spaces; empty when unknown."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", errors="replace").strip()


def process_matches(pid: int, marker: str) -> bool:
    """Alive and its command line contains ``marker``: guards against a recycled pid."""
    return pid_alive(pid) and marker in cmdline(pid)


def group_members(pgid: int) -> list[int]:
    """Live pids whose process group is ``pgid``."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _proc_stat_fields(int(entry.name))
        # After the state come ppid and pgrp.
        if fields and len(fields) > 2 and fields[0] != "Z" and fields[2] == str(pgid):
            members.append(int(entry.name))
    return members


def port_open(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


# Runs in a short-lived intermediate Python process: it starts the service and exits at once, so the
# service is re-parented to init. The caller then holds no Popen object (whose garbage collection warns
# while the service still runs) and never accumulates zombies of services that exit.
_LAUNCHER = """
import json, os, resource, subprocess, sys
spec = json.load(sys.stdin)
# Brokers and search engines keep many files open: raise the soft limit as far as the hard one allows.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
wanted = 65535 if hard == resource.RLIM_INFINITY else min(65535, hard)
if soft != resource.RLIM_INFINITY and soft < wanted:
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
user = spec["uid"] is not None
with open(spec["log"], "ab") as log:
    proc = subprocess.Popen(spec["argv"], env=spec["env"], cwd=spec["cwd"], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            user=spec["uid"], group=spec["gid"], extra_groups=[] if user else None)
sys.stdout.write(str(proc.pid))
sys.stdout.flush()
os._exit(0)
"""


def start_detached(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    run_as: RunAs | None = None,
) -> int:
    """Start ``argv`` in a new session, detached from us, output appended to ``log_path``; returns its pid."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": list(argv),
        "env": dict(env),
        "cwd": str(cwd),
        "log": str(log_path),
        "uid": run_as.uid if run_as else None,
        "gid": run_as.gid if run_as else None,
    }
    result = subprocess.run(
        [sys.executable, "-c", _LAUNCHER],
        input=json.dumps(spec).encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    output = result.stdout.decode(errors="replace").strip()
    if result.returncode != 0 or not output.isdigit():
        detail = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise StackError(f"cannot start {argv[0]}: {detail[0]}")
    return int(output)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        # We started the service as a session leader, so its pgid equals its pid.
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            raise StackError(f"cannot signal pid {pid}: {exc}") from exc


def _group_gone(pid: int) -> bool:
    return not pid_alive(pid) and not group_members(pid)


def stop_process(pid: int, timeout_s: float, poll_s: float = 0.2) -> bool:
    """SIGTERM the process group, wait up to ``timeout_s``, then SIGKILL. True when it needed SIGKILL."""
    if not pid_alive(pid) and not group_members(pid):
        return False
    _signal_group(pid, signal.SIGTERM)
    if wait_for(lambda: _group_gone(pid), timeout_s, poll_s):
        return False
    _signal_group(pid, signal.SIGKILL)
    for member in group_members(pid):  # members whose leader already died cannot be reached via killpg
        with contextlib.suppress(OSError):
            os.kill(member, signal.SIGKILL)
    if not wait_for(lambda: _group_gone(pid), 10.0, poll_s):
        raise StackError(f"pid {pid} survived SIGKILL")
    return True


def wait_for(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.5) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout_s`` passed (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a (log) file, or a note that it does not exist."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two ``siem stack up`` runs do not start services twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
