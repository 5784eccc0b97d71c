"""Sigma detection inside the detect stage: rule matches become alert documents and messages for correlation.

Adapts the Sigma engine (``correlation.detection``) and the correlation router (``correlation.windows``) to the
detect stage's :class:`ingest.detect.Detector` interface. The rule set is read once per event from the holder,
so a hot reload swaps rules between events, never in the middle of one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from correlation.detection.alerts import build_alert
from correlation.detection.engine import RuleSetHolder
from correlation.detection.fields import lookup
from correlation.incidents.builder import level_at_least
from correlation.windows.router import CorrelationRouter
from ingest import metrics
from ingest.alert_messages import encode_correlation_input, encode_incident_alert
from ingest.detect import Alert
from parsers.base import ParsedEvent


def _epoch_ms(timestamp: str) -> int:
    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(UTC).timestamp() * 1000)


class SigmaDetector:
    def __init__(self, rules: RuleSetHolder, router: CorrelationRouter | None, incident_min_level: str) -> None:
        self._rules = rules
        self._router = router
        self._incident_min_level = incident_min_level

    def detect(self, event: ParsedEvent, event_index: str) -> list[Alert]:
        matches = self._rules.current.match(event)
        if not matches:
            return []
        alerts: list[Alert] = []
        for match in matches:
            document = build_alert(match, event_index)
            alert_id: str = document["event"]["id"]
            rule_id = match.rule.rule_id
            metrics.ALERTS.labels(rule_id).inc()
            rule_name = getattr(match.rule.rule, "name", None) or match.rule.title  # correlations refer by name or id
            messages = self._correlation_messages(event, document, rule_id, rule_name, alert_id)
            level = document.get("sigma", {}).get("level") or "medium"
            if level_at_least(level, self._incident_min_level):
                messages.append(encode_incident_alert(alert_id, document))
            indexed = self._router is None or self._router.standalone_output(rule_id, rule_name)
            alerts.append(Alert(alert_id, document, messages, indexed))
        return alerts

    def _correlation_messages(
        self, event: ParsedEvent, document: dict[str, Any], rule_id: str, rule_name: str, alert_id: str
    ) -> list[tuple[bytes, bytes]]:
        router = self._router
        if router is None or not router.references(rule_id, rule_name):
            return []

        def get(path: str) -> Any:
            values = lookup(event.native, path) or lookup(event.ecs, path)
            return values[0] if values else None

        inputs = router.route(rule_id, rule_name, get, _epoch_ms(document["@timestamp"]), alert_id, event_id=event.id)
        return [encode_correlation_input(inp) for inp in inputs]
