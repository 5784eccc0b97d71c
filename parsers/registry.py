"""The one table of source parsers, keyed by the parser name used in topic routing (``KafkaSettings.raw_topics``)."""

from __future__ import annotations

from collections.abc import Callable

from parsers.app import AppLogParser
from parsers.base import Parser
from parsers.cloudtrail import CloudTrailParser
from parsers.common import ParserOptions
from parsers.k8s_audit import K8sAuditParser
from parsers.timestamps import Clock
from siem.config import ParserSettings
from siem.errors import ConfigError

PARSER_TYPES: tuple[Callable[[ParserOptions], Parser], ...] = (CloudTrailParser, K8sAuditParser, AppLogParser)


def build_parsers(settings: ParserSettings, clock: Clock | None = None) -> dict[str, Parser]:
    """One parser instance per source, keyed by its name and sharing the options resolved from ``settings``.

    ``clock`` (for ``event.ingested`` and events without a time) is injectable so tests control time.
    """
    options = ParserOptions.from_settings(settings, clock)
    parsers = [factory(options) for factory in PARSER_TYPES]
    return {parser.name: parser for parser in parsers}


def parsers_for_topics(raw_topics: dict[str, str], parsers: dict[str, Parser]) -> dict[str, Parser]:
    """Topic -> parser, failing at start (not per record) when config names an unknown parser."""
    unknown = sorted({name for name in raw_topics.values() if name not in parsers})
    if unknown:
        raise ConfigError(f"kafka.raw_topics names unknown parser(s) {unknown}; known: {sorted(parsers)}")
    return {topic: parsers[name] for topic, name in raw_topics.items()}
