"""The Kibana saved objects shipped with the pipeline: data views, saved searches and dashboards.

Ids are fixed and readable (``siem-dv-events``, ``siem-search-...``, ``siem-dash-...``) so re-importing with
``overwrite=true`` updates the same objects. Lens visualizations are embedded by value in the dashboards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from kibana import lens
from kibana.lens import count, date_histogram, filters, metric, terms

SavedObject = dict[str, Any]

DV_EVENTS = "siem-dv-events"
DV_ALERTS = "siem-dv-alerts"
DV_INCIDENTS = "siem-dv-incidents"
DV_DLQ = "siem-dv-dlq"

CLOUDTRAIL = 'event.dataset : "aws.cloudtrail"'
K8S = 'event.dataset : "kubernetes.audit_logs"'
ACTIVE_INCIDENTS = 'status : ("open" or "acknowledged")'
HIGH_SEVERITY = 73  # alert/incident severity score of Sigma level "high" (critical is 99)

# Mirrors the sample data shipped with Kibana 8.x so import migrations start from the right version.
_MIGRATION = {
    "index-pattern": "7.11.0",
    "search": "7.9.3",
    "dashboard": "8.7.0",
}

# MTTA/MTTR: the incident has no acknowledged_at/resolved_at fields, so they are derived from its history:
# minutes from `created` to the first acknowledgement, and to the last closing status change.
def _minutes_until(states: list[str], first: bool) -> str:
    wanted = "[" + ", ".join(f"'{state}'" for state in states) + "]"
    stop = " break;" if first else ""
    # A closing time only counts while the incident is still closed (a reopened incident is not resolved).
    current = "" if first else " if (!wanted.contains(src['status'])) { return; }"
    return (
        "def src = params['_source']; def h = src['history']; def created = src['created'];"
        " if (h == null || created == null) { return; }"
        f" List wanted = {wanted};{current} String hit = null;"
        " for (def e : h) { if (e['action'] == 'status' && wanted.contains(e['to_status'])) {"
        f" hit = e['at'];{stop} }} }}"
        " if (hit == null) { return; }"
        " long start = ZonedDateTime.parse(created).toInstant().toEpochMilli();"
        " emit((ZonedDateTime.parse(hit).toInstant().toEpochMilli() - start) / 60000.0);"
    )


INCIDENT_RUNTIME_FIELDS: dict[str, Any] = {
    "time_to_ack_minutes": {"type": "double", "script": {"source": _minutes_until(["acknowledged"], first=True)}},
    "time_to_close_minutes": {
        "type": "double",
        "script": {"source": _minutes_until(["resolved", "false_positive"], first=False)},
    },
}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=False)


def _saved(kind: str, object_id: str, attributes: dict[str, Any], references: list[dict[str, str]]) -> SavedObject:
    return {
        "type": kind,
        "id": object_id,
        "attributes": attributes,
        "references": references,
        "coreMigrationVersion": "8.8.0",
        "typeMigrationVersion": _MIGRATION[kind],
        "managed": False,
    }


def data_view(object_id: str, pattern: str, name: str, runtime: dict[str, Any] | None = None) -> SavedObject:
    return _saved(
        "index-pattern",
        object_id,
        {
            "title": pattern,
            "name": name,
            "timeFieldName": "@timestamp",
            "allowNoIndex": True,
            "fields": "[]",
            "fieldFormatMap": "{}",
            "runtimeFieldMap": _dumps(runtime or {}),
            "typeMeta": "{}",
        },
        [],
    )


def data_views(prefix: str) -> list[SavedObject]:
    # Incidents: @timestamp is the incident's first_seen (Incident.to_doc), a date in every mapping.
    return [
        data_view(DV_EVENTS, f"{prefix}-events-*", "SIEM events"),
        data_view(DV_ALERTS, f"{prefix}-alerts-*", "SIEM alerts"),
        data_view(DV_INCIDENTS, f"{prefix}-incidents*", "SIEM incidents", INCIDENT_RUNTIME_FIELDS),
        data_view(DV_DLQ, f"{prefix}-dlq*", "SIEM dead-letter queue"),
    ]


@dataclass(frozen=True)
class Search:
    id: str
    title: str
    data_view: str
    query: str
    columns: tuple[str, ...]
    description: str = ""
    sort_field: str = "@timestamp"


SEARCHES: tuple[Search, ...] = (
    Search("siem-search-cloudtrail-failures", "CloudTrail failed calls", DV_EVENTS,
           f'{CLOUDTRAIL} and event.outcome : "failure"',
           ("event.action", "event.provider", "user.name", "user.id", "source.ip", "cloud.region", "cloud.account.id"),
           "AWS API calls and console logins that failed (errors, access denied, bad passwords)."),
    Search("siem-search-k8s-denials", "Kubernetes denied requests", DV_EVENTS,
           f'{K8S} and event.outcome : "failure"',
           ("user.name", "event.action", "orchestrator.resource.type", "orchestrator.resource.name",
            "orchestrator.namespace", "source.ip"),
           "Audit events whose response status was an error (403 forbidden, 401, 404, ...)."),
    Search("siem-search-high-alerts", "High and critical alerts", DV_ALERTS,
           f"event.severity >= {HIGH_SEVERITY}",
           ("rule.name", "event.severity", "event.risk_score", "event.dataset", "user.name", "source.ip",
            "threat.tactic.name", "threat.technique.id"),
           "Sigma alerts of level high or critical."),
    Search("siem-search-open-incidents", "Open incidents", DV_INCIDENTS, ACTIVE_INCIDENTS,
           ("title", "status", "severity", "risk_score", "alert_count", "assignee", "last_seen", "rules.name"),
           "Incidents not yet resolved or closed as false positive.", "risk_score"),
    Search("siem-search-dlq", "Dead-letter queue by error type", DV_DLQ, "",
           ("dlq.error_type", "dlq.parser", "dlq.topic", "dlq.partition", "dlq.offset", "dlq.stage", "dlq.message"),
           "Records the pipeline could not parse or index; replay with `siem dlq replay` after a fix.",
           "dlq.error_type"),
)


def saved_search(search: Search) -> SavedObject:
    source = {
        "query": lens.kql(search.query),
        "filter": [],
        "highlightAll": True,
        "version": True,
        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
    }
    attributes = {
        "title": search.title,
        "description": search.description,
        "columns": list(search.columns),
        "sort": [[search.sort_field, "desc"]],
        "hits": 0,
        "version": 1,
        "kibanaSavedObjectMeta": {"searchSourceJSON": _dumps(source)},
    }
    reference = {"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern",
                 "id": search.data_view}
    return _saved("search", search.id, attributes, [reference])


# A dashboard panel: Lens attributes (by value) or the id of a saved search (by reference), plus its size.
Panel = tuple[dict[str, Any] | str, int, int]


def _layout(panels: list[Panel]) -> list[tuple[dict[str, Any] | str, dict[str, Any]]]:
    """Left to right, wrapping at Kibana's 48-column grid."""
    placed: list[tuple[dict[str, Any] | str, dict[str, Any]]] = []
    x = y = row_height = 0
    for number, (content, width, height) in enumerate(panels, start=1):
        if x + width > 48:
            x, y, row_height = 0, y + row_height, 0
        placed.append((content, {"x": x, "y": y, "w": width, "h": height, "i": f"p{number}"}))
        x += width
        row_height = max(row_height, height)
    return placed


