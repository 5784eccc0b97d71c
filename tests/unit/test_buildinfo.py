"""The per-event parsers and Sigma engine run compiled (mypyc, setup.py) unless the install opted out; staleness is
detected."""

from __future__ import annotations

import importlib
import os
import pkgutil
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import correlation.detection
import parsers
from siem.buildinfo import is_compiled, stale_extensions

SUFFIX = EXTENSION_SUFFIXES[0]


def test_every_parser_module_is_compiled_unless_the_install_opted_out() -> None:
    names = ["parsers"] + [info.name for info in pkgutil.iter_modules(parsers.__path__, "parsers.")]
    assert len(names) > 10
    compiled = {name: is_compiled(importlib.import_module(name)) for name in names}
    expected = os.environ.get("SIEM_PURE_PYTHON") != "1"
    assert {name for name, flag in compiled.items() if flag != expected} == set()


def test_the_sigma_engine_is_compiled_but_for_the_three_modules_setup_leaves_out() -> None:
    package = correlation.detection
    prefix = package.__name__ + "."
    names = [package.__name__] + [info.name for info in pkgutil.iter_modules(package.__path__, prefix)]
    interpreted = {"correlation.detection.cli", "correlation.detection.compiler", "correlation.detection.loader"}
    compiled = {name for name in names if is_compiled(importlib.import_module(name))}
    expected = set(names) - interpreted if os.environ.get("SIEM_PURE_PYTHON") != "1" else set()
    assert len(names) > 8
    assert compiled == expected


def test_a_source_edited_after_the_build_is_reported_stale(tmp_path: Path) -> None:
    package = tmp_path / "pkg" / "sub"
    package.mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    extension, source = package / f"mod{SUFFIX}", package / "mod.py"
    extension.write_bytes(b"")
    source.write_text("")
    os.utime(extension, (1_000, 1_000))
    os.utime(source, (2_000, 2_000))
    assert stale_extensions(tmp_path) == [f"pkg/sub/mod{SUFFIX}"]
    os.utime(extension, (3_000, 3_000))
    assert stale_extensions(tmp_path) == []
