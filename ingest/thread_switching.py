"""How often the interpreter hands its lock from one thread to another, for the pipeline process.

The stage threads parse and match with the interpreter lock held, for whole poll batches. The threads that keep
Elasticsearch and Kafka busy need the lock only briefly: the bulk worker to read an answer and send the next
request, kafka-python's I/O threads to take a fetch response. Waiting behind a busy stage, each waits up to the
switch interval (CPython's default: 5 ms) after its socket is ready, and Elasticsearch sits idle meanwhile.

Measured in ``bench/bench_e2e.py --skip-latency`` (five paired runs, 2026-11-23): 5 ms 59.2-61.3% of the ceiling,
1 ms 63.5-77.1%; 0.5 ms 60.8-64.3% and 0.2 ms 56.6-57.7% (two runs each): shorter than that, the switches
themselves cost more than the waits they save.
"""

from __future__ import annotations

import sys


class SwitchInterval:
    """``apply`` when the service starts, ``restore`` when it stops (a process that embeds it gets its own back)."""

    def __init__(self, milliseconds: float) -> None:
        self._seconds = milliseconds / 1000
        self._saved: float | None = None

    def apply(self) -> None:
        if self._saved is None:
            self._saved = sys.getswitchinterval()
        sys.setswitchinterval(self._seconds)

    def restore(self) -> None:
        if self._saved is not None:
            sys.setswitchinterval(self._saved)
            self._saved = None