def dashboard(object_id: str, title: str, description: str, panels: list[Panel], time_from: str) -> SavedObject:
    panels_json: list[dict[str, Any]] = []
    references: list[dict[str, str]] = []
    for content, grid in _layout(panels):
        index = grid["i"]
        panel: dict[str, Any] = {"version": lens.PANEL_VERSION, "gridData": grid, "panelIndex": index}
        if isinstance(content, str):
            panel.update({"type": "search", "embeddableConfig": {"enhancements": {}}, "panelRefName": f"panel_{index}"})
            references.append({"name": f"{index}:panel_{index}", "type": "search", "id": content})
        else:
            panel.update({"type": "lens", "title": content["title"],
                          "embeddableConfig": {"attributes": content, "enhancements": {}}})
            references.extend({**ref, "name": f"{index}:{ref['name']}"} for ref in content["references"])
        panels_json.append(panel)
    attributes = {
        "title": title,
        "description": description,
        "panelsJSON": _dumps(panels_json),
        "optionsJSON": _dumps({"useMargins": True, "syncColors": False, "syncCursor": True,
                               "syncTooltips": False, "hidePanelTitles": False}),
        "timeRestore": True,
        "timeFrom": time_from,
        "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 60000},
        "version": 1,
        "kibanaSavedObjectMeta": {"searchSourceJSON": _dumps({"query": lens.kql(""), "filter": []})},
    }
    return _saved("dashboard", object_id, attributes, references)


