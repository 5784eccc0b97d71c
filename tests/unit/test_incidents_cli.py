"""Triage CLI against the in-memory backend (the ES backend is covered by the integration test)."""

from __future__ import annotations

from rich.console import Console
from typer.testing import CliRunner

from correlation.incidents import cli
from correlation.incidents.store import IncidentStore, MemoryBackend
from siem.config import IncidentSettings
from tests.unit.test_incidents_store import T0, alert_doc, sig


def test_triage_commands_record_history(monkeypatch):
    settings = IncidentSettings()
    backend = MemoryBackend()
    store = IncidentStore(backend, settings, lambda: T0)
    inc = store.record(sig(alert_doc(1, T0), settings, "high"))
    backend.side_docs["alert-1"] = {"_id": "alert-1", "@timestamp": "2025-01-01T12:00:00Z",
                                    "rule": {"name": "Console login without MFA"}}
    backend.side_docs["event-1"] = {"_id": "event-1", "@timestamp": "2025-01-01T11:59:59Z",
                                    "event": {"action": "ConsoleLogin"}}
    monkeypatch.setattr(cli, "_store", lambda: (store, "a-*", "e-*"))
    monkeypatch.setattr(cli, "console", Console(width=400))
    runner = CliRunner()
    for args in (["ack", inc.id, "--by", "bob", "-r", "mine"], ["assign", inc.id, "carol", "--by", "bob"],
                 ["note", inc.id, "reset MFA", "--by", "carol"], ["resolve", inc.id, "--by", "carol"],
                 ["reopen", inc.id, "--by", "dave"], ["false-positive", inc.id, "--by", "dave"]):
        result = runner.invoke(cli.incidents_app, args)
        assert result.exit_code == 0, result.output
    found = store.get(inc.id)
    assert found is not None
    final = found.incident
    assert [(h.by, h.action, h.to_status) for h in final.history] == [
        ("bob", "status", "acknowledged"), ("bob", "assign:carol", None), ("carol", "note", None),
        ("carol", "status", "resolved"), ("dave", "status", "open"), ("dave", "status", "false_positive"),
    ]
    shown = runner.invoke(cli.incidents_app, ["show", inc.id])
    assert shown.exit_code == 0
    assert shown.output.index("ConsoleLogin") < shown.output.rindex("Console login without MFA")
    listed = runner.invoke(cli.incidents_app, ["list", "--status", "false_positive"])
    assert inc.id in listed.output
    bad = runner.invoke(cli.incidents_app, ["ack", inc.id])  # false_positive -> acknowledged: refused
    assert bad.exit_code != 0
