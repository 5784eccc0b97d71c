"""LocalStack wiring without starting anything: statuses, addresses, stale pid files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import stack.services as stack_services
from siem.config import StackSettings
from stack.services import LocalStack


@pytest.fixture
def fake_jdk(tmp_path: Path) -> Path:
    (tmp_path / "jdk" / "bin").mkdir(parents=True)
    (tmp_path / "jdk" / "bin" / "java").touch()
    return tmp_path / "jdk"


def test_status_of_a_stack_that_never_ran(tmp_path: Path, fake_jdk: Path) -> None:
    stack = LocalStack(StackSettings(home=tmp_path / "home", java_home=fake_jdk), report=lambda _m: None)
    statuses = stack.status()
    assert [(s.name, s.pid, s.running, s.healthy) for s in statuses] == [
        ("kafka", None, False, False),
        ("elasticsearch", None, False, False),
    ]
    assert [s.port for s in statuses] == [19092, 19200]
    assert stack.kafka_bootstrap == "127.0.0.1:19092"
    assert stack.elasticsearch_url == "http://127.0.0.1:19200"


def test_down_when_nothing_runs_cleans_stale_pid_files(tmp_path: Path, fake_jdk: Path) -> None:
    messages: list[str] = []
    stack = LocalStack(StackSettings(home=tmp_path, java_home=fake_jdk), report=messages.append)
    stack.kafka.pid_file.write(999_999_999)  # beyond pid_max: certainly not a live process
    stack.down()
    assert not stack.kafka.pid_file.path.exists()
    assert "kafka: not running; removing stale pid file" in messages
    assert "elasticsearch: not running" in messages


def test_relative_home_is_made_absolute(fake_jdk: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stack_services, "_blocked_for_others", lambda path: None)
    stack = LocalStack(StackSettings(home=Path("rel"), java_home=fake_jdk))
    assert stack.settings.home == tmp_path / "rel"
    assert stack.kafka.properties_file.is_absolute()


def test_home_under_a_private_directory_moves_to_a_reachable_one_when_root(
    fake_jdk: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    messages: list[str] = []
    stack = LocalStack(StackSettings(home=private / "checkout" / ".stack", java_home=fake_jdk), messages.append)
    assert stack.settings.home.parent == Path("/var/tmp")
    assert stack.settings.home.name.startswith("siem-stack-")
    assert any("is private to root" in m for m in messages)
    # the same checkout always maps to the same place (warm restarts keep their cache)
    again = LocalStack(StackSettings(home=private / "checkout" / ".stack", java_home=fake_jdk), messages.append)
    assert again.settings.home == stack.settings.home