def overview() -> SavedObject:
    by_dataset = terms("event.dataset", "Source")
    panels: list[Panel] = [
        (lens.bar("Event volume by source", DV_EVENTS, date_histogram(), count("Events"), by_dataset), 32, 12),
        (lens.donut("Events by source", DV_EVENTS, [by_dataset], count("Events")), 16, 12),
        (lens.bar("Alerts by rule", DV_ALERTS, terms("rule.name", "Rule", size=15), count("Alerts"),
                  terms("event.severity", "Severity score", size=5), series="bar_horizontal_stacked"), 24, 14),
        (lens.bar("Alerts over time by severity", DV_ALERTS, date_histogram(), count("Alerts"),
                  terms("event.severity", "Severity score", size=5)), 24, 14),
        (lens.single_metric("Open incidents", DV_INCIDENTS, count("Open incidents"), ACTIVE_INCIDENTS), 12, 8),
        (lens.donut("Open incidents by severity", DV_INCIDENTS, [terms("severity", "Severity")],
                    count("Incidents"), ACTIVE_INCIDENTS), 18, 8),
        (lens.donut("Dead-letter entries by error type", DV_DLQ, [terms("dlq.error_type", "Error type")],
                    count("Entries")), 18, 8),
        ("siem-search-open-incidents", 48, 12),
    ]
    return dashboard("siem-dash-overview", "SIEM overview",
                     "Event volume per source, alerts by rule and severity, open incidents, pipeline errors.",
                     panels, "now-24h")


def cloudtrail() -> SavedObject:
    failures = f'{CLOUDTRAIL} and event.outcome : "failure"'
    panels: list[Panel] = [
        (lens.bar("API calls by outcome", DV_EVENTS, date_histogram(), count("Calls"),
                  terms("event.outcome", "Outcome", size=3), CLOUDTRAIL), 48, 10),
        (lens.bar("Top actions", DV_EVENTS, terms("event.action", "Action", size=20), count("Calls"),
                  query=CLOUDTRAIL, series="bar_horizontal"), 16, 14),
        (lens.bar("Top principals", DV_EVENTS, terms("user.name", "Principal", size=20), count("Calls"),
                  terms("event.outcome", "Outcome", size=3), CLOUDTRAIL, "bar_horizontal_stacked"), 16, 14),
        (lens.donut("Calls by region", DV_EVENTS, [terms("cloud.region", "Region")], count("Calls"),
                    CLOUDTRAIL), 16, 14),
        (lens.table("Failures by action and principal", DV_EVENTS,
                    [terms("event.action", "Action", size=20), terms("user.name", "Principal", size=5),
                     terms("source.ip", "Source IP", size=3), count("Failures")], failures), 32, 14),
        (lens.donut("Calls by service", DV_EVENTS, [terms("event.provider", "Service")], count("Calls"),
                    CLOUDTRAIL), 16, 14),
        ("siem-search-cloudtrail-failures", 48, 12),
    ]
    return dashboard("siem-dash-cloudtrail", "SIEM CloudTrail activity",
                     "AWS API activity by action, principal, region and service; failed calls.", panels, "now-24h")


def kubernetes() -> SavedObject:
    denials = f'{K8S} and event.outcome : "failure"'
    panels: list[Panel] = [
        (lens.bar("Requests by verb", DV_EVENTS, date_histogram(), count("Requests"),
                  terms("event.action", "Verb", size=10), K8S), 32, 10),
        (lens.bar("Denied requests over time", DV_EVENTS, date_histogram(), count("Denials"), query=denials,
                  series="line"), 16, 10),
        (lens.bar("Top resources", DV_EVENTS, terms("orchestrator.resource.type", "Resource", size=15),
                  count("Requests"), terms("event.action", "Verb", size=5), K8S, "bar_horizontal_stacked"), 16, 14),
        (lens.bar("Top users", DV_EVENTS, terms("user.name", "User", size=15), count("Requests"),
                  terms("event.outcome", "Outcome", size=3), K8S, "bar_horizontal_stacked"), 16, 14),
        (lens.donut("Requests by namespace", DV_EVENTS, [terms("orchestrator.namespace", "Namespace")],
                    count("Requests"), K8S), 16, 14),
        (lens.table("Denials by user, verb and resource", DV_EVENTS,
                    [terms("user.name", "User", size=20), terms("event.action", "Verb", size=5),
                     terms("orchestrator.resource.type", "Resource", size=5), count("Denials")], denials), 24, 14),
        (lens.table("Exec and attach into pods", DV_EVENTS,
                    [terms("user.name", "User", size=20), terms("orchestrator.namespace", "Namespace", size=5),
                     terms("orchestrator.resource.name", "Pod", size=5), count("Sessions")],
                    f'{K8S} and orchestrator.resource.parent.type : ("exec" or "attach")'), 24, 14),
        ("siem-search-k8s-denials", 48, 12),
    ]
    return dashboard("siem-dash-kubernetes", "SIEM Kubernetes audit",
                     "API server requests by verb, resource, user and namespace; denials; exec into pods.",
                     panels, "now-24h")


