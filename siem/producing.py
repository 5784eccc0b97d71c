"""Producing records to the raw topics: `siem replay` (files) and `siem demo` (bundled samples)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from kafka import KafkaProducer

from siem.config import KafkaSettings
from siem.errors import ConfigError


def topic_for(settings: KafkaSettings, parser: str) -> str:
    for topic, name in settings.raw_topics.items():
        if name == parser:
            return topic
    raise ConfigError(f"no raw topic routes to parser {parser!r}; kafka.raw_topics = {settings.raw_topics}")


def make_producer(settings: KafkaSettings) -> KafkaProducer:
    return KafkaProducer(**settings.client_options(), acks="all", linger_ms=20, max_request_size=16 * 1024 * 1024)


def file_records(path: Path, whole_file: bool = False) -> Iterator[bytes]:
    """Records in a file: one per line (JSON lines, log lines), or the whole file as one record (an S3
    CloudTrail object, a gzip file) when ``whole_file`` or when the file is gzip-compressed."""
    data = path.read_bytes()
    if whole_file or data[:2] == b"\x1f\x8b":
        yield data
        return
    for line in data.splitlines():
        if line.strip():
            yield line


def files_under(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    return [path]


def produce(producer: KafkaProducer, topic: str, records: Iterable[bytes]) -> int:
    count = 0
    for value in records:
        producer.send(topic, value=value)
        count += 1
    return count
