"""Silent-source detection: a configured log source whose raw topics get no new record for N minutes raises an
alert (a quiet CloudTrail is itself an incident: a trail stopped, a shipper died, or someone cut the logs).

Silence is read from Kafka, not from what this process consumed: the end offsets of every partition of the
source's raw topics. So it measures the source itself (a pipeline that lags behind is not silence) and it is the
same for every process of the detect group. One process checks a source: the one that has partition 0 of the
source's first raw topic assigned.

The alert goes to the alerts index like a rule's alert, and as an incident alert to the correlate stage (at
``pipeline.silent_alert_level``, "high" by default, it opens an incident keyed by ``siem.silent_source``). Its id
is derived from the source and the end offsets it stopped at, so a restart, a rebalance or a second process that
sees the same silence writes the same alert and incident entry again instead of a new one. When records arrive
again the source is marked as resumed and a later silence raises a new alert.

The silence is measured from the first check that saw the current end offsets, so after a start or a rebalance
the alert comes at most N minutes (plus one check interval) after the silence began here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from elasticsearch import ConflictError

from correlation.detection.alerts import SEVERITY, alert_id
from correlation.windows.documents import day, iso, threat_block
from ingest import metrics
from ingest.alert_messages import encode_incident_alert
from ingest.kafka_io import MessageProducer
from siem.config import Settings

log = logging.getLogger(__name__)

RULE_ID = "siem-silent-source"
RULE_NAME = "Log source went silent"
TAGS = ["attack.defense-evasion", "attack.t1562.008"]  # Impair Defenses: Disable or Modify Cloud Logs


class EndOffsets(Protocol):
    def __call__(self, topics: list[str]) -> dict[tuple[str, int], int]: ...


class AlertIndexer(Protocol):
    """The part of the Elasticsearch client the watcher uses."""

    def index(self, *, index: str, id: str, document: dict[str, Any], op_type: str) -> object: ...  # noqa: A002


@dataclass
class _SourceState:
    offsets: tuple[tuple[tuple[str, int], int], ...] | None = None
    changed_at: float = 0.0  # wall clock (s) of the first check that saw ``offsets``
    alerted: bool = False


class SilentSourceWatcher:
    def __init__(
        self,
        settings: Settings,
        end_offsets: EndOffsets,
        owns: Callable[[tuple[str, int]], bool],
        client: AlertIndexer,
        producer: MessageProducer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._end_offsets = end_offsets
        self._owns = owns
        self._client = client
        self._producer = producer
        self._clock = clock
        self._topics = {
            source: sorted(t for t, parser in settings.kafka.raw_topics.items() if parser == source)
            for source in settings.pipeline.silent_sources
        }
        self._state: dict[str, _SourceState] = {}

    def check(self) -> list[dict[str, Any]]:
        """One run of the job; returns the alert documents raised (also what tests call directly)."""
        raised: list[dict[str, Any]] = []
        now = self._clock()
        for source, minutes in self._settings.pipeline.silent_sources.items():
            topics = self._topics[source]
            if not self._owns((topics[0], 0)):
                self._state.pop(source, None)  # another process watches it; start afresh if it comes back here
                continue
            offsets = tuple(sorted(self._end_offsets(topics).items()))
            state = self._state.setdefault(source, _SourceState())
            if offsets != state.offsets:
                if state.alerted:
                    log.warning("silent source %s resumed: new records on %s", source, ", ".join(topics))
                state.offsets, state.changed_at, state.alerted = offsets, now, False
                continue
            if state.alerted or now - state.changed_at < minutes * 60:
                continue
            document = self._alert(source, topics, minutes, offsets, state.changed_at, now)
            self._deliver(document, day(int(now * 1000)))
            state.alerted = True
            raised.append(document)
        return raised

    def _alert(
        self,
        source: str,
        topics: list[str],
        minutes: float,
        offsets: tuple[tuple[tuple[str, int], int], ...],
        quiet_since: float,
        now: float,
    ) -> dict[str, Any]:
        level = self._settings.pipeline.silent_alert_level
        severity, risk = SEVERITY[level]  # as a Sigma rule's alert of that level
        timestamp = iso(int(now * 1000))
        positions = ",".join(f"{t}/{p}@{o}" for (t, p), o in offsets)
        return {
            "@timestamp": timestamp,
            "message": f"no new record on {', '.join(topics)} for {minutes:g} minutes ({source})",
            "event": {
                "kind": "alert",
                "id": alert_id(RULE_ID, f"{source}|{positions}"),
                "dataset": "siem.silent_source",
                "severity": severity,
                "risk_score": risk,
                "created": timestamp,
            },
            "rule": {"id": RULE_ID, "uuid": RULE_ID, "name": RULE_NAME, "ruleset": "siem-pipeline",
                     "description": "A configured log source stopped sending records (pipeline.silent_sources)."},
            "tags": TAGS,
            "threat": threat_block(TAGS),
            "siem": {
                "level": level,
                "silent_source": source,
                "silence": {"topics": topics, "minutes": minutes, "since": iso(int(quiet_since * 1000)),
                            "end_offsets": positions},
            },
        }

    def _deliver(self, document: dict[str, Any], alert_day: str) -> None:
        es = self._settings.elasticsearch
        doc_id = document["event"]["id"]
        index = es.alerts_index(alert_day)
        try:
            self._client.index(index=index, id=doc_id, document=document, op_type="create")
        except ConflictError:  # the same silence, already raised (restart, rebalance): keep the first one
            log.info("silent-source alert %s already indexed", doc_id)
        key, value = encode_incident_alert(doc_id, document)
        self._producer.send(self._settings.kafka.alerts_topic, key, value)
        self._producer.flush(timeout_s=30)
        metrics.ALERTS.labels(RULE_ID).inc()
        log.warning("%s: %s", RULE_NAME, document["message"])

