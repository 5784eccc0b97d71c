"""The ``siem`` command. Sub-command groups live next to the code they drive and are mounted here."""

from __future__ import annotations

import typer

from siem.errors import PipelineError

app = typer.Typer(
    help="Streaming SIEM pipeline: Kafka -> ECS -> Sigma detection and correlation -> Elasticsearch.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # tracebacks must not print settings objects (secrets)
)


def _mount_subcommands() -> None:
    # Imported here so `siem --help` stays quick and one component's import error names itself.
    from correlation.detection.cli import rules_app
    from correlation.incidents.cli import incidents_app
    from kibana.cli import setup_kibana_command
    from siem import ops_commands
    from siem.run_command import run
    from stack.cli import stack_app

    app.command()(run)
    app.command()(ops_commands.status)
    app.command()(ops_commands.replay)
    app.command()(ops_commands.demo)
    app.command()(ops_commands.doctor)
    ops_commands.setup_app.command("kibana")(setup_kibana_command)
    app.add_typer(ops_commands.setup_app, name="setup")
    app.add_typer(ops_commands.dlq_app, name="dlq")
    app.add_typer(ops_commands.config_app, name="config")
    app.add_typer(stack_app, name="stack", help="Local Kafka + Elasticsearch without Docker.")
    app.add_typer(rules_app, name="rules", help="Check and test Sigma rules.")
    app.add_typer(incidents_app, name="incidents", help="Triage incidents.")


def main() -> None:
    _mount_subcommands()
    try:
        app()
    except PipelineError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise SystemExit(2) from None
