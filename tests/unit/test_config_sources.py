"""Where settings come from: defaults, an optional YAML file (SIEM_CONFIG), then SIEM_* variables; bad values fail
at start with the field named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from siem.config import load_settings
from siem.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("SIEM_"):
            monkeypatch.delenv(name)


def test_yaml_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "siem.yaml"
    config.write_text(
        "kafka:\n  bootstrap_servers: kafka-1:9093,kafka-2:9093\n  raw_topics:\n    aws.cloudtrail: cloudtrail\n"
        "pipeline:\n  poll_max_records: 123\n  silent_sources:\n    cloudtrail: 45\n"
        "elasticsearch:\n  retention_days: 90\n"
    )
    monkeypatch.setenv("SIEM_CONFIG", str(config))
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "kafka-1:9093,kafka-2:9093"
    assert settings.kafka.raw_topics == {"aws.cloudtrail": "cloudtrail"}
    assert (settings.pipeline.poll_max_records, settings.elasticsearch.retention_days) == (123, 90)
    assert settings.pipeline.silent_sources == {"cloudtrail": 45.0}
    monkeypatch.setenv("SIEM_PIPELINE__POLL_MAX_RECORDS", "7")  # the environment wins over the file
    assert load_settings().pipeline.poll_max_records == 7


def test_a_bad_value_in_the_file_names_its_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "siem.yaml"
    config.write_text("pipeline:\n  poll_max_records: 0\n")
    monkeypatch.setenv("SIEM_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"pipeline\.poll_max_records"):
        load_settings()
    config.write_text("pipeline:\n  pol_max_records: 10\n")  # a typo is refused, not ignored
    with pytest.raises(ConfigError, match=r"pipeline\.pol_max_records"):
        load_settings()


def test_a_missing_config_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIEM_CONFIG", str(tmp_path / "nowhere.yaml"))
    with pytest.raises(ConfigError, match="not a file"):
        load_settings()


def test_kafka_clients_try_a_lost_broker_again_at_least_every_second_unless_configured():
    from siem.config import KafkaSettings

    assert KafkaSettings().client_options()["reconnect_backoff_max_ms"] == 1000
    assert KafkaSettings(reconnect_backoff_max_ms=5000).client_options()["reconnect_backoff_max_ms"] == 5000
