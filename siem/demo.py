"""The bundled demo samples (``samples/``): re-dated to today and produced to the raw topics.

The samples are synthetic and fixed on 2026-11-01; the demo moves them to the current day (keeping times of day,
so bursts and sequences keep their spacing) and, when looping, gives every pass fresh event ids so each pass
adds documents instead of overwriting the previous pass's (ids are deterministic by design).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from siem.config import PROJECT_ROOT

SAMPLE_DAY = datetime(2026, 11, 1, tzinfo=UTC)
DEFAULT_SAMPLES = PROJECT_ROOT / "samples"

# sample file -> parser name (the raw topic is looked up from kafka.raw_topics)
SAMPLE_FILES: dict[str, str] = {
    "cloudtrail.jsonl": "cloudtrail",
    "k8s_audit.jsonl": "k8s_audit",
    "app.log": "app",
}

_ID_FIELDS = re.compile(r'"(eventID|auditID)":"([^"]+)"')


@dataclass(frozen=True, slots=True)
class SampleLine:
    parser: str
    value: bytes


def _date_rewrites(day: datetime) -> list[tuple[str, str]]:
    """Every spelling of the sample day in the samples, mapped to the same spelling of ``day``."""
    rewrites: list[tuple[str, str]] = []
    for fmt in ("%Y-%m-%d", "%d/%b/%Y", "%Y/%m/%d"):
        rewrites.append((SAMPLE_DAY.strftime(fmt), day.strftime(fmt)))
    # RFC 3164 pads the day with a space: "Nov  1"
    rewrites.append((f"{SAMPLE_DAY:%b} {SAMPLE_DAY.day:>2}", f"{day:%b} {day.day:>2}"))
    return rewrites


def redate(line: str, day: datetime, pass_number: int) -> str:
    for old, new in _date_rewrites(day):
        line = line.replace(old, new)
    if pass_number:
        line = _ID_FIELDS.sub(lambda m: f'"{m.group(1)}":"{m.group(2)}-p{pass_number}"', line)
    return line


def sample_lines(
    directory: Path = DEFAULT_SAMPLES, day: datetime | None = None, pass_number: int = 0
) -> Iterator[SampleLine]:
    day = day or datetime.now(UTC)
    for filename, parser in SAMPLE_FILES.items():
        path = directory / filename
        for raw in path.read_text(encoding="utf-8").splitlines():
            if raw.strip():
                yield SampleLine(parser, redate(raw, day, pass_number).encode())
