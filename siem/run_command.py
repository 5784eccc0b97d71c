"""`siem run`: the pipeline as a service, optionally with the embedded stack and the demo feed."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from ingest.service import Service, StageName, build_service
from siem import logs
from siem.config import Settings, load_settings
from siem.demo import DEFAULT_SAMPLES, sample_lines
from siem.producing import make_producer, topic_for
from siem.status import count_documents, render

log = logging.getLogger(__name__)
console = Console(stderr=True)


def _install_signal_handlers(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s received: stopping (flush, commit, exit)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def feed_demo(settings: Settings, stop: threading.Event, samples: Path, loop: bool, interval_s: float) -> int:
    """Produce the samples (re-dated to today) once, or every ``interval_s`` until ``stop``."""
    producer = make_producer(settings.kafka)
    sent = 0
    try:
        pass_number = 0
        while not stop.is_set():
            for line in sample_lines(samples, pass_number=pass_number):
                producer.send(topic_for(settings.kafka, line.parser), value=line.value)
                sent += 1
            producer.flush()
            pass_number += 1
            if not loop:
                break
            stop.wait(interval_s)
    finally:
        producer.close()
    return sent


def run(
    stage: Annotated[StageName | None, typer.Option(help="run one stage only (default: both)")] = None,
    embedded: Annotated[bool, typer.Option("--embedded", help="start the local Kafka + Elasticsearch first")] = False,
    demo: Annotated[bool, typer.Option("--demo", help="feed the bundled samples to the raw topics")] = False,
    demo_interval_s: Annotated[float, typer.Option(help="with --demo: seconds between sample passes")] = 30.0,
    samples: Annotated[Path, typer.Option(help="with --demo: samples directory")] = DEFAULT_SAMPLES,
    live: Annotated[
        bool | None, typer.Option("--live/--no-live", help="live status line (default: on a terminal)")
    ] = None,
) -> None:
    """Run the pipeline until SIGTERM/SIGINT: consume, normalize, detect, correlate, index."""
    show_live = console.is_terminal if live is None else live
    logs.configure(console=console if show_live else None)
    settings = load_settings()
    if embedded:
        from stack.services import LocalStack

        LocalStack(settings.stack).up()
    stages: tuple[StageName, ...] = (stage,) if stage else ("detect", "correlate")
    service = build_service(settings, stages)
    stop = service.stop_event
    _install_signal_handlers(stop)
    service.start()
    console.print(
        f"[bold]siem[/] running stages {', '.join(stages)}; metrics/health on "
        f"{settings.pipeline.metrics_host}:{settings.pipeline.metrics_port}; Ctrl-C to stop"
    )
    if demo:
        threading.Thread(
            target=feed_demo, args=(settings, stop, samples, True, demo_interval_s), name="demo-feed", daemon=True
        ).start()
    try:
        _wait(service, settings, show_live)
    finally:
        service.stop()
    if service.alive():
        # Bounded shutdown: a stage stuck past the timeout loses only its final commit; its records are re-read
        # (and re-indexed under the same ids) by the next start.
        console.print("[red]a stage did not stop within the shutdown timeout; exiting without its final commit")
        logging.shutdown()
        os._exit(3)
    if service.errors:
        console.print(f"[red]stopped after errors:[/] {service.errors}")
        raise typer.Exit(1)
    console.print("stopped cleanly: buffers flushed, offsets committed")


def _wait(service: Service, settings: Settings, show_live: bool) -> None:
    es = service.client
    prefix = settings.elasticsearch.index_prefix
    if not show_live:
        last_log = 0.0
        while not service.stop_event.wait(1.0):
            if time.monotonic() - last_log >= 30:
                log.info("status %s", service.health_report())
                last_log = time.monotonic()
        return
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        ticks = 0
        incidents = events = None
        while not service.stop_event.wait(0.5):
            if ticks % 4 == 0:  # ES counts every 2 s: cheap, and enough for a human
                incidents = count_documents(es, settings.elasticsearch.incidents_index)
                events = count_documents(es, f"{prefix}-events-*")
            live.update(render(service.health_report(), incidents, events))
            ticks += 1
