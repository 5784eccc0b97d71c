"""Pid files, liveness, stopping process groups and the shared service life cycle, with tiny fake services."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from siem.config import StackSettings
from siem.errors import StackError
from stack.base import ManagedService
from stack.process import (
    PidFile,
    file_lock,
    group_members,
    pid_alive,
    port_open,
    process_matches,
    start_detached,
    stop_process,
    tail,
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_pid_file_round_trip(tmp_path: Path) -> None:
    pid_file = PidFile(tmp_path / "sub" / "svc.pid")
    assert pid_file.read() is None
    pid_file.write(1234)
    assert pid_file.read() == 1234
    assert pid_file.path.read_text() == "1234\n"
    pid_file.remove()
    assert pid_file.read() is None
    pid_file.remove()  # removing twice is fine


@pytest.mark.parametrize("content", ["", "abc", "-5", "0", "12 34", "\xff"])
def test_pid_file_garbage_reads_as_none(tmp_path: Path, content: str) -> None:
    path = tmp_path / "svc.pid"
    path.write_bytes(content.encode("latin-1"))
    assert PidFile(path).read() is None


def test_liveness_of_own_and_dead_process() -> None:
    import os

    assert pid_alive(os.getpid())
    assert not pid_alive(_dead_pid())


def test_zombie_child_is_not_alive() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        # Not waited for: the exited child stays a zombie, which must count as dead.
        assert _wait(lambda: not pid_alive(proc.pid))
    finally:
        proc.wait()


def test_detached_process_is_not_our_child(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    pid = start_detached([sys.executable, "-c", "print('hi')"], env={}, cwd=tmp_path, log_path=log)
    assert _wait(lambda: not pid_alive(pid))
    assert log.read_text() == "hi\n"


def test_start_failure_is_a_stack_error(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="cannot start /nonexistent/java"):
        start_detached(["/nonexistent/java"], env={}, cwd=tmp_path, log_path=tmp_path / "out.log")


def test_marker_guards_against_recycled_pid(tmp_path: Path) -> None:
    pid = start_detached(
        [sys.executable, "-c", "import time; time.sleep(30)", "marker-abc"],
        env={},
        cwd=tmp_path,
        log_path=tmp_path / "out.log",
    )
    try:
        assert process_matches(pid, "marker-abc")
        assert not process_matches(pid, "some-other-service")
        assert group_members(pid) == [pid]
    finally:
        stop_process(pid, timeout_s=5)
    assert not pid_alive(pid)


def test_stop_kills_whole_group_and_escalates(tmp_path: Path) -> None:
    # A parent that ignores SIGTERM and a child in the same group, like a launcher script and its JVM.
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    log = tmp_path / "out.log"
    pid = start_detached([sys.executable, "-c", script], env={}, cwd=tmp_path, log_path=log)
    assert _wait(lambda: "ready" in log.read_text())
    assert len(group_members(pid)) == 2
    assert stop_process(pid, timeout_s=0.5, poll_s=0.05) is True
    assert group_members(pid) == []


def test_stop_of_dead_pid_is_a_no_op() -> None:
    assert stop_process(_dead_pid(), timeout_s=1) is False


def test_port_open(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert port_open("127.0.0.1", server.getsockname()[1])
    assert not port_open("127.0.0.1", _free_port(), timeout_s=0.2)


def test_tail_returns_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 2) == "line 98\nline 99"
    assert "does not exist" in tail(tmp_path / "missing.log")


def test_file_lock_is_reentrant_across_sequential_uses(tmp_path: Path) -> None:
    for _ in range(2):
        with file_lock(tmp_path / "stack.lock"):
            pass


def _wait(predicate, timeout_s: float = 10.0) -> bool:
    from stack.process import wait_for

    return wait_for(predicate, timeout_s, poll_s=0.05)


class FakeService(ManagedService):
    """A Python process that listens on a port: enough to exercise the shared life cycle."""

    name = "fake"

    def __init__(self, settings: StackSettings, port: int, *, crash: bool = False) -> None:
        self.messages: list[str] = []
        super().__init__(settings, self.messages.append, Path(sys.prefix))
        self._port = port
        self.crash = crash

    @property
    def port(self) -> int:
        return self._port

    def resolve(self) -> None:
        pass

    def prepare(self) -> None:
        self.ensure_dirs(self.logs_dir)

    def command(self) -> list[str]:
        if self.crash:
            return [sys.executable, "-c", "import sys; print('boom: bad config'); sys.exit(3)", "fake-svc"]
        code = (
            "import socket, sys, time\n"
            "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
            "time.sleep(120)\n"
        )
        return [sys.executable, "-c", code, str(self._port), "fake-svc"]

    def environment(self) -> dict[str, str]:
        return {}

    def marker(self) -> str:
        return "fake-svc"

    def probe(self) -> bool:
        return port_open("127.0.0.1", self._port, timeout_s=0.2)


@pytest.fixture
def settings(tmp_path: Path) -> StackSettings:
    return StackSettings(home=tmp_path, start_timeout_s=10, stop_timeout_s=5)


def test_service_life_cycle_is_idempotent(settings: StackSettings) -> None:
    service = FakeService(settings, _free_port())
    try:
        assert service.launch() is True
        service.wait_ready()
        pid = service.pid_file.read()
        assert pid is not None and service.status().healthy
        assert service.launch() is False  # second up: detected as running, nothing started
        assert service.pid_file.read() == pid
        assert any("already running" in m for m in service.messages)
    finally:
        service.stop()
    status = service.status()
    assert not status.running and not status.healthy and status.pid is None
    assert not service.pid_file.path.exists()
    service.stop()  # stopping when nothing runs is fine
    assert service.messages[-1] == "fake: not running"


def test_stale_pid_file_is_cleaned_on_launch(settings: StackSettings) -> None:
    service = FakeService(settings, _free_port())
    service.pid_file.write(_dead_pid())
    assert service.running_pid() is None
    assert "stale" in service.status().detail
    try:
        assert service.launch() is True
        service.wait_ready()
        assert any("stale pid file" in m for m in service.messages)
    finally:
        service.stop()


def test_stale_pid_file_is_cleaned_on_stop(settings: StackSettings) -> None:
    service = FakeService(settings, _free_port())
    service.pid_file.write(_dead_pid())
    service.stop()
    assert not service.pid_file.path.exists()


def test_foreign_process_on_port_is_reported(settings: StackSettings) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        service = FakeService(settings, other.getsockname()[1])
        with pytest.raises(StackError, match="already in use"):
            service.launch()


def test_crash_during_start_reports_log_tail(settings: StackSettings) -> None:
    service = FakeService(settings, _free_port(), crash=True)
    service.launch()
    with pytest.raises(StackError, match="exited during start-up") as info:
        service.wait_ready()
    assert "boom: bad config" in str(info.value)
    assert not service.pid_file.path.exists()
