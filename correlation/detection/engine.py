"""Match events against a compiled rule set; swap rule sets atomically on reload.

``RuleSet`` is immutable once built: the runtime reads ``holder.current`` once per batch, so a reload never
exposes a half-built set, and a reload that fails keeps the previous set running.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from correlation.detection.compiler import always, residual
from correlation.detection.fields import EventView
from correlation.detection.index import RuleIndex
from correlation.detection.loader import CompiledRule, LoadedRules, RuleProblem, load_rules
from parsers.base import ParsedEvent
from siem.config import RulesSettings
from siem.errors import PipelineError

_MISSING: Any = object()


class Match:
    """One rule matching one event, with the values of the fields the rule tests.

    ``matched_fields`` is computed on first access (from the event view the rule was evaluated on, whose lookups
    are cached) and then kept: building it for every match costs as much as the matching itself with large rule
    sets, and only alert documents read it. A ``Match`` built with explicit ``matched_fields`` keeps them as
    given. The event must not be modified between matching and the first read of ``matched_fields``.
    ``names`` (the rule's ``fields``, shared by the rules that test the same fields) spares reading the rule, cold in
    memory with thousands of rules.
    """

    __slots__ = ("rule", "event", "_fields", "_view", "_names")

    def __init__(
        self,
        rule: CompiledRule,
        event: ParsedEvent,
        matched_fields: dict[str, Any] | None = None,
        view: EventView | None = None,
        names: tuple[str, ...] | None = None,
    ) -> None:
        self.rule = rule
        self.event = event
        self._fields = matched_fields
        self._view = view
        self._names = names

    @property
    def matched_fields(self) -> dict[str, Any]:
        found = self._fields
        if found is None:
            view = self._view
            if view is None:
                view = EventView(self.event.native, self.event.ecs)
            # Many rules of a large base test the same fields: resolved once per event for each list of fields
            # (``view.memo``), each match getting its own copy.
            names = self._names or self.rule.fields
            memo = view.memo
            if memo is None:
                memo = view.memo = {}
            shared = memo.get(names)
            if shared is None:
                shared = memo[names] = _resolve_fields(names, view)
            found = self._fields = shared.copy()
            self._view = None
        return found

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Match):
            return NotImplemented
        return (self.rule, self.event, self.matched_fields) == (other.rule, other.event, other.matched_fields)

    __hash__ = None  # type: ignore[assignment]  # mutable fields, as the dataclass it replaces

    def __repr__(self) -> str:
        return f"Match(rule={self.rule!r}, event={self.event!r}, matched_fields={self.matched_fields!r})"


@dataclass
class RuleSet:
    rules: list[CompiledRule]
    correlations: list[Any] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)
    fingerprint: str = ""

    def __post_init__(self) -> None:
        by_dataset: dict[str, list[CompiledRule]] = {}
        for rule in self.rules:
            for dataset in rule.datasets:
                by_dataset.setdefault(dataset, []).append(rule)
        self._indexes = {dataset: RuleIndex(rules) for dataset, rules in by_dataset.items()}
        # dataset -> (index, position -> (rule, predicate, stats, fields)): one tuple lookup per evaluation. The
        # predicate is the rule's minus the literal tests the index has made before yielding the position (see
        # residual); equal field lists are one object, so the matched fields memo finds them in warm memory.
        names: dict[tuple[str, ...], tuple[str, ...]] = {}
        self._routes = {
            dataset: (
                index,
                tuple(
                    (rule, residual(rule.predicate, known), rule.stats, names.setdefault(rule.fields, rule.fields))
                    for rule, known in zip(index.rules, index.known, strict=True)
                ),
            )
            for dataset, index in self._indexes.items()
        }

    @classmethod
    def from_loaded(cls, loaded: LoadedRules, fingerprint: str = "") -> RuleSet:
        return cls(loaded.rules, list(loaded.correlations), list(loaded.problems), fingerprint)

    def rules_for(self, dataset: str) -> list[CompiledRule]:
        index = self._indexes.get(dataset)
        return index.rules if index else []

    def match(self, event: ParsedEvent) -> list[Match]:
        routed = self._routes.get(event.dataset)
        if routed is None:
            return []
        index, entries = routed
        view = EventView(event.native, event.ecs)
        positions = index.positions(view)
        if not positions:
            return []
        matches: list[Match] = []
        for position in positions:
            rule, predicate, stats, fields = entries[position]
            stats.evaluations += 1
            # ``always``: the index has made every test of the rule (half the evaluations of a large rule base).
            if predicate is not always:
                try:
                    if not predicate(view):
                        continue
                except Exception:  # noqa: BLE001 - one rule's bug must not stop detection for the others
                    stats.failures += 1
                    continue
            stats.matches += 1
            matches.append(Match(rule, event, None, view, fields))
        return matches


def _resolve_fields(names: tuple[str, ...], view: EventView) -> dict[str, Any]:
    """The fields ``names`` present in the event, one value or a list each."""
    out: dict[str, Any] = {}
    native = view.native
    for name in names:
        value = native.get(name, _MISSING)
        if value is not _MISSING and type(value) is not list:
            out[name] = value  # what ``view.values(name)`` resolves to, without the lookup
            continue
        values = view.values(name)
        if values is not None:
            out[name] = values[0] if len(values) == 1 else list(values)
    return out


def fingerprint(directories: list[Path]) -> str:
    """Changes when any rule or pipeline file under ``directories`` is added, removed or modified."""
    digest = hashlib.sha256()
    for directory in directories:
        if not directory.exists():
            continue
        for path in sorted(p for p in directory.rglob("*") if p.suffix in (".yml", ".yaml")):
            stat = path.stat()
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def build_rule_set(settings: RulesSettings) -> RuleSet:
    directories = list(settings.directories)
    stamp = fingerprint(directories)
    loaded = load_rules(directories, dict(settings.placeholders))
    return RuleSet.from_loaded(loaded, stamp)


class RuleSetHolder:
    """The live rule set. ``reload`` builds a new one aside and swaps the reference in one assignment."""

    def __init__(self, initial: RuleSet, build: Callable[[], RuleSet]) -> None:
        self._current = initial
        self._build = build
        self._lock = threading.Lock()
        self.last_error: str | None = None

    @classmethod
    def from_settings(cls, settings: RulesSettings) -> RuleSetHolder:
        return cls(build_rule_set(settings), lambda: build_rule_set(settings))

    @property
    def current(self) -> RuleSet:
        return self._current

    def reload(self) -> bool:
        """Load again; on any failure keep the running set and remember why. Returns True if swapped."""
        with self._lock:
            try:
                candidate = self._build()
            except (PipelineError, OSError, ValueError) as exc:
                self.last_error = str(exc)
                return False
            if not candidate.rules and self._current.rules:
                self.last_error = "reload produced no usable rules; keeping the running set"
                return False
            self._current = candidate
            self.last_error = None
            return True

    def reload_if_changed(self, directories: list[Path]) -> bool:
        if fingerprint(directories) == self._current.fingerprint:
            return False
        return self.reload()
