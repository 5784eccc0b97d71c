"""What the host must provide for the stack: a JDK, and (when we are root) an unprivileged service user."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

from siem.errors import StackError

from .process import RunAs


def find_java_home(configured: Path | None) -> Path:
    """The configured JDK, else the one owning the ``java`` on PATH (symlinks resolved)."""
    if configured is not None:
        home = configured
    else:
        java = shutil.which("java")
        if java is None:
            raise StackError("no `java` on PATH; install a JDK 17+ or set SIEM_STACK__JAVA_HOME")
        home = Path(java).resolve().parent.parent
    if not (home / "bin" / "java").is_file():
        raise StackError(f"{home} is not a JDK (no bin/java); fix SIEM_STACK__JAVA_HOME")
    return home


def _lookup_user(name: str) -> RunAs | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def ensure_system_user(name: str) -> RunAs:
    """Look up ``name``, creating it as a no-login system user when missing (needs root)."""
    user = _lookup_user(name)
    if user is not None:
        return user
    useradd = shutil.which("useradd")
    if useradd is None:
        raise StackError(f"user {name!r} is missing and `useradd` is not available to create it")
    result = subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
        check=False,
    )
    user = _lookup_user(name)
    if user is None:
        raise StackError(f"cannot create user {name!r} (exit {result.returncode}): {result.stderr.strip()}")
    return user


def _groups_of(user: RunAs) -> set[int]:
    return {user.gid} | {g.gr_gid for g in grp.getgrall() if user.name in g.gr_mem}


def can_traverse(path: Path, user: RunAs) -> bool:
    """Whether ``user`` has search (x) permission on directory ``path``, judged from its mode bits."""
    info = path.stat()
    if info.st_uid == user.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in _groups_of(user):
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def check_traversable(path: Path, user: RunAs) -> None:
    """Fail clearly when ``user`` cannot reach ``path`` because an ancestor directory blocks it."""
    for ancestor in reversed(path.resolve().parents):
        if not can_traverse(ancestor, user):
            raise StackError(
                f"user {user.name!r} cannot traverse {ancestor}, so it cannot reach {path}. "
                f"Run `chmod o+x {ancestor}` or move the stack home (SIEM_STACK__HOME) somewhere reachable."
            )


def chown_tree(path: Path, user: RunAs, *, skip_if_owned: bool = False) -> None:
    """Give ``path`` and everything below it to ``user``.

    The walk is bottom-up, so the top directory changes owner last: with ``skip_if_owned`` (used for the
    large, read-only distribution) an owned top means an earlier run finished the whole tree.
    """
    if skip_if_owned and path.stat().st_uid == user.uid:
        return
    for root, dirs, files in os.walk(path, topdown=False):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)
        os.chown(root, user.uid, user.gid)
