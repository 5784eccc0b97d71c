"""Load Sigma rules with pySigma, report every rule that cannot be used, compile the rest.

``load_rules`` never raises for a bad rule: each one becomes a :class:`RuleProblem` (file + reason) and the
others load. Sigma filters (meta filters) in the rule directories are applied by pySigma's collection.
Correlation rules are handed through untouched in ``LoadedRules.correlations``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule

from correlation.detection.compiler import Predicate, compile_detection, required_slots
from correlation.detection.conditions import compile_conditions
from correlation.detection.modifiers import RuleStats
from correlation.detection.pipelines import ROUTES, Route, datasets_for, load_pipelines
from siem.errors import RuleError

SKIPPED_DIRS = frozenset({"tests", "pipelines", "deprecated", "unsupported"})
PROJECT_LICENSE = "Apache-2.0"
DRL_MARKER = "LICENSE.Detection.Rules.md"


@dataclass(frozen=True)
class RuleProblem:
    """A rule (or file) that was skipped, and why."""

    rule_file: str
    reason: str
    rule_id: str | None = None
    title: str | None = None

    def __str__(self) -> str:
        name = f" [{self.title}]" if self.title else ""
        return f"{self.rule_file}{name}: {self.reason}"


@dataclass
class CompiledRule:
    """One Sigma rule ready to match: predicate, routing, index constraints and alert metadata."""

    rule: SigmaRule
    rule_id: str
    title: str
    datasets: tuple[str, ...]
    predicate: Predicate
    constraints: dict[str, frozenset[str]]
    gates: tuple[int, ...]  # shared detection items every match requires (see compiler.GATES)
    fields: tuple[str, ...]
    source_file: str
    ruleset: str
    license: str | None
    stats: RuleStats = field(default_factory=RuleStats)


@dataclass
class LoadedRules:
    rules: list[CompiledRule] = field(default_factory=list)
    correlations: list[SigmaCorrelationRule] = field(default_factory=list)
    problems: list[RuleProblem] = field(default_factory=list)
    pipeline_files: list[Path] = field(default_factory=list)
    collection: SigmaCollection | None = None


def _rule_file(rule: SigmaRule | SigmaCorrelationRule) -> str:
    source = rule.source
    return str(source.path) if source is not None and source.path is not None else "<unknown>"


def detection_fields(detection: SigmaDetection | SigmaDetectionItem) -> list[str]:
    if isinstance(detection, SigmaDetectionItem):
        return [detection.field] if detection.field else []
    return [f for d in detection.detection_items for f in detection_fields(d)]


def compile_rule(
    rule: SigmaRule,
    placeholders: dict[str, list[str]],
    datasets: Iterable[str],
    ruleset: str = "",
    license_name: str | None = None,
) -> CompiledRule:
    """Compile one (already pipeline-processed) pySigma rule; raises :class:`RuleError`."""
    stats = RuleStats()
    if rule.errors:
        raise RuleError("; ".join(str(e) for e in rule.errors), _rule_file(rule))
    try:
        predicate, constraints, gates = compile_conditions(
            rule.detection,
            lambda d: compile_detection(d, stats, placeholders),
            lambda d: required_slots(d, placeholders),
        )
    except RuleError as exc:
        raise RuleError(exc.message, _rule_file(rule), exc.location) from None
    except (SigmaError, ValueError, TypeError) as exc:
        raise RuleError(f"cannot compile: {exc}", _rule_file(rule)) from None
    fields = sorted({f for d in rule.detection.detections.values() for f in detection_fields(d)})
    return CompiledRule(
        rule=rule,
        rule_id=str(rule.id) if rule.id else rule.title,
        title=rule.title,
        datasets=tuple(datasets),
        predicate=predicate,
        constraints=constraints,
        gates=tuple(gates),
        fields=tuple(fields),
        source_file=_rule_file(rule),
        ruleset=ruleset,
        license=license_name or (str(rule.license) if rule.license else None),
        stats=stats,
    )


def _is_rule_file(path: Path, problems: list[RuleProblem]) -> Path | None:
    if SKIPPED_DIRS.intersection(path.parts[:-1]):
        return None
    try:
        with path.open(encoding="utf-8") as handle:
            list(yaml.safe_load_all(handle))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        problems.append(RuleProblem(str(path), f"not valid YAML: {exc}"))
        return None
    return path


def _ruleset_of(path: str, directories: list[Path], project_dir: Path) -> tuple[str, str | None]:
    """(ruleset name, license) for a rule file: the project's own rules or a community checkout."""
    resolved = Path(path).resolve()
    for directory in directories:
        base = directory.resolve()
        if base == resolved or base in resolved.parents:
            if base == project_dir.resolve():
                return "siem", PROJECT_LICENSE
            for candidate in [base, *base.parents][:4]:
                if (candidate / DRL_MARKER).exists():
                    return candidate.name, "DRL-1.1"
            return base.name, None
    return "", None


