"""Wall-clock timer around the engine: apscheduler calls ``engine.advance(clock.now_ms())``.

The engine is not thread-safe; the timer job and the consumer must share ``lock`` (the consumer loop
holds it while it calls ``process``). Matches decided by the timer go to ``sink``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from correlation.windows.clock import Clock, SystemClock
from correlation.windows.engine import CorrelationEngine
from correlation.windows.messages import CorrelationMatch
from siem.scheduling import Job, JobScheduler

MatchSink = Callable[[list[CorrelationMatch]], None]


class CorrelationTimer:
    def __init__(
        self,
        engine: CorrelationEngine,
        sink: MatchSink,
        interval_s: float = 5.0,
        clock: Clock | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self.engine = engine
        self.sink = sink
        self.interval_s = interval_s
        self.clock = clock or SystemClock()
        self.lock = lock or threading.Lock()
        self._scheduler = JobScheduler([Job("correlation-timer", self.tick, interval_s)])

    def tick(self) -> list[CorrelationMatch]:
        """One timer run (also what tests call directly)."""
        with self.lock:
            matches = self.engine.advance(self.clock.now_ms())
        if matches:
            self.sink(matches)
        return matches

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        self._scheduler.stop()
