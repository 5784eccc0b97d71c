"""Garbage-collector settings for the long-running pipeline process.

The process keeps a large, fixed set of objects for its whole life: the compiled rule set, pySigma's rule objects
and the parsers' tables, ~440,000 objects the cyclic collector tracks. Every full (generation 2) collection walks
all of them with the interpreter lock held, 140-240 ms each; the end-to-end benchmark's 10 s phase had four
(560 ms, each a pause of every stage). What the pipeline makes per record is short-lived and freed by reference
counting, so the young generations find next to nothing either.

Once everything long-lived is built, it is moved out of the collector's view (``gc.freeze``), and the youngest
generation is collected every 20,000 allocations instead of 700. Measured in bench_e2e's end-to-end phase: time
in the collector 725 ms -> 12 ms, the benchmark process's CPU 7.50 -> 6.47 s.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


class LongLivedObjects:
    """``settle`` when the service has built its long-lived state, ``release`` when it stops."""

    def __init__(self) -> None:
        self._saved_threshold: tuple[int, int, int] | None = None

    def settle(self) -> None:
        gc.collect()  # what is garbage now must not be frozen: frozen objects are never collected
        gc.freeze()
        if self._saved_threshold is None:
            self._saved_threshold = gc.get_threshold()
        _, middle, old = self._saved_threshold
        gc.set_threshold(YOUNG_THRESHOLD, middle, old)

    def refreeze(self) -> None:
        """A rule reload replaced part of the long-lived set. The old rules' reference cycles can only be freed by
        the collector, which does not look at frozen objects: thaw, collect (one full collection, once per
        reload), freeze again."""
        gc.unfreeze()
        self.settle()

    def release(self) -> None:
        """Hand everything back to the collector (a process that builds services again, e.g. tests, must not keep
        the old ones frozen) and restore the thresholds."""
        gc.unfreeze()
        if self._saved_threshold is not None:
            gc.set_threshold(*self._saved_threshold)
            self._saved_threshold = None
