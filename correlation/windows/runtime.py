"""Wall-clock timer around the engine: apscheduler calls ``engine.advance(clock.now_ms())``.

The engine is not thread-safe; the timer job and the consumer must share ``lock`` (the consumer loop
holds it while it calls ``process``). Matches decided by the timer go to ``sink``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from correlation.windows.clock import Clock, SystemClock
from correlation.windows.engine import CorrelationEngine
from correlation.windows.messages import CorrelationMatch

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
        self._scheduler: BackgroundScheduler | None = None

    def tick(self) -> list[CorrelationMatch]:
        """One timer run (also what tests call directly)."""
        with self.lock:
            matches = self.engine.advance(self.clock.now_ms())
        if matches:
            self.sink(matches)
        return matches

    def start(self) -> None:
        scheduler = BackgroundScheduler(timezone="UTC")
        scheduler.add_job(self.tick, "interval", seconds=self.interval_s, id="correlation-timer",
                          max_instances=1, coalesce=True)
        scheduler.start()
        self._scheduler = scheduler

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