def load_rules(
    directories: list[Path],
    placeholders: dict[str, list[str]] | None = None,
    routes: tuple[Route, ...] = ROUTES,
    project_dir: Path | None = None,
    pipeline: ProcessingPipeline | None = None,
) -> LoadedRules:
    """Load, route, field-map and compile every rule under ``directories``."""
    placeholders = placeholders or {}
    project = project_dir or Path(__file__).resolve().parents[2] / "sigma_rules"
    result = LoadedRules()
    existing = [d for d in directories if d.exists()]
    for missing in sorted(set(directories) - set(existing)):
        result.problems.append(RuleProblem(str(missing), "rule directory does not exist"))
    if pipeline is None:
        # The project's own mappings always apply, also to rules from a community checkout.
        pipeline_dirs = existing + [project] if project.exists() and project not in existing else existing
        pipeline, result.pipeline_files = load_pipelines(pipeline_dirs)
    collection = SigmaCollection.load_ruleset(
        list(existing),
        collect_errors=True,
        on_beforeload=lambda p: _is_rule_file(p, result.problems),
    )
    result.collection = collection
    for rule in collection.rules:
        if isinstance(rule, SigmaCorrelationRule):
            result.correlations.append(rule)
            continue
        if not isinstance(rule, SigmaRule):
            continue
        problem = _load_one(rule, placeholders, routes, pipeline, existing, project, result)
        if problem:
            result.problems.append(problem)
    return result


def _load_one(
    rule: SigmaRule,
    placeholders: dict[str, list[str]],
    routes: tuple[Route, ...],
    pipeline: ProcessingPipeline,
    directories: list[Path],
    project: Path,
    result: LoadedRules,
) -> RuleProblem | None:
    path = _rule_file(rule)
    rule_id = str(rule.id) if rule.id else None

    def problem(reason: str) -> RuleProblem:
        return RuleProblem(path, reason, rule_id, rule.title)

    if rule.errors:
        return problem("; ".join(str(e) for e in rule.errors))
    datasets = datasets_for(rule.logsource, routes)
    if not datasets:
        return problem(f"log source {_logsource_text(rule)} is not ingested by this pipeline")
    try:
        pipeline.apply(rule)
    except SigmaError as exc:
        return problem(f"field mapping failed: {exc}")
    ruleset, license_name = _ruleset_of(path, directories, project)
    try:
        result.rules.append(compile_rule(rule, placeholders, datasets, ruleset, license_name))
    except RuleError as exc:
        return problem(exc.message)
    return None


def _logsource_text(rule: SigmaRule) -> str:
    parts: dict[str, Any] = {
        "category": rule.logsource.category,
        "product": rule.logsource.product,
        "service": rule.logsource.service,
    }
    return "/".join(f"{k}={v}" for k, v in parts.items() if v) or "(empty)"
