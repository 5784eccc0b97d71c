"""Sigma conditions -> one predicate per rule.

pySigma parses the condition string (``and``/``or``/``not``, parentheses, ``1 of``/``any of``/``all of`` with
``*`` patterns or ``them``). Identifiers are resolved here: a selector never picks ``_``-prefixed identifiers
unless its own pattern starts with ``_`` (Sigma filters rename their detections that way). A rule with several
conditions matches when any of them does.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sigma.conditions import (
    ConditionAND,
    ConditionIdentifier,
    ConditionItem,
    ConditionNOT,
    ConditionOR,
    ConditionSelector,
)
from sigma.exceptions import SigmaError
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaDetections

from correlation.detection.compiler import Predicate, combine, merge_constraints, required_literals
from siem.errors import RuleError

Constraints = dict[str, frozenset[str]]


def selector_names(selector: ConditionSelector, names: list[str]) -> list[str]:
    pattern = selector.pattern
    if pattern == "them":
        regex = re.compile(".*")
    else:
        regex = re.compile(".*".join(re.escape(p) for p in pattern.split("*")))
    allow_private = pattern.startswith("_")
    return [n for n in names if regex.fullmatch(n) and (allow_private or not n.startswith("_"))]


class ConditionCompiler:
    """Compiles the conditions of one rule; each named detection is compiled once and shared."""

    def __init__(self, detections: SigmaDetections, compile_named: Callable[[SigmaDetection], Predicate]) -> None:
        self.detections = detections
        self.compile_named = compile_named
        self._predicates: dict[str, Predicate] = {}
        self._constraints: dict[str, Constraints] = {}

    def _named(self, name: str) -> Predicate:
        if name not in self._predicates:
            try:
                detection = self.detections.detections[name]
            except KeyError:
                raise RuleError(f"condition refers to undefined detection {name!r}") from None
            self._predicates[name] = self.compile_named(detection)
        return self._predicates[name]

    def _named_constraints(self, name: str) -> Constraints:
        if name not in self._constraints:
            detection: SigmaDetection | SigmaDetectionItem = self.detections.detections[name]
            self._constraints[name] = required_literals(detection)
        return self._constraints[name]

    def _selected(self, node: ConditionSelector) -> list[str]:
        names = selector_names(node, list(self.detections.detections))
        if not names:
            raise RuleError(f"'{' of '.join(node.args)}' matches no detection")
        return names

    def compile(self, node: object) -> Predicate:
        if isinstance(node, ConditionIdentifier):
            return self._named(node.identifier)
        if isinstance(node, ConditionSelector):
            parts = [self._named(n) for n in self._selected(node)]
            return _combine(parts, node.cond_class is ConditionAND)
        if isinstance(node, ConditionNOT):
            inner = self.compile(node.args[0])
            return lambda view: not inner(view)
        if isinstance(node, (ConditionAND, ConditionOR)):
            parts = [self.compile(a) for a in node.args]
            return _combine(parts, isinstance(node, ConditionAND))
        raise RuleError(f"unsupported condition element {type(node).__name__}")

    def constraints(self, node: object) -> Constraints:
        """Literals every match requires (see :func:`required_literals`); NOT contributes nothing."""
        if isinstance(node, ConditionIdentifier):
            return self._named_constraints(node.identifier)
        if isinstance(node, ConditionSelector):
            children = [self._named_constraints(n) for n in self._selected(node)]
            return merge_constraints(children, node.cond_class is ConditionAND)
        if isinstance(node, (ConditionAND, ConditionOR)):
            children = [self.constraints(a) for a in node.args]
            return merge_constraints(children, isinstance(node, ConditionAND))
        return {}


def required_gates(
    node: object, detections: SigmaDetections, slots_of: Callable[[SigmaDetection], list[int]]
) -> list[int]:
    """Item slots that every match of ``node`` requires (AND paths only; NOT and OR contribute nothing)."""
    if isinstance(node, ConditionIdentifier):
        detection = detections.detections.get(node.identifier)
        return slots_of(detection) if detection is not None else []
    if isinstance(node, ConditionSelector):
        names = selector_names(node, list(detections.detections))
        if node.cond_class is ConditionAND or len(names) == 1:
            return [s for n in names for s in slots_of(detections.detections[n])]
        return []
    if isinstance(node, ConditionAND):
        return [s for a in node.args for s in required_gates(a, detections, slots_of)]
    if isinstance(node, ConditionOR) and len(node.args) == 1:
        return required_gates(node.args[0], detections, slots_of)
    return []


def _combine(parts: list[Predicate], conjunction: bool) -> Predicate:
    return combine(parts, conjunction)


def compile_conditions(
    detections: SigmaDetections,
    compile_named: Callable[[SigmaDetection], Predicate],
    slots_of: Callable[[SigmaDetection], list[int]] | None = None,
) -> tuple[Predicate, Constraints, list[int]]:
    """(predicate, required literals, required item slots) of a rule's conditions."""
    compiler = ConditionCompiler(detections, compile_named)
    predicates: list[Predicate] = []
    constraints: list[Constraints] = []
    gates: list[int] = []
    for condition in detections.parsed_condition:
        try:
            tree: ConditionItem = condition.parse(postprocess=False)  # type: ignore[assignment]
        except SigmaError as exc:
            raise RuleError(f"invalid condition {condition.condition!r}: {exc}") from None
        predicates.append(compiler.compile(tree))
        constraints.append(compiler.constraints(tree))
        if slots_of is not None and len(detections.parsed_condition) == 1:
            gates = required_gates(tree, detections, slots_of)
    return _combine(predicates, conjunction=False), merge_constraints(constraints, conjunction=False), gates
