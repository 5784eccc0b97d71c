"""Turn "base rule R matched event E" into the inputs to publish, one per correlation that references R.

Resolves ``aliases`` per referenced rule, reads the ``group-by`` values and, for ``value_*`` types, the
condition ``field``. An event that lacks a group-by field (or the value field) does not take part in that
correlation: grouping it under an empty value would merge unrelated activity. Such skips are counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from correlation.windows.messages import CorrelationInput, CorrelationMatch
from correlation.windows.rules import NUMERIC_TYPES, CompiledCorrelation

FieldGetter = Callable[[str], object]


@dataclass(frozen=True, slots=True)
class _Target:
    correlation: CompiledCorrelation
    ref_index: int
    group_fields: tuple[str, ...]
    value_field: str | None


def _resolve(correlation: CompiledCorrelation, rule_identity: str, name: str) -> str:
    mapping = correlation.aliases.get(name)
    if mapping is None:
        return name
    return mapping.get(rule_identity, name)


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value) if value else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


class CorrelationRouter:
    def __init__(self, correlations: Sequence[CompiledCorrelation], entity_fields: Iterable[str] = ()) -> None:
        self.correlations = {c.id: c for c in correlations}
        self.entity_fields = tuple(entity_fields)
        self._targets: dict[str, list[_Target]] = {}
        self.skipped_missing_field = 0
        for correlation in correlations:
            for index, (rule_id, rule_name) in enumerate(
                zip(correlation.rule_ids, correlation.rule_names, strict=True)
            ):
                target = _Target(
                    correlation=correlation,
                    ref_index=index,
                    group_fields=tuple(_resolve(correlation, rule_id, g) for g in correlation.group_by),
                    value_field=(
                        _resolve(correlation, rule_id, correlation.value_field)
                        if correlation.value_field
                        else None
                    ),
                )
                for ident in {rule_id, rule_name} - {None}:
                    self._targets.setdefault(str(ident), []).append(target)

    def references(self, rule_id: str | None, rule_name: str | None = None) -> bool:
        return (rule_id in self._targets) or (rule_name in self._targets)

    def standalone_output(self, rule_id: str, rule_name: str | None = None) -> bool:
        """False when every correlation referencing the rule has ``generate: false`` (spec: only the
        correlation is output); the detection side may then skip indexing the base rule's own alerts."""
        targets = self._lookup(rule_id, rule_name)
        return not targets or any(t.correlation.generate for t in targets)

    def _lookup(self, rule_id: str | None, rule_name: str | None) -> list[_Target]:
        found = list(self._targets.get(rule_id or "", ()))
        if rule_name and rule_name != rule_id:
            for target in self._targets.get(rule_name, ()):
                if target not in found:
                    found.append(target)
        return found

    def route(
        self,
        rule_id: str,
        rule_name: str | None,
        get: FieldGetter,
        timestamp_ms: int,
        alert_id: str,
        event_id: str | None = None,
        derived: bool = False,
    ) -> list[CorrelationInput]:
        targets = self._lookup(rule_id, rule_name)
        if not targets:
            return []
        entities = self._entities(get)
        out: list[CorrelationInput] = []
        for target in targets:
            group: list[str] = []
            for fieldname in target.group_fields:
                text = _text(get(fieldname))
                if text is None:
                    break
                group.append(text)
            else:
                value: str | float | None = None
                if target.value_field is not None:
                    raw = get(target.value_field)
                    numeric = target.correlation.type in NUMERIC_TYPES
                    value = _number(raw) if numeric else _text(raw)
                    if value is None:
                        self.skipped_missing_field += 1
                        continue
                out.append(
                    CorrelationInput(
                        correlation_id=target.correlation.id,
                        group_key=tuple(group),
                        rule_id=rule_id,
                        rule_name=rule_name,
                        ref_index=target.ref_index,
                        timestamp_ms=timestamp_ms,
                        alert_id=alert_id,
                        event_id=event_id,
                        value=value,
                        entities=entities,
                        derived=derived,
                    )
                )
                continue
            self.skipped_missing_field += 1
        return out

    def _entities(self, get: FieldGetter) -> tuple[tuple[str, str], ...] | None:
        pairs = []
        for fieldname in self.entity_fields:
            text = _text(get(fieldname))
            if text is not None:
                pairs.append((fieldname, text))
        return tuple(pairs) or None

    def route_match(self, match: CorrelationMatch) -> list[CorrelationInput]:
        """Feed a correlation's match to the correlations that reference it (chaining)."""
        correlation = self.correlations[match.correlation_id]
        fields: dict[str, str] = dict(match.entities)
        fields.update(match.group_fields)
        inputs = self.route(
            rule_id=correlation.id,
            rule_name=correlation.name,
            get=fields.get,
            timestamp_ms=match.window_end_ms,
            alert_id=match.id,
            event_id=None,
            derived=True,
        )
        return inputs
