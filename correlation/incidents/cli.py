"""``siem incidents``: list, show (with evidence timeline), ack, assign, resolve, false-positive, reopen,
note. Every change is written with optimistic concurrency and recorded in the incident's history."""

from __future__ import annotations

import getpass
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import typer
from rich.console import Console
from rich.table import Table

from correlation.incidents.model import Incident, Status, add_note, assign, change_status
from correlation.incidents.store import IncidentFilter, IncidentStore
from correlation.windows.documents import iso

incidents_app = typer.Typer(help="Triage incidents (siem-incidents).", no_args_is_help=True)
console = Console()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _store() -> tuple[IncidentStore, str, str]:
    from elasticsearch import Elasticsearch

    from correlation.incidents.es_backend import ElasticsearchBackend
    from siem.config import load_settings

    settings = load_settings()
    es = settings.elasticsearch
    backend = ElasticsearchBackend(Elasticsearch(**es.client_options()), es.incidents_index)
    store = IncidentStore(backend, settings.incidents, _now_ms)
    return store, f"{es.index_prefix}-alerts-*", f"{es.index_prefix}-events-*"


def _since(text: str | None) -> int | None:
    """``15m``, ``24h``, ``7d`` or an ISO timestamp."""
    if not text:
        return None
    units = {"m": "minutes", "h": "hours", "d": "days"}
    if text[-1] in units and text[:-1].isdigit():
        delta = timedelta(**{units[text[-1]]: int(text[:-1])})
        return int((datetime.now(tz=UTC) - delta).timestamp() * 1000)
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


@incidents_app.command("list")
def list_incidents(
    status: list[str] = typer.Option([], help="open, acknowledged, resolved, false_positive"),  # noqa: B008
    severity: str | None = typer.Option(None, help="minimum level, e.g. high"),
    since: str | None = typer.Option(None, help="last seen after: 24h, 7d or ISO time"),
    rule: str | None = typer.Option(None, help="rule id or name"),
    entity: str | None = typer.Option(None, help="user, role, account, IP, namespace or pod"),
    limit: int = typer.Option(50, min=1, max=10_000),
) -> None:
    """Incidents, most recently active first."""
    store, _, _ = _store()
    flt = IncidentFilter(statuses=status, min_severity=severity, since_ms=_since(since), rule=rule,
                         entity=entity, size=limit)
    table = Table("id", "status", "severity", "risk", "alerts", "last seen", "assignee", "title")
    for inc in store.search(flt):
        table.add_row(inc.id, inc.status.value, inc.severity, f"{inc.risk_score:g}", str(inc.alert_count),
                      inc.last_seen, inc.assignee or "-", inc.title)
    console.print(table)


@incidents_app.command()
def show(incident_id: str) -> None:
    """Summary plus a time-ordered evidence timeline (alerts and events)."""
    store, alerts, events = _store()
    found = store.get(incident_id)
    if found is None:
        raise typer.BadParameter(f"no incident {incident_id}")
    _print_summary(found.incident)
    table = Table("time", "kind", "id", "what")
    for doc in store.timeline(found.incident, alerts, events):
        rule = doc.get("rule") or {}
        what = rule.get("name") or (doc.get("event") or {}).get("action") or doc.get("message") or ""
        table.add_row(str(doc.get("@timestamp", "")), doc["kind"], str(doc.get("_id", "")), str(what))
    console.print(table)


def _print_summary(inc: Incident) -> None:
    console.print(f"[bold]{inc.title}[/bold]  ({inc.id})")
    console.print(f"status {inc.status.value}  severity {inc.severity}  risk {inc.risk_score:g}  "
                  f"assignee {inc.assignee or '-'}")
    console.print(f"first seen {inc.first_seen}  last seen {inc.last_seen}  alerts {inc.alert_count}  "
                  f"evidence events {inc.evidence_event_count}")
    console.print("rules: " + ", ".join(f"{r.name} ({r.alert_count})" for r in inc.rules))
    console.print(f"ATT&CK: {', '.join(inc.tactics) or '-'} / {', '.join(inc.techniques) or '-'}")
    for kind, values in inc.entities.items():
        if values:
            console.print(f"{kind}: {', '.join(values)}")
    for note in inc.notes:
        console.print(f"note {note.at} {note.by}: {note.text}")
    for entry in inc.history:
        change = f"{entry.from_status} -> {entry.to_status}" if entry.action == "status" else entry.action
        console.print(f"history {entry.at} {entry.by}: {change} {entry.reason or ''}")


def _apply(incident_id: str, change: Callable[[Incident, str], None]) -> None:
    store, _, _ = _store()
    at = iso(_now_ms())

    def mutate(inc: Incident) -> bool:
        change(inc, at)
        return True

    try:
        inc = store.update(incident_id, mutate)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(f"{inc.id}: {inc.status.value}, assignee {inc.assignee or '-'}")


BY = typer.Option(None, "--by", help="who (default: login name)")
REASON = typer.Option(None, "--reason", "-r")


def _who(by: str | None) -> str:
    return by or getpass.getuser()


def _status_command(name: str, to: Status, doc: str) -> None:
    def command(incident_id: str, reason: str | None = REASON, by: str | None = BY) -> None:
        _apply(incident_id, lambda inc, at: change_status(inc, to, _who(by), at, reason))

    command.__doc__ = doc
    incidents_app.command(name)(command)


_status_command("ack", Status.ACKNOWLEDGED, "Acknowledge: someone is looking at it.")
_status_command("resolve", Status.RESOLVED, "Resolve.")
_status_command("false-positive", Status.FALSE_POSITIVE, "Close as a false positive.")
_status_command("reopen", Status.OPEN, "Reopen a resolved or false-positive incident.")


@incidents_app.command("assign")
def assign_command(incident_id: str, assignee: str, reason: str | None = REASON, by: str | None = BY) -> None:
    """Assign to a responder ("-" to unassign)."""
    who = None if assignee == "-" else assignee
    _apply(incident_id, lambda inc, at: assign(inc, who, _who(by), at, reason))


@incidents_app.command()
def note(incident_id: str, text: str, by: str | None = BY) -> None:
    """Add a note."""
    _apply(incident_id, lambda inc, at: add_note(inc, text, _who(by), at))
