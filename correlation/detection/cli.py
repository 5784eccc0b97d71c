"""``siem rules check`` and ``siem rules test`` (mounted by ``siem.cli``)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
import yaml

from correlation.detection.engine import RuleSet
from correlation.detection.loader import LoadedRules, load_rules
from parsers.base import ParsedEvent
from siem.config import load_settings

rules_app = typer.Typer(help="Sigma detection rules: check and test.", no_args_is_help=True)

DirsOption = typer.Option(None, "--dir", "-d", help="rule directory (repeatable); default: rules.directories")


def _load(directories: list[Path] | None) -> tuple[list[Path], LoadedRules]:
    settings = load_settings().rules
    dirs = list(directories) if directories else list(settings.directories)
    return dirs, load_rules(dirs, dict(settings.placeholders))


@rules_app.command("check")
def check(
    directories: list[Path] | None = DirsOption,
    sigma_cli: bool = typer.Option(True, help="also run sigma-cli's `sigma check` on each directory"),
) -> None:
    """Load every rule, print the ones that are skipped and why; non-zero exit if any is skipped."""
    dirs, loaded = _load(directories)
    by_dataset: dict[str, int] = {}
    for rule in loaded.rules:
        for dataset in rule.datasets:
            by_dataset[dataset] = by_dataset.get(dataset, 0) + 1
    typer.echo(f"loaded {len(loaded.rules)} rules, {len(loaded.correlations)} correlation rules")
    for dataset, count in sorted(by_dataset.items()):
        typer.echo(f"  {dataset}: {count}")
    for problem in loaded.problems:
        typer.secho(f"skipped: {problem}", fg=typer.colors.YELLOW)
    failed = bool(loaded.problems)
    if sigma_cli:
        failed = _sigma_check(dirs) or failed
    raise typer.Exit(1 if failed else 0)


def _sigma_check(dirs: list[Path]) -> bool:
    executable = shutil.which("sigma") or str(Path(sys.executable).with_name("sigma"))
    failed = False
    for directory in dirs:
        # attacktag / d3_fendtag download MITRE data; skip them so the check works offline.
        command = [executable, "check", "-x", "attacktag", "-x", "d3_fendtag", str(directory)]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        typer.echo(completed.stdout.strip())
        if completed.returncode != 0:
            typer.secho(completed.stderr.strip(), fg=typer.colors.RED)
            failed = True
    return failed


def run_rule_tests(rule_set: RuleSet, tests_dir: Path) -> list[str]:
    """Run ``tests/*.yaml`` (rule id, dataset, events that must / must not match); return failures."""
    failures: list[str] = []
    for path in sorted(tests_dir.glob("*.yaml")):
        spec: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        rule_id, dataset = str(spec["rule"]), str(spec["dataset"])
        if not any(r.rule_id == rule_id for r in rule_set.rules):
            failures.append(f"{path.name}: rule {rule_id} is not loaded")
            continue
        for expected, key in ((True, "match"), (False, "no_match")):
            for number, native in enumerate(spec.get(key) or []):
                event = ParsedEvent(f"{path.stem}-{key}-{number}", dataset, {}, native)
                hit = any(m.rule.rule_id == rule_id for m in rule_set.match(event))
                if hit != expected:
                    failures.append(f"{path.name}: {key}[{number}] {'did not match' if expected else 'matched'}")
    return failures


@rules_app.command("test")
def test(directories: list[Path] | None = DirsOption) -> None:
    """Run each rule directory's ``tests/*.yaml`` against the loaded rules."""
    dirs, loaded = _load(directories)
    rule_set = RuleSet.from_loaded(loaded)
    failures: list[str] = []
    for directory in dirs:
        failures.extend(run_rule_tests(rule_set, directory / "tests"))
    for failure in failures:
        typer.secho(f"FAIL {failure}", fg=typer.colors.RED)
    typer.echo(f"{len(failures)} failure(s)")
    raise typer.Exit(1 if failures else 0)
