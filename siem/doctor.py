"""`siem doctor`: each check says what is wrong and what to do about it."""

from __future__ import annotations

from dataclasses import dataclass

from siem.config import Settings


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def _kafka(settings: Settings) -> list[Check]:
    from kafka import KafkaAdminClient

    from ingest.kafka_io import pipeline_topics

    try:
        admin = KafkaAdminClient(**settings.kafka.client_options(), request_timeout_ms=5000)
    except Exception as exc:
        hint = f"cannot reach Kafka at {settings.kafka.bootstrap_servers}: {type(exc).__name__}: {exc}. "
        hint += "Start it (`siem stack up` for the local one) or set SIEM_KAFKA__BOOTSTRAP_SERVERS."
        return [Check("kafka reachable", False, hint)]
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    missing = [t for t in pipeline_topics(settings.kafka) if t not in existing]
    return [
        Check("kafka reachable", True, settings.kafka.bootstrap_servers),
        Check("kafka topics", not missing, f"missing {missing}: run `siem setup`" if missing else "all present"),
    ]


def _elasticsearch(settings: Settings) -> list[Check]:
    from indexing.client import make_client
    from indexing.templates import missing_templates

    client = make_client(settings.elasticsearch, request_timeout=5)
    try:
        health = client.cluster.health()
    except Exception as exc:
        hint = f"cannot reach Elasticsearch at {settings.elasticsearch.hosts}: {type(exc).__name__}. "
        hint += "Start it (`siem stack up`) or set SIEM_ELASTICSEARCH__HOSTS / credentials."
        return [Check("elasticsearch reachable", False, hint)]
    status = health["status"]
    checks = [Check("elasticsearch reachable", status != "red", f"cluster status {status}")]
    missing = missing_templates(client, settings.elasticsearch)
    detail = f"missing {missing}: run `siem setup`" if missing else "all installed"
    checks.append(Check("index templates", not missing, detail))
    return checks


def _rules(settings: Settings) -> list[Check]:
    from correlation.detection.engine import build_rule_set

    try:
        rules = build_rule_set(settings.rules)
    except Exception as exc:
        return [Check("sigma rules", False, f"{exc}; fix the rules or rules.directories")]
    detail = f"{len(rules.rules)} rules, {len(rules.correlations)} correlations loaded"
    if rules.problems:
        detail += f"; {len(rules.problems)} skipped (see `siem rules check`)"
    return [Check("sigma rules", bool(rules.rules), detail)]


def run_checks(settings: Settings) -> list[Check]:
    return [*_kafka(settings), *_elasticsearch(settings), *_rules(settings)]
