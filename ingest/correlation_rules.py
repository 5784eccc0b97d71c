"""The correlation rules of the live rule set, compiled, and followed across rule reloads.

Correlation rules live in the same files as detection rules, so the rule reload job swaps them too. Both stages
use them: the detect stage routes base-rule matches to correlations (``CorrelationRouter``), the correlate stage
keeps their windows. Each stage owns one follower and asks it at a point of its own choosing (per event, per
poll) whether a reload changed them; the question costs one identity check until a reload happens.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from correlation.detection.engine import RuleSet, RuleSetHolder
from correlation.windows.router import CorrelationRouter
from correlation.windows.rules import CompiledCorrelation, compile_correlation

log = logging.getLogger(__name__)


def compile_correlations(rules: RuleSet) -> list[CompiledCorrelation]:
    compiled: list[CompiledCorrelation] = []
    for rule in rules.correlations:
        try:
            compiled.append(compile_correlation(rule))
        except Exception as exc:  # a broken correlation rule is reported and skipped, like a broken rule
            log.error("correlation rule %s skipped: %s", getattr(rule, "title", rule), exc)
    return compiled


class CorrelationsFollower:
    """Compiled correlations of ``holder.current``; ``changed()`` hands over new ones after a reload."""

    def __init__(self, holder: RuleSetHolder, entity_fields: Iterable[str] = ()) -> None:
        self._holder = holder
        self._entity_fields = tuple(entity_fields)
        self._seen = holder.current
        self.current = compile_correlations(self._seen)

    def changed(self) -> list[CompiledCorrelation] | None:
        """The correlations, if a reload changed them since the last call (any field); otherwise None."""
        rule_set = self._holder.current
        if rule_set is self._seen:
            return None
        self._seen = rule_set
        compiled = compile_correlations(rule_set)
        if compiled == self.current:
            return None
        self.current = compiled
        return compiled

    def router(self, correlations: list[CompiledCorrelation]) -> CorrelationRouter | None:
        """The detect stage's router for ``correlations`` (None without any: nothing to route)."""
        return CorrelationRouter(correlations, self._entity_fields) if correlations else None
