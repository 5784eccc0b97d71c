"""Operator commands: setup, status, replay, demo, dlq, config, doctor."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from siem.config import load_settings
from siem.demo import DEFAULT_SAMPLES, sample_lines
from siem.producing import file_records, files_under, make_producer, topic_for

console = Console()

setup_app = typer.Typer(help="Create topics and index templates (idempotent).", invoke_without_command=True)
dlq_app = typer.Typer(help="Inspect and replay the dead-letter queue.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)


@setup_app.callback()
def setup(ctx: typer.Context) -> None:
    """Create the pipeline's Kafka topics and Elasticsearch index templates."""
    if ctx.invoked_subcommand is not None:
        return
    from ingest.service import setup as do_setup

    result = do_setup(load_settings())
    console.print(f"topics created: {result['topics_created'] or 'none (all existed)'}")
    console.print(f"templates installed: {', '.join(result['templates'])}")


def status(
    watch: Annotated[bool, typer.Option("--watch", "-w", help="refresh until Ctrl-C")] = False,
) -> None:
    """Show the running pipeline's live status line (from its /healthz) and Elasticsearch counts."""
    from indexing.client import make_client
    from siem.status import count_documents, fetch_health, render

    settings = load_settings()
    es = make_client(settings.elasticsearch, request_timeout=3)
    prefix = settings.elasticsearch.index_prefix

    def line() -> Any:
        return render(
            fetch_health(settings),
            count_documents(es, settings.elasticsearch.incidents_index),
            count_documents(es, f"{prefix}-events-*"),
        )

    if not watch:
        console.print(line())
        return
    with Live(line(), console=console, refresh_per_second=1) as live:
        try:
            while True:
                time.sleep(1)
                live.update(line())
        except KeyboardInterrupt:
            pass


def replay(
    path: Annotated[Path, typer.Argument(exists=True, help="a file or a directory of files")],
    source: Annotated[str, typer.Option(help="parser name: cloudtrail, k8s_audit or app")] = "cloudtrail",
    whole_file: Annotated[bool, typer.Option(help="send each file as one record (S3 objects)")] = False,
) -> None:
    """Produce log files to the source's raw topic, with a progress bar and rate."""
    settings = load_settings()
    topic = topic_for(settings.kafka, source)
    files = files_under(path)
    producer = make_producer(settings.kafka)
    started = time.monotonic()
    sent = 0
    failures: list[Exception] = []  # appended by the producer's I/O thread
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, TextColumn("{task.fields[rate]}"), console=console) as progress:
        task = progress.add_task(f"→ {topic}", total=len(files), rate="")
        def show_rate(advance: int) -> None:
            rate = sent / max(time.monotonic() - started, 1e-6)
            progress.update(task, advance=advance, rate=f"{sent:,} records, {rate:,.0f}/s")

        for file in files:
            for value in file_records(file, whole_file):
                producer.send(topic, value=value).add_errback(failures.append)
                sent += 1
                if sent % 5000 == 0:  # a single large file still shows its progress
                    show_rate(0)
            show_rate(1)
        producer.flush()
    producer.close()
    if failures:  # e.g. a record above the topic's max.message.bytes: say so, do not report success
        console.print(f"[red]{len(failures):,} of {sent:,} records were not produced[/], e.g. {failures[0]!r}")
        raise typer.Exit(1)
    console.print(f"produced {sent:,} records from {len(files)} file(s) to {topic}")


def demo(
    loop: Annotated[bool, typer.Option("--loop", help="repeat every --interval seconds")] = False,
    interval_s: Annotated[float, typer.Option("--interval")] = 30.0,
    samples: Annotated[Path, typer.Option(help="samples directory")] = DEFAULT_SAMPLES,
) -> None:
    """Produce the bundled synthetic samples (re-dated to today) to the raw topics."""
    settings = load_settings()
    producer = make_producer(settings.kafka)
    pass_number = 0
    try:
        while True:
            sent = 0
            for line in sample_lines(samples, pass_number=pass_number):
                producer.send(topic_for(settings.kafka, line.parser), value=line.value)
                sent += 1
            producer.flush()
            console.print(f"pass {pass_number}: produced {sent} sample records")
            pass_number += 1
            if not loop:
                return
            time.sleep(interval_s)
    finally:
        producer.close()


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="newest entries to show")] = 20,
    error_type: Annotated[str | None, typer.Option(help="only this error type")] = None,
) -> None:
    """Newest DLQ entries with their reason and source coordinates."""
    from indexing.client import make_client
    from ingest.dlq_tools import list_entries

    settings = load_settings()
    entries = list_entries(make_client(settings.elasticsearch), settings, limit, error_type)
    table = Table("time", "source", "error", "message", "bytes", expand=True)
    for entry in entries:
        dlq = entry["dlq"]
        table.add_row(
            entry["@timestamp"][5:19].replace("T", " "),
            f"{dlq['topic']}[{dlq['partition']}]@{dlq['offset']} ({dlq['parser']})",
            dlq["error_type"],
            dlq["message"][:300],
            str(dlq["original_size"]),
        )
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    error_type: Annotated[str | None, typer.Option(help="only this error type")] = None,
    limit: Annotated[int, typer.Option(help="at most this many entries")] = 1000,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
) -> None:
    """Re-inject DLQ entries into their raw topic (after fixing a parser or a mapping)."""
    from indexing.client import make_client
    from ingest.dlq_tools import list_entries
    from ingest.dlq_tools import replay as do_replay

    settings = load_settings()
    entries = list_entries(make_client(settings.elasticsearch), settings, limit, error_type)
    report = do_replay(settings, entries, dry_run=dry_run)
    verb = "would replay" if dry_run else "replayed"
    console.print(f"{verb} {report.replayed} entries ({report.from_source_topic} re-read from their raw topic)")
    for problem in report.unavailable:
        console.print(f"[yellow]skipped[/] {problem}")


@config_app.command("show")
def config_show() -> None:
    """The effective configuration (defaults + YAML + environment), secrets masked."""
    settings = load_settings()
    console.print_json(orjson.dumps(settings.model_dump(mode="json")).decode())


def doctor() -> None:
    """Check connectivity, topics, templates and rules, and say what to fix."""
    from siem.doctor import run_checks

    results = run_checks(load_settings())
    table = Table("check", "result", "what to do")
    failed = 0
    for check in results:
        failed += not check.ok
        table.add_row(check.name, "[green]ok[/]" if check.ok else "[red]FAIL[/]", check.detail)
    console.print(table)
    if failed:
        raise typer.Exit(1)