def incidents() -> SavedObject:
    age = filters([("< 1 hour", "@timestamp >= now-1h"),
                   ("1-24 hours", "@timestamp < now-1h and @timestamp >= now-24h"),
                   ("1-7 days", "@timestamp < now-24h and @timestamp >= now-7d"),
                   ("> 7 days", "@timestamp < now-7d")], "Age (since first seen)")
    panels: list[Panel] = [
        (lens.single_metric("Active incidents", DV_INCIDENTS, count("Open or acknowledged"), ACTIVE_INCIDENTS),
         12, 8),
        (lens.single_metric("Unassigned active incidents", DV_INCIDENTS, count("Unassigned"),
                            f"{ACTIVE_INCIDENTS} and not assignee : *"), 12, 8),
        (lens.single_metric("MTTA (minutes)", DV_INCIDENTS,
                            metric("average", "time_to_ack_minutes", "Mean time to acknowledge", "mtta")), 12, 8),
        (lens.single_metric("MTTR (minutes)", DV_INCIDENTS,
                            metric("average", "time_to_close_minutes", "Mean time to resolve", "mttr")), 12, 8),
        (lens.bar("Active incidents by severity and age", DV_INCIDENTS, age, count("Incidents"),
                  terms("severity", "Severity", size=5), ACTIVE_INCIDENTS), 24, 14),
        (lens.bar("Incidents by status", DV_INCIDENTS, date_histogram(), count("Incidents"),
                  terms("status", "Status", size=4)), 24, 14),
        (lens.table("Top users and roles in active incidents", DV_INCIDENTS,
                    [terms("entities.users", "User", size=15, order_by="risk"),
                     metric("max", "risk_score", "Max risk", "risk", 0), count("Incidents")], ACTIVE_INCIDENTS),
         16, 14),
        (lens.table("Top source IPs in active incidents", DV_INCIDENTS,
                    [terms("entities.ips", "Source IP", size=15, order_by="risk"),
                     metric("max", "risk_score", "Max risk", "risk", 0), count("Incidents")], ACTIVE_INCIDENTS),
         16, 14),
        (lens.table("Top rules in active incidents", DV_INCIDENTS,
                    [terms("rules.name", "Rule", size=15), count("Incidents")], ACTIVE_INCIDENTS), 16, 14),
        (lens.bar("Workload by assignee", DV_INCIDENTS, terms("assignee", "Assignee", size=15),
                  count("Incidents"), terms("status", "Status", size=2), ACTIVE_INCIDENTS,
                  "bar_horizontal_stacked"), 24, 12),
        (lens.table("Time to acknowledge and resolve by severity", DV_INCIDENTS,
                    [terms("severity", "Severity", size=5),
                     metric("average", "time_to_ack_minutes", "MTTA (min)", "mtta"),
                     metric("average", "time_to_close_minutes", "MTTR (min)", "mttr"), count("Incidents")]), 24, 12),
        ("siem-search-open-incidents", 48, 14),
    ]
    return dashboard("siem-dash-incidents", "SIEM incidents triage",
                     "Open incidents by severity and age, top entities, workload, MTTA and MTTR.", panels, "now-30d")


def build_objects(prefix: str = "siem") -> list[SavedObject]:
    """Every saved object, referenced objects first (Kibana resolves references within one import)."""
    return [
        *data_views(prefix),
        *(saved_search(search) for search in SEARCHES),
        overview(),
        cloudtrail(),
        kubernetes(),
        incidents(),
    ]
