"""Build hook: compiles the per-event hot path (the parsers and the Sigma engine) to C extensions with mypyc.

Everything else about the package is declared in pyproject.toml. The compiled modules are drop-in replacements for
the .py files next to them (same behaviour, checked by the same tests): the parsers about a third faster on the
parser benchmark, the detect stage ~10 µs per record cheaper with the Sigma engine compiled too (session 11,
``bench/bench_stage_loop.py``). ``SIEM_PURE_PYTHON=1`` skips compiling, e.g. where no C compiler is installed.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
COMPILED_PACKAGES = ["parsers", "correlation/detection"]
# Modules of those packages that stay interpreted.
INTERPRETED_MODULES = {
    "correlation/detection/cli.py",  # a command, not the hot path
    # Its weak dictionaries are keyed by its own closures, and a closure compiled by mypyc does not clear the weak
    # references to it when freed (mypyc issue 1102): the dead entries stay, and the unit tests crashed in the
    # garbage collector.
    "correlation/detection/compiler.py",
    # A compiled class cannot be weakly referenced, and a rule reload must let the old CompiledRule objects go
    # (tests/unit/test_detector.py). It runs when rules load, not per event.
    "correlation/detection/loader.py",
}


def compiled_modules() -> list[str]:
    found = {str(p.relative_to(ROOT)) for pkg in COMPILED_PACKAGES for p in (ROOT / pkg).glob("*.py")}
    return sorted(found - INTERPRETED_MODULES)


def ext_modules() -> list[object]:
    if os.environ.get("SIEM_PURE_PYTHON") == "1":
        return []
    from mypyc.build import mypycify

    # Type-checked here without the project's mypy config (its pydantic plugin and the third-party packages are not
    # installed in the isolated build environment); `mypy --strict` with that config is part of the test suite.
    options = ["--config-file=", "--ignore-missing-imports", "--follow-imports=silent"]
    return list(mypycify(options + compiled_modules(), opt_level="3"))


setup(ext_modules=ext_modules())
