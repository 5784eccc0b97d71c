"""Load Sigma correlation rules with pySigma and compile them to plain data the engine can use fast.

pySigma's :class:`~sigma.collection.SigmaCollection` parses the YAML and resolves rule references (by id or
by name, in the same collection); we keep only what evaluation needs. Errors become :class:`RuleError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigma.collection import SigmaCollection
from sigma.correlations import (
    CorrelationConditionAND,
    CorrelationConditionNOT,
    CorrelationConditionOR,
    SigmaCorrelationCondition,
    SigmaCorrelationRule,
    SigmaExtendedCorrelationCondition,
    SigmaRuleReference,
)
from sigma.exceptions import SigmaError

from siem.errors import RuleError

COUNT_TYPES = frozenset({"event_count", "value_count", "temporal", "temporal_ordered"})
NUMERIC_TYPES = frozenset({"value_sum", "value_avg", "value_percentile", "value_median"})
VALUE_TYPES = NUMERIC_TYPES | {"value_count"}
# Conditions that a growing window can only make true once and never false again are decided as soon as
# an alert arrives; the others (lt, lte, eq, neq, extended conditions with `not`) need the window to close.
ARRIVAL_OPS = frozenset({"gt", "gte"})

# Boolean expression of an extended temporal condition: ("ref", i) | ("not", e) | ("and"|"or", a, b).
Expr = tuple[Any, ...]


def rule_identity(rule: Any) -> str:
    """How alerts name a rule: its id when it has one, else its name."""
    return str(rule.id) if rule.id is not None else str(rule.name)


@dataclass(frozen=True, slots=True)
class CompiledCorrelation:
    id: str
    name: str | None
    title: str
    description: str
    level: str | None
    type: str
    timespan_ms: int
    group_by: tuple[str, ...]
    # Rules referenced, in order (order matters for temporal_ordered); identity = id or name.
    rule_ids: tuple[str, ...]
    rule_names: tuple[str | None, ...]
    # alias name -> {rule identity -> field name in that rule's events}
    aliases: dict[str, dict[str, str]] = field(hash=False)
    op: str = "gte"
    threshold: float = 1
    value_field: str | None = None
    percentile: int | None = None
    expression: Expr | None = None
    generate: bool = False
    tags: tuple[str, ...] = ()
    references_correlations: bool = False

    decided_on_arrival: bool = True  # set by compile_correlation (see ARRIVAL_OPS)

    @property
    def incident_identity(self) -> str:
        return self.id

    @property
    def window_definition(self) -> tuple[Any, ...]:
        """What a window's content and its verdict depend on. Two versions of a rule with the same definition can
        share windows (a reload that only retitled, re-levelled or re-described a rule keeps its windows)."""
        return (
            self.type,
            self.timespan_ms,
            self.group_by,
            self.rule_ids,
            self.rule_names,
            self.aliases,
            self.op,
            self.threshold,
            self.value_field,
            self.percentile,
            self.expression,
            self.decided_on_arrival,
        )


def _has_not(expr: Expr) -> bool:
    if expr[0] == "ref":
        return False
    if expr[0] == "not":
        return True
    return any(_has_not(arg) for arg in expr[1:])


def _compile_expression(node: Any, index: dict[str, int]) -> Expr:
    if isinstance(node, SigmaRuleReference):
        return ("ref", index[node.reference])
    kind = {CorrelationConditionAND: "and", CorrelationConditionOR: "or", CorrelationConditionNOT: "not"}
    for cls, name in kind.items():
        if isinstance(node, cls):
            return (name, *(_compile_expression(arg, index) for arg in node.args))
    raise RuleError(f"unsupported correlation condition node {type(node).__name__}")


def _compile_aliases(rule: SigmaCorrelationRule, refs: list[SigmaRuleReference], where: str | None
                     ) -> dict[str, dict[str, str]]:
    # Alias mappings name rules by id or name; pySigma leaves them unresolved, so map them to identities.
    identities: dict[str, str] = {}
    for ref in refs:
        for spelling in (ref.reference, ref.rule.name, ref.rule.id):
            if spelling is not None:
                identities[str(spelling)] = rule_identity(ref.rule)
    aliases: dict[str, dict[str, str]] = {}
    for alias in rule.aliases:
        try:
            aliases[alias.alias] = {
                identities[ref.reference]: fieldname for ref, fieldname in alias.mapping.items()
            }
        except KeyError as exc:
            raise RuleError(f"alias {alias.alias!r} names a rule not in rules: {exc}", rule_file=where) from None
    return aliases


def compile_correlation(rule: SigmaCorrelationRule) -> CompiledCorrelation:
    where = str(rule.source) if rule.source else None
    if rule.id is None and rule.name is None:
        raise RuleError("correlation rule needs an id or a name", rule_file=where)
    refs = rule.referenced_rules or rule.rules or []
    if not refs:
        raise RuleError("correlation rule references no rules", rule_file=where)
    rule_ids = tuple(rule_identity(ref.rule) for ref in refs)
    by_reference = {ref.reference: i for i, ref in enumerate(refs)}
    aliases = _compile_aliases(rule, refs, where)
    ctype = str(rule.type.name).lower()
    cond = rule.condition
    op, threshold, value_field, percentile, expression = "gte", float(len(refs)), None, None, None
    if isinstance(cond, SigmaCorrelationCondition):
        op, threshold = cond.op.name.lower(), float(cond.count)
        if isinstance(cond.fieldref, list):
            if len(cond.fieldref) != 1:
                raise RuleError("correlation condition field must be a single field", rule_file=where)
            value_field = cond.fieldref[0]
        else:
            value_field = cond.fieldref
        percentile = cond.percentile
    elif isinstance(cond, SigmaExtendedCorrelationCondition):
        expression = _compile_expression(cond.parsed, by_reference)
    if ctype in VALUE_TYPES and not value_field:
        raise RuleError(f"{ctype} correlation needs condition.field", rule_file=where)
    if ctype == "value_percentile" and percentile is None:
        raise RuleError("value_percentile correlation needs condition.percentile", rule_file=where)
    return CompiledCorrelation(
        id=str(rule.id) if rule.id is not None else str(rule.name),
        name=rule.name,
        title=rule.title or "",
        description=rule.description or "",
        level=rule.level.name.lower() if rule.level is not None else None,
        type=ctype,
        timespan_ms=int(rule.timespan.seconds) * 1000,
        group_by=tuple(rule.group_by or ()),
        rule_ids=rule_ids,
        rule_names=tuple(ref.rule.name for ref in refs),
        aliases=aliases,
        op=op,
        threshold=threshold,
        value_field=value_field,
        percentile=percentile,
        expression=expression,
        generate=bool(rule.generate),
        tags=tuple(f"{tag.namespace}.{tag.name}" for tag in rule.tags),
        decided_on_arrival=(not _has_not(expression)) if expression is not None else op in ARRIVAL_OPS,
        references_correlations=any(isinstance(ref.rule, SigmaCorrelationRule) for ref in refs),
    )


def compile_collection(collection: SigmaCollection) -> list[CompiledCorrelation]:
    """Every correlation rule of a (reference-resolved) collection, compiled."""
    compiled: list[CompiledCorrelation] = []
    for rule in collection:
        if isinstance(rule, SigmaCorrelationRule):
            compiled.append(compile_correlation(rule))
    return compiled


def load_collection(paths: Iterable[Path]) -> SigmaCollection:
    """Every ``*.yml``/``*.yaml`` under ``paths`` as one collection (references resolved across files)."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(path.rglob("*.y*ml")) if path.is_dir() else [path])
    collections: list[SigmaCollection] = []
    for file in files:
        try:
            collections.append(SigmaCollection.from_yaml(file.read_text(encoding="utf-8")))
        except SigmaError as exc:
            raise RuleError(str(exc), rule_file=str(file)) from None
    try:
        merged = SigmaCollection.merge(collections)
        merged.resolve_rule_references()
    except SigmaError as exc:
        raise RuleError(str(exc)) from None
    return merged


def load_correlations_from_yaml(text: str) -> tuple[SigmaCollection, list[CompiledCorrelation]]:
    """Parse one multi-document YAML text (tests, tools)."""
    try:
        collection = SigmaCollection.from_yaml(text)
    except SigmaError as exc:
        raise RuleError(str(exc)) from None
    return collection, compile_collection(collection)
