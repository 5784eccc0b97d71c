"""``siem stack up|down|status``: the local Kafka + Elasticsearch stack from the command line."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from siem.config import load_settings

from .services import LocalStack

stack_app = typer.Typer(help="Local Kafka (KRaft) + Elasticsearch without Docker.", no_args_is_help=True)
_console = Console(stderr=True, highlight=False)


def _report(message: str) -> None:
    _console.print(message, markup=False, soft_wrap=True)


def _stack() -> LocalStack:
    return LocalStack(load_settings().stack, report=_report)


@stack_app.command()
def up() -> None:
    """Resolve artifacts (first run only), start Kafka and Elasticsearch, wait until both answer."""
    stack = _stack()
    stack.up()
    typer.echo(f"SIEM_KAFKA__BOOTSTRAP_SERVERS={stack.kafka_bootstrap}")
    typer.echo(f'SIEM_ELASTICSEARCH__HOSTS=["{stack.elasticsearch_url}"]')


@stack_app.command()
def down() -> None:
    """Stop the services started by `siem stack up` (SIGTERM, then SIGKILL after a timeout)."""
    _stack().down()


@stack_app.command()
def status() -> None:
    """Show each service with pid, port and health; exit code 1 when any is unhealthy."""
    statuses = _stack().status()
    table = Table("service", "pid", "port", "state")
    for item in statuses:
        state = "[green]healthy[/]" if item.healthy else f"[red]unhealthy[/] ({item.detail})"
        table.add_row(item.name, str(item.pid or "-"), str(item.port), state)
    Console().print(table)
    if not all(item.healthy for item in statuses):
        raise typer.Exit(1)
