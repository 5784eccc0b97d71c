"""The compiled parsers (mypyc, setup.py) make exactly what the interpreted source makes, on the whole
third-party corpus plus type-mutated records: events, ids, native views, DLQ reasons and skip counts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from parsers import cloudtrail_ecs
from siem.buildinfo import is_compiled
from tests.unit import parser_digest

ROOT = Path(__file__).resolve().parents[2]


def test_compiled_and_interpreted_parsers_give_identical_output(tmp_path: Path) -> None:
    interpreted = tmp_path / "parsers"
    interpreted.mkdir()
    for source in (ROOT / "parsers").glob("*.py"):
        shutil.copy2(source, interpreted / source.name)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    script = Path(parser_digest.__file__)
    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    module_file, parses, theirs = run.stdout.split()
    assert module_file == str(interpreted / "cloudtrail_ecs.py")  # the copy, not the compiled build

    ours = parser_digest.digest()
    assert is_compiled(cloudtrail_ecs) == (os.environ.get("SIEM_PURE_PYTHON") != "1")
    assert ours[0] == int(parses) > 30_000
    assert ours[1] == theirs
