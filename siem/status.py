"""The live status line: events consumed / indexed, alerts, incidents, DLQ, Elasticsearch state."""

from __future__ import annotations

import urllib.request
from typing import Any

import orjson
from elasticsearch import Elasticsearch
from rich.text import Text

from siem.config import Settings


def count_documents(client: Elasticsearch, index_pattern: str) -> int | None:
    try:
        return int(client.count(index=index_pattern, ignore_unavailable=True, allow_no_indices=True)["count"])
    except Exception:  # status is best effort: ES may be down, which the line shows anyway
        return None


def fetch_health(settings: Settings, timeout_s: float = 2.0) -> dict[str, Any] | None:
    host = settings.pipeline.metrics_host if settings.pipeline.metrics_host != "0.0.0.0" else "127.0.0.1"
    url = f"http://{host}:{settings.pipeline.metrics_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - loopback URL from config
            return dict(orjson.loads(response.read()))
    except urllib.error.HTTPError as exc:  # 503 still carries the report
        return dict(orjson.loads(exc.read()))
    except OSError:
        return None


def render(health: dict[str, Any] | None, incidents: int | None, events_in_es: int | None) -> Text:
    if health is None:
        return Text("pipeline not reachable (is `siem run` running?)", style="red")
    stages = health.get("stages", {})
    detect = stages.get("detect", {})
    correlate = stages.get("correlate", {})
    es_ok = all(stage.get("elasticsearch_ok", True) for stage in stages.values()) and (
        health.get("elasticsearch", {}).get("reachable") is not False
    )
    kafka_ok = health.get("kafka", {}).get("reachable") is not False
    line = Text()
    line.append("● " if health.get("healthy") else "✖ ", style="green" if health.get("healthy") else "red")
    line.append(f"consumed {detect.get('records', 0):,}  ")
    line.append(f"indexed {detect.get('indexed', 0):,}  ")
    if events_in_es is not None:
        line.append(f"(in ES {events_in_es:,})  ", style="dim")
    line.append(f"alerts {detect.get('alerts', 0) + correlate.get('alerts', 0):,}  ", style="yellow")
    line.append(f"incidents {incidents if incidents is not None else '?'}  ", style="magenta")
    line.append(f"dlq {detect.get('dlq', 0) + correlate.get('dlq', 0):,}  ")
    line.append(f"pending {detect.get('pending', 0) + correlate.get('pending', 0):,}  ", style="dim")
    line.append("ES ok" if es_ok else "ES unreachable: partitions paused", style="green" if es_ok else "red")
    if not kafka_ok:
        line.append("  Kafka unreachable", style="red")
    return line
