"""The pipeline's exception tree, in one place.

::

    PipelineError                 base: anything the pipeline raises on purpose
    ├── ConfigError               invalid configuration (names the field)
    ├── StackError                the local Kafka/Elasticsearch stack could not be resolved/started/stopped
    ├── ParseError                a record could not become ECS events (carries source coordinates)
    ├── RuleError                 a Sigma rule could not be loaded/compiled (carries file and location)
    └── IndexingError             Elasticsearch refused a document or a request (carries index and id)

Each error carries *where* it happened so an operator can find the record, rule or document. Errors that
describe bad input are never raised out of a consumer loop: they become DLQ entries.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SourceCoordinates:
    """Where a Kafka record came from."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


class ConfigError(PipelineError):
    """Configuration is invalid; the message names the offending field."""


class StackError(PipelineError):
    """The local service stack (Kafka, Elasticsearch) failed to resolve, start or stop."""


class ParseError(PipelineError):
    """A record could not be turned into ECS events.

    ``error_type`` is one of a fixed set (see ``parsers.base.ErrorType``) so metrics stay bounded.
    """

    def __init__(self, error_type: str, message: str, where: SourceCoordinates | None = None) -> None:
        self.error_type = error_type
        self.message = message
        self.where = where
        location = f" at {where}" if where else ""
        super().__init__(f"{error_type}{location}: {message}")


class RuleError(PipelineError):
    """A Sigma rule could not be loaded, compiled or evaluated."""

    def __init__(self, message: str, rule_file: str | None = None, location: str | None = None) -> None:
        self.message = message
        self.rule_file = rule_file
        self.location = location
        where = ""
        if rule_file:
            where = f" in {rule_file}" + (f" ({location})" if location else "")
        super().__init__(f"{message}{where}")


class IndexingError(PipelineError):
    """Elasticsearch refused a request or a document."""

    def __init__(self, message: str, index: str | None = None, doc_id: str | None = None) -> None:
        self.index = index
        self.doc_id = doc_id
        where = f" ({index}/{doc_id})" if index or doc_id else ""
        super().__init__(f"{message}{where}")
