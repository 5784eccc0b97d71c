"""Digest of everything the parsers make of the third-party corpus, for comparing two builds of the parsers.

Run as a script it prints ``<parser module file> <number of parses> <digest>``; the build comparison test runs it
against an interpreted copy of ``parsers/`` and compares with the compiled build in its own process.
"""

from __future__ import annotations

import random
import sys
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT))  # after the interpreted copy the test puts first on the path

from parsers import cloudtrail_ecs  # noqa: E402
from parsers.base import SourceRecord  # noqa: E402
from parsers.registry import build_parsers  # noqa: E402
from siem.config import ParserSettings  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
SUFFIXES = (".json", ".jsonl", ".log", ".txt", ".ndjson")
ODD_VALUES: list[Any] = [1, 1.5, True, None, [], {}, "x", [1, "a"], {"a": [1]}, -1, ""]


def corpus() -> list[bytes]:
    """Every text file of the corpus whole and line by line, the records Panther/Falco wrap in ``log``/``json``,
    and three copies of each of the first 3,000 objects with one top-level value swapped for an odd type."""
    inputs: list[bytes] = []
    for path in sorted(DATA.rglob("*")):
        if not (path.is_file() and path.suffix in SUFFIXES and path.stat().st_size < 5_000_000):
            continue
        data = path.read_bytes()
        lines = [line for line in data.splitlines() if line.strip()]
        inputs.append(data)
        inputs.extend(lines)
        if path.suffix == ".jsonl":
            for line in lines:
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                for key in ("log", "json", "input"):
                    if isinstance(obj, dict) and key in obj:
                        value = obj[key]
                        inputs.append(value.encode() if isinstance(value, str) else orjson.dumps(value))
    rng = random.Random(7)
    mutated: list[bytes] = []
    for raw in inputs[:3000]:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and obj:
            for _ in range(3):
                copy = dict(obj)
                copy[rng.choice(list(copy))] = rng.choice(ODD_VALUES)
                mutated.append(orjson.dumps(copy))
    return inputs + mutated


def digest() -> tuple[int, str]:
    """(parses, SHA-256 over events, ids, native views, DLQ reasons and skip counts) for every parser under the
    default settings and under keep_original + extra redaction paths, with a fixed clock."""
    clock = lambda: datetime(2024, 1, 1, tzinfo=UTC)  # noqa: E731
    inputs = corpus()
    hasher = sha256()
    parses = 0
    configurations = [
        ParserSettings(),
        ParserSettings(keep_original=True, extra_redaction_paths=["user.name", "requestParameters.bucketName"]),
    ]
    for settings in configurations:
        for _, parser in sorted(build_parsers(settings, clock).items()):
            for offset, raw in enumerate(inputs):
                result = parser.parse(SourceRecord("t", 0, offset, raw, timestamp_ms=1_700_000_000_000))
                events = [(e.id, e.dataset, e.ecs, e.native) for e in result.events]
                failures = [(f.error_type.value, f.message, f.index_in_record) for f in result.failures]
                hasher.update(orjson.dumps([events, failures, result.skipped], option=orjson.OPT_SORT_KEYS))
                parses += 1
    return parses, hasher.hexdigest()


if __name__ == "__main__":
    count, text = digest()
    print(cloudtrail_ecs.__file__, count, text)
