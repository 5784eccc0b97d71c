"""Suite-wide guard: never test a stale compiled module instead of the source next to it."""

from __future__ import annotations

import pytest

from siem.buildinfo import stale_extensions


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = stale_extensions()
    if stale:
        pytest.exit(f"compiled modules older than their source: {', '.join(stale)}; rebuild them with `make install`",
                    returncode=4)
