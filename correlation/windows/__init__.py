"""Sigma correlation rules evaluated on the alert stream (sliding event-time windows).

Pieces, each in its own module:

- :mod:`.clock`     the injected ``Clock`` (epoch ms) used by the timer wrapper and by tests
- :mod:`.rules`     pySigma ``SigmaCorrelationRule`` -> :class:`CompiledCorrelation` (plain, hashable data)
- :mod:`.messages`  :class:`CorrelationInput` (what goes on ``siem.alerts``), :class:`CorrelationMatch`, ids
- :mod:`.router`    matched base rule + field lookup -> inputs (aliases, group-by, value field)
- :mod:`.aggregate` the aggregate of a window per correlation type and the condition test
- :mod:`.engine`    windows per (correlation, group key): watermark, lateness, timers, eviction
- :mod:`.runtime`   apscheduler timer around the engine (wall clock -> ``engine.advance``)
"""
