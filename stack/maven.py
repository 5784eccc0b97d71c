"""Resolve artifacts from Maven Central into the stack's cache with the ``mvn`` on PATH.

Each resolved artifact set lands in its own directory, built under a ``.partial`` name and renamed when
complete, so an interrupted download is never mistaken for a cached one. A warm cache never runs Maven.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from siem.errors import StackError

from .process import tail

COMPLETE_MARKER = ".complete"


@dataclass(frozen=True, slots=True)
class Coordinates:
    """``groupId:artifactId:version`` (optionally ``type``) of one Maven artifact."""

    group_id: str
    artifact_id: str
    version: str
    type: str = "jar"

    def __str__(self) -> str:
        return f"{self.group_id}:{self.artifact_id}:{self.version}:{self.type}"


def render_pom(dependencies: Sequence[Coordinates], name: str = "siem-stack-runtime") -> str:
    """A throwaway ``pom`` project whose only purpose is to list the dependencies to copy."""
    deps = "\n".join(
        "    <dependency>"
        f"<groupId>{escape(d.group_id)}</groupId>"
        f"<artifactId>{escape(d.artifact_id)}</artifactId>"
        f"<version>{escape(d.version)}</version>"
        + (f"<type>{escape(d.type)}</type>" if d.type != "jar" else "")
        + "</dependency>"
        for d in dependencies
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.siem.stack</groupId>
  <artifactId>{escape(name)}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
</project>
"""


class MavenResolver:
    """Runs ``mvn`` with a local repository inside the cache, so a fresh machine needs no ~/.m2."""

    def __init__(self, cache_dir: Path, java_home: Path | None = None) -> None:
        self.cache_dir = cache_dir
        self.local_repo = cache_dir / "m2"
        self.java_home = java_home

    @staticmethod
    def is_complete(target: Path) -> bool:
        return (target / COMPLETE_MARKER).is_file()

    def copy_dependencies(self, dependencies: Sequence[Coordinates], target: Path) -> Path:
        """Copy the runtime closure of ``dependencies`` into ``target/libs``; returns that directory."""
        if not self.is_complete(target):
            partial = self._fresh_partial(target)
            (partial / "pom.xml").write_text(render_pom(dependencies), encoding="utf-8")
            self._run(
                ["dependency:copy-dependencies", "-DincludeScope=runtime", f"-DoutputDirectory={partial / 'libs'}"],
                cwd=partial,
            )
            self._commit(partial, target)
        return target / "libs"

    def unpack(self, artifact: Coordinates, target: Path) -> Path:
        """Unpack an archive artifact (zip) into ``target``; returns ``target``."""
        if not self.is_complete(target):
            partial = self._fresh_partial(target)
            self._run(
                ["dependency:unpack", f"-Dartifact={artifact}", f"-DoutputDirectory={partial}"],
                cwd=partial,
            )
            self._commit(partial, target)
        return target

    def _fresh_partial(self, target: Path) -> Path:
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        return partial

    @staticmethod
    def _commit(partial: Path, target: Path) -> None:
        (partial / COMPLETE_MARKER).touch()
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)

    def _run(self, goals: list[str], cwd: Path) -> None:
        mvn = shutil.which("mvn")
        if mvn is None:
            raise StackError("Maven (mvn) is not on PATH; install Maven 3.8+ to resolve the local stack")
        env = dict(os.environ)
        if self.java_home is not None:
            env["JAVA_HOME"] = str(self.java_home)
        log_path = cwd / "mvn.log"
        argv = [mvn, "-q", "-B", f"-Dmaven.repo.local={self.local_repo}", *goals]
        with open(log_path, "wb") as log:
            result = subprocess.run(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            raise StackError(
                f"Maven failed (exit {result.returncode}): {' '.join(argv)}\n--- {log_path} ---\n{tail(log_path)}"
            )
