"""The service's garbage-collector settings: long-lived objects frozen while it runs, everything handed back after."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from ingest.gc_tuning import YOUNG_THRESHOLD, LongLivedObjects


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def gc_state() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_settle_freezes_the_live_objects_and_release_restores_everything(gc_state: None) -> None:
    before = gc.get_threshold()
    long_lived = LongLivedObjects()
    long_lived.settle()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, before[1], before[2])
    long_lived.release()
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == before


def test_garbage_at_settle_is_collected_not_frozen(gc_state: None) -> None:
    garbage = Node()
    ref = weakref.ref(garbage)
    del garbage
    LongLivedObjects().settle()
    assert ref() is None


def test_a_reload_lets_the_collector_free_what_the_old_rules_held(gc_state: None) -> None:
    long_lived = LongLivedObjects()
    old_rules = Node()
    ref = weakref.ref(old_rules)
    long_lived.settle()  # old_rules is live, so frozen
    del old_rules  # swapped out by a reload: garbage, in a cycle
    gc.collect()
    assert ref() is not None, "a frozen cycle is never collected"
    long_lived.refreeze()
    assert ref() is None
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
