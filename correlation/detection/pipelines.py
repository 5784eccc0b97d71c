"""Log-source routing and field-mapping pipelines.

Routing decides which datasets (the parsers' output) a rule sees from its ``logsource``: every attribute the rule
sets (category, product, service) must be one the dataset accepts. Field mappings are pySigma processing
pipelines kept as YAML in ``<rules dir>/pipelines/*.yaml`` (``.yaml``, not ``.yml``, so rule loaders and
``sigma check`` do not mistake them for rules); users adapt mappings there without touching code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sigma.exceptions import SigmaError
from sigma.processing.pipeline import ProcessingPipeline
from sigma.rule import SigmaLogSource

from siem.errors import RuleError

APPLICATION_FRAMEWORKS = frozenset(
    {
        "jvm",
        "java",
        "python",
        "django",
        "ruby_on_rails",
        "rails",
        "spring",
        "velocity",
        "nodejs",
        "sql",
        "php",
        "golang",
        "dotnet",
        "flask",
    }
)


@dataclass(frozen=True)
class Route:
    """The log-source attribute values one dataset accepts (``None`` in a rule = unconstrained)."""

    dataset: str
    categories: frozenset[str]
    products: frozenset[str]
    services: frozenset[str]

    def accepts(self, logsource: SigmaLogSource) -> bool:
        if logsource.category is None and logsource.product is None and logsource.service is None:
            return False
        checks = (
            (logsource.category, self.categories),
            (logsource.product, self.products),
            (logsource.service, self.services),
        )
        return all(value is None or value.lower() in accepted for value, accepted in checks)


ROUTES: tuple[Route, ...] = (
    Route("aws.cloudtrail", frozenset(), frozenset({"aws"}), frozenset({"cloudtrail"})),
    Route("kubernetes.audit_logs", frozenset({"application"}), frozenset({"kubernetes"}), frozenset({"audit"})),
    Route(
        "app.access",
        frozenset({"webserver"}),
        frozenset({"apache", "nginx", "iis", "webserver"}),
        frozenset({"access"}),
    ),
    Route("app.logs", frozenset({"application"}), APPLICATION_FRAMEWORKS, frozenset()),
)


def datasets_for(logsource: SigmaLogSource, routes: tuple[Route, ...] = ROUTES) -> list[str]:
    return [route.dataset for route in routes if route.accepts(logsource)]


def load_pipelines(directories: list[Path]) -> tuple[ProcessingPipeline, list[Path]]:
    """All ``pipelines/*.yaml`` under the rule directories, merged (pySigma orders them by priority)."""
    merged = ProcessingPipeline()
    files: list[Path] = []
    for directory in directories:
        for path in sorted((directory / "pipelines").glob("*.yaml")):
            try:
                pipeline = ProcessingPipeline.from_yaml(path.read_text(encoding="utf-8"))
            except (SigmaError, OSError, ValueError) as exc:
                raise RuleError(f"invalid processing pipeline: {exc}", str(path)) from None
            merged = merged + pipeline
            files.append(path)
    return merged, files
