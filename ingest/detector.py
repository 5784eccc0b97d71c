"""Sigma detection inside the detect stage: rule matches become alert documents and messages for correlation.

Adapts the Sigma engine (``correlation.detection``) and the correlation router (``correlation.windows``) to the
detect stage's :class:`ingest.detect.Detector` interface. The rule set is read once per event from the holder,
so a hot reload swaps rules between events, never in the middle of one. With a follower, the router follows the
reloaded correlation rules too, from the first event after the reload.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from correlation.detection.alerts import alert_id as sigma_alert_id
from correlation.detection.alerts import build_alert
from correlation.detection.engine import RuleSet, RuleSetHolder
from correlation.detection.fields import EventView
from correlation.detection.loader import CompiledRule
from correlation.incidents.builder import level_at_least
from correlation.windows.router import CorrelationRouter
from ingest import metrics
from ingest.alert_messages import encode_correlation_input, encode_incident_alert
from ingest.correlation_rules import CorrelationsFollower
from ingest.detect import Alert
from parsers.base import ParsedEvent


def _epoch_ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(UTC).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class _RuleRouting:
    """What happens to a rule's matches, decided once per rule (not per match)."""

    rule_name: str
    indexed: bool  # False: only correlations with ``generate: false`` use it (no alert of its own)
    correlated: bool  # some correlation refers to it
    to_incident: bool  # its level is high enough to open or update an incident
    alerts_counter: Any  # its labelled Prometheus child


class SigmaDetector:
    def __init__(
        self,
        rules: RuleSetHolder,
        router: CorrelationRouter | None,
        incident_min_level: str,
        follower: CorrelationsFollower | None = None,
    ) -> None:
        self._rules = rules
        self._router = router
        self._incident_min_level = incident_min_level
        self._follower = follower  # None: the router stays as given (tests, benchmarks)
        self._rule_set: RuleSet = rules.current
        # Keyed by the compiled rule object (its id, checked by identity); emptied when a reload swaps the rule set.
        self._routing: dict[int, tuple[CompiledRule, _RuleRouting]] = {}

    def detect(self, event: ParsedEvent, event_index: str) -> list[Alert]:
        rule_set = self._rules.current
        if rule_set is not self._rule_set:
            self._follow(rule_set)
        matches = rule_set.match(event)
        if not matches:
            return []
        alerts: list[Alert] = []
        view: EventView | None = None  # field lookups for correlation inputs, cached across this event's matches
        for match in matches:
            compiled = match.rule
            routing = self._routing_of(compiled)
            routing.alerts_counter.inc()
            if not routing.indexed and not routing.to_incident:
                # Only a correlation input: the alert document would be built and thrown away.
                alert_id = sigma_alert_id(compiled.rule_id, event.id)
                timestamp = event.ecs.get("@timestamp")
                view = view or EventView(event.native, event.ecs)
                messages = self._correlation_messages(event, view, timestamp, compiled.rule_id, routing, alert_id)
                alerts.append(Alert(alert_id, {}, messages, indexed=False))
                continue
            document = build_alert(match, event_index)
            alert_id = document["event"]["id"]
            view = view or EventView(event.native, event.ecs)
            timestamp = document["@timestamp"]
            messages = self._correlation_messages(event, view, timestamp, compiled.rule_id, routing, alert_id)
            incident = encode_incident_alert(alert_id, document) if routing.to_incident else None
            alerts.append(Alert(alert_id, document, messages, incident, routing.indexed))
        return alerts

    def _follow(self, rule_set: RuleSet) -> None:
        """A reload swapped the rule set: forget the old rules' routing (it holds them), and take the correlation
        rules' routing if they changed (which rules feed correlations, and which stay unindexed)."""
        self._rule_set = rule_set
        self._routing.clear()
        if self._follower is None:
            return
        changed = self._follower.changed()
        if changed is not None:
            self._router = self._follower.router(changed)

    def _routing_of(self, compiled: CompiledRule) -> _RuleRouting:
        cached = self._routing.get(id(compiled))
        if cached is not None and cached[0] is compiled:
            return cached[1]
        rule_id = compiled.rule_id
        rule_name = getattr(compiled.rule, "name", None) or compiled.title  # correlations refer by name or id
        router = self._router
        level = str(compiled.rule.level) if compiled.rule.level else "medium"  # as build_alert records it
        routing = _RuleRouting(
            rule_name=rule_name,
            indexed=router is None or router.standalone_output(rule_id, rule_name),
            correlated=router is not None and router.references(rule_id, rule_name),
            to_incident=level_at_least(level, self._incident_min_level),
            alerts_counter=metrics.ALERTS.labels(rule_id),
        )
        self._routing[id(compiled)] = (compiled, routing)
        return routing

    def _correlation_messages(
        self, event: ParsedEvent, view: EventView, timestamp: Any, rule_id: str, routing: _RuleRouting, alert_id: str
    ) -> list[tuple[bytes, bytes]]:
        router = self._router
        if router is None or not routing.correlated:
            return []

        def get(path: str) -> Any:
            values = view.values(path)  # native fields first, then ECS, as rules see them
            return values[0] if values else None

        inputs = router.route(rule_id, routing.rule_name, get, _epoch_ms(timestamp), alert_id, event_id=event.id)
        return [encode_correlation_input(inp) for inp in inputs]
