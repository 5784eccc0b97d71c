"""The number a window is judged by, per correlation type, and the condition test.

One small function per type, registered in one table (as pySigma does for modifiers).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from correlation.windows.messages import CorrelationInput
from correlation.windows.rules import CompiledCorrelation, Expr

Aggregator = Callable[[CompiledCorrelation, Sequence[CorrelationInput]], float | None]


def _event_count(_: CompiledCorrelation, items: Sequence[CorrelationInput]) -> float:
    return float(len(items))


def _value_count(_: CompiledCorrelation, items: Sequence[CorrelationInput]) -> float:
    return float(len({item.value for item in items if item.value is not None}))


def _temporal(_: CompiledCorrelation, items: Sequence[CorrelationInput]) -> float:
    return float(len({item.ref_index for item in items}))


def _temporal_ordered(rule: CompiledCorrelation, items: Sequence[CorrelationInput]) -> float:
    """Length of the longest prefix of ``rules`` seen in order (items are time-ordered).

    Greedy earliest matching is optimal for "is a prefix a subsequence", so one pass suffices.
    """
    wanted = len(rule.rule_ids)
    seen = 0
    for item in items:
        if item.ref_index == seen:
            seen += 1
            if seen == wanted:
                break
    return float(seen)


def _numbers(items: Sequence[CorrelationInput]) -> list[float]:
    return [item.value for item in items if isinstance(item.value, float)]


def _value_sum(_: CompiledCorrelation, items: Sequence[CorrelationInput]) -> float | None:
    values = _numbers(items)
    return math.fsum(values) if values else None


def _value_avg(_: CompiledCorrelation, items: Sequence[CorrelationInput]) -> float | None:
    values = _numbers(items)
    return math.fsum(values) / len(values) if values else None


def percentile(values: list[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), ``pct`` in 0..100."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * min(max(pct, 0.0), 100.0) / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _value_percentile(rule: CompiledCorrelation, items: Sequence[CorrelationInput]) -> float | None:
    values = _numbers(items)
    return percentile(values, float(rule.percentile or 50)) if values else None


def _value_median(_: CompiledCorrelation, items: Sequence[CorrelationInput]) -> float | None:
    values = _numbers(items)
    return percentile(values, 50.0) if values else None


AGGREGATORS: dict[str, Aggregator] = {
    "event_count": _event_count,
    "value_count": _value_count,
    "temporal": _temporal,
    "temporal_ordered": _temporal_ordered,
    "value_sum": _value_sum,
    "value_avg": _value_avg,
    "value_percentile": _value_percentile,
    "value_median": _value_median,
}

COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "gt": lambda value, limit: value > limit,
    "gte": lambda value, limit: value >= limit,
    "lt": lambda value, limit: value < limit,
    "lte": lambda value, limit: value <= limit,
    "eq": lambda value, limit: value == limit,
    "neq": lambda value, limit: value != limit,
}


def evaluate_expression(expr: Expr, seen: set[int]) -> bool:
    kind = expr[0]
    if kind == "ref":
        return expr[1] in seen
    if kind == "not":
        return not evaluate_expression(expr[1], seen)
    if kind == "and":
        return all(evaluate_expression(arg, seen) for arg in expr[1:])
    return any(evaluate_expression(arg, seen) for arg in expr[1:])


def judge(rule: CompiledCorrelation, items: Sequence[CorrelationInput]) -> float | None:
    """The window's aggregate if the rule's condition holds for ``items``, else None."""
    if rule.expression is not None:
        seen = {item.ref_index for item in items}
        return float(len(seen)) if evaluate_expression(rule.expression, seen) else None
    value = AGGREGATORS[rule.type](rule, items)
    if value is None or not COMPARATORS[rule.op](value, rule.threshold):
        return None
    return value
