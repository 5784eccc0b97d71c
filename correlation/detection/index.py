"""Which rules can match an event: routing by dataset, then by required literal values, on two levels.

Every rule that constrains a field to literals (e.g. ``eventName``) is filed under that field, once per literal;
when it also constrains a second field (e.g. ``eventSource``), it is filed one level deeper under that field's
literals too. An event meets only the rules in the buckets its own (lower-cased) values select, plus rules gated
by a shared detection item that holds, plus the rules that constrain nothing. With a large rule base one
``eventName`` can carry dozens of rules; the second level keeps just those whose other literal matches as well.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from correlation.detection.compiler import GATES, NUMBER_GATES, Predicate, number_of
from correlation.detection.fields import EventView

# Fields that separate events best, tried first when a rule constrains several.
PREFERRED_KEYS = ("eventName", "objectRef.resource", "eventSource", "verb", "cs-method")
MAX_PAIRS = 64  # a rule with more (first literal, second literal) pairs stays on the first level

Positions = Sequence[int]


class Indexable(Protocol):
    @property
    def constraints(self) -> dict[str, frozenset[str]]: ...

    @property
    def gates(self) -> tuple[int, ...]: ...


R = TypeVar("R", bound=Indexable)


def choose_key(constraints: dict[str, frozenset[str]], popularity: dict[str, int] | None = None) -> str | None:
    """Preferred fields first, then the field most rules constrain (fewer fields to look up per event)."""
    if not constraints:
        return None
    for key in PREFERRED_KEYS:
        if key in constraints:
            return key
    counts = popularity or {}
    return min(constraints, key=lambda f: (-counts.get(f, 0), len(constraints[f]), f))


class _Node:
    """Rules filed under one literal of a first-level field: directly, or by a second field's literal."""

    __slots__ = ("direct", "second")

    def __init__(self) -> None:
        self.direct: list[int] = []
        self.second: dict[str, dict[str, list[int]]] = {}


Second = tuple[tuple[str, dict[str, tuple[int, ...]]], ...]


def _probe_second(lowered: Callable[[str], tuple[str, ...]], seconds: Second, hits: list[int]) -> None:
    for name, by_second in seconds:
        for other in lowered(name):
            found = by_second.get(other)
            if found is not None:
                hits.extend(found)


def _probe_numbers(view: EventView, field: str, by_number: dict[float, tuple[int, ...]], hits: list[int]) -> None:
    values = view.values(field)
    if values is None:
        return
    for value in values:
        number = number_of(value)
        if number is not None:
            found = by_number.get(number)
            if found is not None:
                hits.extend(found)


class RuleIndex(Generic[R]):
    """Rules of one dataset, bucketed by ``field -> literal [-> field -> literal]``; load order preserved."""

    def __init__(self, rules: Sequence[R]) -> None:
        self.rules = list(rules)
        self.unindexed: list[int] = []
        # position -> field -> literals of which the event has one whenever the index yields the position.
        self.known: list[dict[str, frozenset[str]]] = [{} for _ in self.rules]
        gated: dict[int, list[int]] = {}
        numeric: dict[str, dict[float, list[int]]] = {}
        popularity: dict[str, int] = {}
        for rule in self.rules:
            for name in rule.constraints:
                popularity[name] = popularity.get(name, 0) + 1
        tree: dict[str, dict[str, _Node]] = {}
        for position, rule in enumerate(self.rules):
            constraints = rule.constraints
            key = choose_key(constraints, popularity)
            if key is None:
                self._file_unconstrained(position, rule, gated, numeric)
                continue
            rest = {f: v for f, v in constraints.items() if f != key}
            second = choose_key(rest, popularity)
            if second is not None and len(constraints[key]) * len(rest[second]) > MAX_PAIRS:
                second = None
            self.known[position] = {f: constraints[f] for f in (key, second) if f is not None}
            by_value = tree.setdefault(key, {})
            for literal in sorted(constraints[key]):
                node = by_value.get(literal)
                if node is None:
                    node = by_value[literal] = _Node()
                if second is None:
                    node.direct.append(position)
                    continue
                by_second = node.second.setdefault(second, {})
                for other in sorted(rest[second]):
                    by_second.setdefault(other, []).append(position)
        # Frozen for probing: literal -> (direct positions, ((second field, literal -> positions), ...)).
        self.buckets: dict[str, dict[str, tuple[tuple[int, ...], Second]]]
        self.buckets = {
            field: {
                literal: (
                    tuple(node.direct),
                    tuple(
                        (name, {other: tuple(p) for other, p in by_second.items()})
                        for name, by_second in node.second.items()
                    ),
                )
                for literal, node in by_value.items()
            }
            for field, by_value in tree.items()
        }
        self._fields = tuple(self.buckets.items())
        self._unindexed = tuple(self.unindexed)
        self.numeric = {f: {n: tuple(p) for n, p in by_number.items()} for f, by_number in numeric.items()}
        self._numeric = tuple(self.numeric.items())
        self._gated: tuple[tuple[Predicate, tuple[int, ...]], ...] = tuple(
            (GATES[slot], tuple(positions)) for slot, positions in gated.items()
        )

    def _file_unconstrained(
        self, position: int, rule: R, gated: dict[int, list[int]], numeric: dict[str, dict[float, list[int]]]
    ) -> None:
        """No literal to file the rule under: gate it behind a required item, evaluated once per event for every
        rule that shares it (e.g. one regular expression shared by many rules); number items become buckets."""
        usable = [g for g in rule.gates if g in GATES]
        by_number = [g for g in usable if g in NUMBER_GATES]
        if by_number:
            field, numbers = NUMBER_GATES[by_number[0]]
            for number in numbers:
                numeric.setdefault(field, {}).setdefault(number, []).append(position)
        elif usable:
            gated.setdefault(usable[0], []).append(position)
        else:
            self.unindexed.append(position)

    def positions(self, view: EventView) -> Positions:
        """Positions (in load order, no duplicates) of the rules that may match the event."""
        hits: list[int] = list(self._unindexed)
        for gate, gated in self._gated:
            if gate(view):
                hits.extend(gated)
        for field, by_number in self._numeric:
            _probe_numbers(view, field, by_number, hits)
        lowered = view.lowered
        for field, by_value in self._fields:
            for text in lowered(field):
                node = by_value.get(text)
                if node is not None:
                    direct, seconds = node
                    if direct:
                        hits.extend(direct)
                    if seconds:
                        _probe_second(lowered, seconds, hits)
        if view.multivalued:
            # A rule sits in one list per literal of one field (and of one second field), so only a field with
            # several values can select it twice: then positions are made unique (a set costs as much as the sort).
            return sorted(set(hits))
        hits.sort()
        return hits

    def candidates(self, view: EventView) -> list[R]:
        rules = self.rules
        return [rules[p] for p in self.positions(view)]
