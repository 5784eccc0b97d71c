"""Render the saved objects as NDJSON (the format of Kibana's saved-objects import and export).

``python -m kibana.build`` rewrites ``kibana/saved_objects.ndjson``; a unit test fails when the committed file
differs from what the code generates, so the objects are reviewed as code and the file never drifts.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path

from kibana.objects import SavedObject, build_objects

NDJSON_PATH = Path(__file__).resolve().parent / "saved_objects.ndjson"


def render_ndjson(objects: Iterable[SavedObject]) -> str:
    """One JSON object per line, keys in a stable order, trailing newline."""
    return "".join(json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n" for obj in objects)


def generate(prefix: str = "siem") -> str:
    return render_ndjson(build_objects(prefix))


def write(path: Path = NDJSON_PATH, prefix: str = "siem") -> Path:
    path.write_text(generate(prefix), encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else NDJSON_PATH
    print(write(target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
