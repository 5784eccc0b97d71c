"""The operator commands against the real local stack: setup, doctor, replay, status, dlq list / replay.

Each command reads its settings from ``SIEM_*`` variables, as a user's shell would give them; the test points them
at topics, groups and indices of its own.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, TopicPartition
from typer.testing import CliRunner

from siem.cli import _mount_subcommands, app
from siem.config import Settings, load_settings
from stack.services import LocalStack
from tests.integration.pipeline_support import cleanup, count, isolated_settings, running_service, wait_for
from tests.integration.reliability_support import free_port, pipeline_env
from tests.integration.test_vertical_slice import CLOUDTRAIL

pytestmark = pytest.mark.integration

_mount_subcommands()


def topic_end(settings: Settings, topic: str) -> int:
    consumer = KafkaConsumer(**settings.kafka.client_options(), enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def test_operator_commands_on_the_local_stack(
    local_stack: LocalStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    isolated = isolated_settings(metrics_port=free_port())
    for name, value in pipeline_env(isolated, isolated.pipeline.metrics_port).items():
        if name.startswith("SIEM_"):
            monkeypatch.setenv(name, value)
    settings = load_settings()  # what the commands see
    assert settings.elasticsearch.index_prefix == isolated.elasticsearch.index_prefix
    prefix = settings.elasticsearch.index_prefix
    topic = next(t for t, p in settings.kafka.raw_topics.items() if p == "cloudtrail")
    es = Elasticsearch(hosts=[local_stack.elasticsearch_url])
    cli = CliRunner()
    try:
        # setup: topics and templates
        result = cli.invoke(app, ["setup"])
        assert result.exit_code == 0, result.output
        assert "templates installed" in result.output
        assert es.indices.exists_index_template(name=f"{prefix}-events")

        # doctor: everything in place, then a missing template is named with the fix
        result = cli.invoke(app, ["doctor"])
        assert result.exit_code == 0, result.output
        es.indices.delete_index_template(name=f"{prefix}-alerts")
        result = cli.invoke(app, ["doctor"])
        assert result.exit_code == 1 and f"missing ['{prefix}-alerts']: run `siem" in result.output, result.output
        assert cli.invoke(app, ["setup"]).exit_code == 0

        # replay: one file, every line produced, progress and rate shown
        lines = [orjson.dumps({**CLOUDTRAIL, "eventID": f"cli-{n}"}) for n in range(20)]
        lines.append(b'{"eventVersion": "1.08", "truncated')  # reaches the DLQ once the pipeline runs
        log_file = tmp_path / "trail.jsonl"
        log_file.write_bytes(b"\n".join(lines) + b"\n")
        result = cli.invoke(app, ["replay", str(log_file), "--source", "cloudtrail"])
        assert result.exit_code == 0, result.output
        assert f"produced {len(lines)} records" in result.output and "/s" in result.output
        assert topic_end(settings, topic) == len(lines)

        with running_service(settings, stages=("detect",)):
            assert wait_for(lambda: count(es, f"{prefix}-events-*") == 20 and count(es, f"{prefix}-dlq") == 1)
            # status: the live line of the running pipeline (its counts follow the acknowledgements it has collected)
            def status_line() -> str:
                result = cli.invoke(app, ["status"])
                assert result.exit_code == 0, result.output
                return result.output

            assert wait_for(lambda: all(part in status_line() for part in ("consumed 21", "indexed 20", "dlq 1"))), (
                status_line()
            )

            # dlq list shows the entry and why; dlq replay puts the record back on its raw topic
            result = cli.invoke(app, ["dlq", "list"])
            assert result.exit_code == 0 and "invalid_json" in result.output, result.output
            result = cli.invoke(app, ["dlq", "replay", "--dry-run"])
            assert result.exit_code == 0 and "would replay 1 entries" in result.output, result.output
            assert topic_end(settings, topic) == len(lines)
            result = cli.invoke(app, ["dlq", "replay"])
            assert result.exit_code == 0 and "replayed 1 entries" in result.output, result.output
            assert topic_end(settings, topic) == len(lines) + 1
        result = cli.invoke(app, ["status"])
        assert "pipeline not reachable" in result.output, "status says so when nothing runs"
    finally:
        cleanup(es, settings)
