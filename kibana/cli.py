"""``siem setup kibana``: import the data views, saved searches and dashboards into Kibana.

Mount either the function (``setup_app.command("kibana")(setup_kibana_command)``) or the sub-app
(``app.add_typer(kibana_app, name="kibana")`` gives ``siem kibana setup``).
"""

from __future__ import annotations

from pathlib import Path

import typer

from kibana.build import generate
from kibana.setup import KibanaError, import_saved_objects

kibana_app = typer.Typer(help="Kibana saved objects (data views, searches, dashboards).", no_args_is_help=True)


@kibana_app.callback()
def _group() -> None:
    """Kibana saved objects (data views, searches, dashboards)."""
    # A callback keeps `setup` a sub-command: a Typer app with one command would otherwise run it directly.


def setup_kibana_command(
    url: str | None = typer.Option(None, help="Kibana URL (default: settings kibana.url / SIEM_KIBANA__URL)"),
    wait_seconds: float = typer.Option(0.0, "--wait-seconds", min=0, help="keep retrying while Kibana starts"),
    file: Path | None = typer.Option(  # noqa: B008
        None, exists=True, dir_okay=False, help="import this NDJSON instead of the generated objects"
    ),
) -> None:
    """Import (or update) the SIEM data views, saved searches and dashboards; safe to run again."""
    from siem.config import load_settings

    settings = load_settings()
    kibana = settings.kibana if url is None else settings.kibana.model_copy(update={"url": url})
    ndjson = file.read_text(encoding="utf-8") if file else generate(settings.elasticsearch.index_prefix)
    try:
        result = import_saved_objects(kibana, ndjson, wait_seconds=wait_seconds)
    except KibanaError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    typer.echo(f"imported {result.success_count} saved objects into {kibana.url}")


kibana_app.command("setup")(setup_kibana_command)
