"""Structured logging: ECS JSON lines when stderr is not a terminal (collected by a log shipper), readable
lines on a terminal. Secrets never reach a log line: settings hold them as SecretStr, which prints masked."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime

import orjson
from rich.console import Console
from rich.logging import RichHandler


class EcsJsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "@timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
            "process.thread.name": record.threadName,
            "ecs.version": "8.11.0",
        }
        if record.exc_info:
            doc["error.stack_trace"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


def configure(level: str = "INFO", json: bool | None = None, console: Console | None = None) -> None:
    """``console``: log through rich above a live status line (terminal only) instead of through it."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    handler: logging.Handler
    if console is not None and not use_json:
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        if use_json:
            handler.setFormatter(EcsJsonFormatter())
        else:
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kafka-python is chatty at INFO (every metadata refresh); its warnings still show.
    logging.getLogger("kafka").setLevel(logging.WARNING)
    # kafka-python 3 warns whenever its I/O loop waited >100 ms for the GIL: noise under load, not a fault.
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
    logging.getLogger("elastic_transport").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
