"""Correlation windows per (correlation rule, group key), in event time.

Semantics (documented here because tests and operators depend on them):

- **Watermark** = highest alert time seen − ``allowed_lateness_ms``; ``advance(now_ms)`` (the timer) also
  moves it to ``now_ms − allowed_lateness_ms`` so windows close when no alerts arrive. It never goes back.
- **Late alerts**: time < watermark -> not correlated, counted in ``stats.late`` (the alert and its event
  are still indexed by the detect stage; only correlation ignores them).
- **gt / gte** (and extended temporal conditions without ``not``) are decided when an alert arrives, on
  *sliding* windows: for every alert e the window is every buffered alert in ``[e.time − timespan,
  e.time]``; an alert that arrives out of order is checked in each window ending at or after it. So a burst
  that straddles a minute (or any) boundary is found.
- **lt / lte / eq / neq** (and conditions with ``not``, i.e. absence) can only be decided when a window
  closes: the window starts at the group's first unconsumed alert and closes once the watermark passes
  ``start + timespan``; the timer closes it even if no further alert arrives.
- After a match, the alerts of the matched window are consumed: later alerts start a new window and
  alerts arriving with a time inside the consumed window are counted in ``stats.suppressed``.
- Match id = hash(rule id, group key, window start): replaying the same inputs in the same order into a
  fresh engine yields the same ids (``emit=False`` rebuilds state without returning matches).
- State is bounded: alerts older than ``watermark − timespan`` are dropped, a group without alerts is
  evicted, and a group holds at most ``max_events_per_group`` alerts (oldest dropped, counted).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from correlation.windows.aggregate import judge
from correlation.windows.messages import CorrelationInput, CorrelationMatch, match_id
from correlation.windows.router import CorrelationRouter
from correlation.windows.rules import CompiledCorrelation

NEVER = -(2**62)


@dataclass
class EngineStats:
    received: int = 0
    late: int = 0
    suppressed: int = 0
    unknown_rule: int = 0
    matches: int = 0
    evicted_groups: int = 0
    overflow_dropped: int = 0
    chained_inputs: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)


class _Group:
    """Alerts of one group key, ordered by time. ``due`` is when the wheel should look at it again."""

    __slots__ = ("ts", "items", "consumed_until", "due")

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.items: list[CorrelationInput] = []
        self.consumed_until = NEVER
        self.due = NEVER


class CorrelationEngine:
    def __init__(
        self,
        correlations: Sequence[CompiledCorrelation],
        allowed_lateness_ms: int = 15 * 60_000,
        max_events_per_group: int = 10_000,
        max_evidence: int = 100,
        router: CorrelationRouter | None = None,
        chain_locally: bool = True,
        timer_resolution_ms: int = 1000,
    ) -> None:
        self.rules = {c.id: c for c in correlations}
        self.allowed_lateness_ms = allowed_lateness_ms
        self.max_events_per_group = max_events_per_group
        self.max_evidence = max_evidence
        self.router = router
        self.chain_locally = chain_locally
        self.stats = EngineStats()
        self.watermark = NEVER
        self._max_ts = NEVER
        self._groups: dict[str, dict[tuple[str, ...], _Group]] = {cid: {} for cid in self.rules}
        self._resolution = timer_resolution_ms
        self._wheel: dict[int, list[tuple[str, tuple[str, ...]]]] = {}
        self._buckets: list[int] = []
        self._next_edge = 2**62  # watermark at which the earliest wheel bucket becomes due

    # ---- public API -------------------------------------------------------------------------------

    def process(self, inp: CorrelationInput, emit: bool = True) -> list[CorrelationMatch]:
        """Add one input; return the matches it (or the watermark it moved) decided."""
        self.stats.received += 1
        rule = self.rules.get(inp.correlation_id)
        if rule is None:
            self.stats.unknown_rule += 1
            return []
        ts = inp.timestamp_ms
        if ts < self.watermark and not inp.derived:
            self.stats.late += 1
            return []
        matches: list[CorrelationMatch] = []
        groups = self._groups[rule.id]
        key = inp.group_key
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group()
        if ts <= group.consumed_until:
            self.stats.suppressed += 1
        else:
            times = group.ts
            if not times or ts >= times[-1]:  # in order: the common case
                times.append(ts)
                group.items.append(inp)
                index = len(times) - 1
                if index >= self.max_events_per_group:
                    index = self._overflow(group, index)
            else:
                index = self._insert(group, inp)
            if rule.decided_on_arrival:
                found = self._check_arrival(rule, key, group, index)
                if found is not None:
                    matches.append(found)
                if group.due == NEVER:  # an existing wheel entry reschedules itself when it fires
                    self._schedule(rule, key, group)
            else:
                self._schedule(rule, key, group)
        if ts > self._max_ts:
            self._max_ts = ts
            if ts - self.allowed_lateness_ms > self.watermark:
                matches.extend(self._move_watermark(ts - self.allowed_lateness_ms))
        return self._finish(matches, emit)

    def process_many(self, inputs: Iterable[CorrelationInput], emit: bool = True) -> list[CorrelationMatch]:
        out: list[CorrelationMatch] = []
        for inp in inputs:
            out.extend(self.process(inp, emit))
        return out

    def advance(self, now_ms: int, emit: bool = True) -> list[CorrelationMatch]:
        """Timer tick: move the watermark to ``now − lateness``, closing due windows and evicting state."""
        target = now_ms - self.allowed_lateness_ms
        if target <= self.watermark:
            return []
        return self._finish(self._move_watermark(target), emit)

    on_timer = advance

    def carry_over(self, previous: CorrelationEngine) -> int:
        """Take over ``previous``'s windows of the correlations whose definition is unchanged (a rule reload).

        Those windows go on as if nothing happened: what they hold still counts, their consumed ranges still
        suppress, the timer still closes them. A new correlation, or one whose definition changed, starts with no
        windows (alerts routed to it from now on). Call on a fresh engine, before it processes anything;
        ``previous`` must not be used afterwards (its windows now belong to this engine). Returns the number of
        groups taken over."""
        self.watermark = max(self.watermark, previous.watermark)
        self._max_ts = max(self._max_ts, previous._max_ts)
        taken = 0
        for rule_id, rule in self.rules.items():
            before = previous.rules.get(rule_id)
            groups = previous._groups.get(rule_id)
            if before is None or not groups or before.window_definition != rule.window_definition:
                continue
            self._groups[rule_id] = groups
            for key, group in groups.items():
                group.due = NEVER  # the previous engine's timer wheel is not taken over: schedule afresh
                self._schedule(rule, key, group)
            taken += len(groups)
        return taken

    def group_count(self) -> int:
        return sum(len(groups) for groups in self._groups.values())

    def buffered_inputs(self) -> int:
        return sum(len(g.ts) for groups in self._groups.values() for g in groups.values())

    # ---- internals --------------------------------------------------------------------------------

    def _finish(self, matches: list[CorrelationMatch], emit: bool) -> list[CorrelationMatch]:
        if matches and self.router is not None and self.chain_locally:
            for match in list(matches):
                for derived in self.router.route_match(match):
                    self.stats.chained_inputs += 1
                    matches.extend(self.process(derived, emit=True))
        return matches if emit else []

    def _insert(self, group: _Group, inp: CorrelationInput) -> int:
        index = bisect_right(group.ts, inp.timestamp_ms)
        group.ts.insert(index, inp.timestamp_ms)
        group.items.insert(index, inp)
        if len(group.ts) > self.max_events_per_group:
            index = self._overflow(group, index)
        return index

    def _overflow(self, group: _Group, index: int) -> int:
        del group.ts[0]
        del group.items[0]
        self.stats.overflow_dropped += 1
        return index - 1

    def _check_arrival(
        self, rule: CompiledCorrelation, key: tuple[str, ...], group: _Group, index: int
    ) -> CorrelationMatch | None:
        times = group.ts
        span = rule.timespan_ms
        counting = rule.type == "event_count" and rule.expression is None
        if index == len(times) - 1 and counting:  # in-order count: one bisect decides
            start = bisect_left(times, times[index] - span)
            count = index - start + 1
            if count > rule.threshold if rule.op == "gt" else count >= rule.threshold:
                return self._fire(rule, key, group, start, index, float(count), times[index])
            return None
        last = len(times) - 1
        ends: Iterable[int] = (index,) if index == last else range(index, bisect_right(times, times[index] + span))
        for end in ends:
            start = bisect_left(times, times[end] - span)
            if counting:
                count = end - start + 1
                if count <= rule.threshold if rule.op == "gt" else count < rule.threshold:
                    continue
                return self._fire(rule, key, group, start, end, float(count), times[end])
            value = judge(rule, group.items[start : end + 1])
            if value is not None:
                return self._fire(rule, key, group, start, end, value, times[end])
        return None

    def _fire(
        self,
        rule: CompiledCorrelation,
        key: tuple[str, ...],
        group: _Group,
        start: int,
        end: int,
        value: float,
        decided_ms: int,
    ) -> CorrelationMatch:
        items = group.items[start : end + 1]
        window_start, window_end = group.ts[start], group.ts[end]
        del group.ts[: end + 1]
        del group.items[: end + 1]
        group.consumed_until = max(group.consumed_until, window_end)
        self.stats.matches += 1
        self.stats.by_rule[rule.id] = self.stats.by_rule.get(rule.id, 0) + 1
        return self._build_match(rule, key, items, window_start, window_end, value, decided_ms)

    def _build_match(
        self,
        rule: CompiledCorrelation,
        key: tuple[str, ...],
        items: list[CorrelationInput],
        window_start: int,
        window_end: int,
        value: float,
        decided_ms: int,
    ) -> CorrelationMatch:
        cap = self.max_evidence
        entities: dict[tuple[str, str], None] = {}
        for item in items:
            for pair in item.entities or ():
                entities.setdefault(pair)
        return CorrelationMatch(
            id=match_id(rule.id, key, window_start),
            correlation_id=rule.id,
            group_key=key,
            group_fields=tuple(zip(rule.group_by, key, strict=True)),
            window_start_ms=window_start,
            window_end_ms=window_end,
            decided_ms=decided_ms,
            aggregate=value,
            input_count=len(items),
            rule_ids=tuple(dict.fromkeys(item.rule_id for item in items)),
            alert_ids=tuple(item.alert_id for item in items[:cap]),
            event_ids=tuple(item.event_id for item in items[:cap] if item.event_id),
            entities=tuple(list(entities)[:cap]),
        )

    # ---- timer wheel: closing windows and eviction ------------------------------------------------

    @staticmethod
    def _due(rule: CompiledCorrelation, group: _Group) -> int:
        if group.ts:
            if rule.decided_on_arrival:
                return group.ts[-1] + rule.timespan_ms
            return group.ts[0] + rule.timespan_ms
        return group.consumed_until

    def _schedule(self, rule: CompiledCorrelation, key: tuple[str, ...], group: _Group) -> None:
        due = self._due(rule, group)
        if group.due != NEVER and group.due <= due:
            return  # an earlier wheel entry exists; it reschedules when it fires
        group.due = due
        bucket = due // self._resolution
        entries = self._wheel.get(bucket)
        if entries is None:
            entries = self._wheel[bucket] = []
            heapq.heappush(self._buckets, bucket)
            self._next_edge = (self._buckets[0] + 1) * self._resolution
        entries.append((rule.id, key))

    def _move_watermark(self, watermark: int) -> list[CorrelationMatch]:
        self.watermark = watermark
        matches: list[CorrelationMatch] = []
        # A bucket is due once every time in it is below the watermark (strictly: wm > due).
        while self._buckets and watermark >= self._next_edge:
            bucket = heapq.heappop(self._buckets)
            entries = self._wheel.pop(bucket)
            self._next_edge = (self._buckets[0] + 1) * self._resolution if self._buckets else 2**62
            for rule_id, key in entries:
                matches.extend(self._visit(self.rules[rule_id], key))
        return matches

    def _visit(self, rule: CompiledCorrelation, key: tuple[str, ...]) -> list[CorrelationMatch]:
        groups = self._groups[rule.id]
        group = groups.get(key)
        if group is None:
            return []
        group.due = NEVER
        matches: list[CorrelationMatch] = []
        span = rule.timespan_ms
        wm = self.watermark
        if rule.decided_on_arrival:
            drop = bisect_left(group.ts, wm - span)
            if drop:
                del group.ts[:drop]
                del group.items[:drop]
        else:
            while group.ts and group.ts[0] + span < wm:
                matches.extend(self._close_window(rule, key, group))
        if not group.ts and group.consumed_until < wm:
            del groups[key]
            self.stats.evicted_groups += 1
        else:
            self._schedule(rule, key, group)
        return matches

    def _close_window(self, rule: CompiledCorrelation, key: tuple[str, ...], group: _Group) -> list[CorrelationMatch]:
        window_end = group.ts[0] + rule.timespan_ms
        end = bisect_right(group.ts, window_end) - 1
        value = judge(rule, group.items[: end + 1])
        if value is not None:
            match = self._fire(rule, key, group, 0, end, value, window_end)
            group.consumed_until = window_end
            return [match]
        del group.ts[: end + 1]
        del group.items[: end + 1]
        group.consumed_until = window_end
        return []


def replay(engine: CorrelationEngine, inputs: Iterable[CorrelationInput]) -> int:
    """Rebuild windows from already-processed inputs (restart/rebalance) without emitting; returns count."""
    count = 0
    for inp in inputs:
        engine.process(inp, emit=False)
        count += 1
    return count


__all__ = ["CorrelationEngine", "EngineStats", "replay"]
