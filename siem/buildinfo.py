"""Which modules run as C extensions compiled by mypyc at install (see setup.py), and which compiled ones are stale.

Python imports an extension module in preference to the ``.py`` file next to it, so a compiled module that is older
than its source would silently run old code (an edited parser in a development checkout): the test suite refuses to
start on one, and the benchmarks say which build they measured.
"""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def is_compiled(module: ModuleType) -> bool:
    return (module.__file__ or "").endswith(tuple(EXTENSION_SUFFIXES))


def stale_extensions(root: Path = PROJECT_ROOT) -> list[str]:
    """Compiled modules under ``root`` whose ``.py`` source changed after they were built (relative paths)."""
    stale = []
    packages = [path for path in root.iterdir() if (path / "__init__.py").exists()]  # not .venv or .stack
    for package in packages:
        for suffix in EXTENSION_SUFFIXES:
            for extension in package.rglob(f"*{suffix}"):
                source = extension.with_name(extension.name[: -len(suffix)] + ".py")
                if source.exists() and source.stat().st_mtime > extension.stat().st_mtime:
                    stale.append(str(extension.relative_to(root)))
    return sorted(stale)
