"""Shared fixtures of the integration suite: the real local stack (Kafka KRaft + Elasticsearch)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from siem.config import load_settings
from stack.services import LocalStack


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """Bring the local stack up (idempotent) and leave it running afterwards: the suite shares it.

    A stack that cannot start raises ``StackError``, which fails (never skips) every test that needs it.
    """
    stack = LocalStack(load_settings().stack)
    stack.up()
    yield stack
