"""Secrets in the settings never show: not in str/repr, JSON dumps, ``siem config show`` or log lines."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from siem import logs
from siem.config import ElasticsearchSettings, KafkaSettings, KibanaSettings, Settings, load_settings
from siem.errors import ConfigError

# Distinctive values, so a hit cannot be a coincidence.
SECRETS = {
    "kafka.sasl_password": "kafka-sasl-pw-7f3a9c",
    "elasticsearch.password": "es-basic-pw-41d2e8",
    "elasticsearch.api_key": "es-api-key-b09c55",
    "kibana.password": "kibana-pw-c8e017",
    "kibana.api_key": "kibana-api-key-5a6b7d",
}
ENV = {
    "SIEM_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
    "SIEM_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
    "SIEM_KAFKA__SASL_USERNAME": "siem",
    "SIEM_KAFKA__SASL_PASSWORD": SECRETS["kafka.sasl_password"],
    "SIEM_ELASTICSEARCH__USERNAME": "elastic",
    "SIEM_ELASTICSEARCH__PASSWORD": SECRETS["elasticsearch.password"],
    "SIEM_ELASTICSEARCH__API_KEY": SECRETS["elasticsearch.api_key"],
    "SIEM_KIBANA__USERNAME": "elastic",
    "SIEM_KIBANA__PASSWORD": SECRETS["kibana.password"],
    "SIEM_KIBANA__API_KEY": SECRETS["kibana.api_key"],
}


def assert_no_secret(text: str) -> None:
    leaked = [name for name, value in SECRETS.items() if value in text]
    assert not leaked, f"secrets leaked: {leaked}"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        kafka=KafkaSettings(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_username="siem",
            sasl_password=SECRETS["kafka.sasl_password"],
        ),
        elasticsearch=ElasticsearchSettings(
            hosts=["https://127.0.0.1:9200"],
            username="elastic",
            password=SECRETS["elasticsearch.password"],
            api_key=SECRETS["elasticsearch.api_key"],
        ),
        kibana=KibanaSettings(
            username="elastic",
            password=SECRETS["kibana.password"],
            api_key=SECRETS["kibana.api_key"],
        ),
    )


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SIEM_* variable or config file of the developer's shell may feed (or hide) a value."""
    for name in list(os.environ):
        if name.startswith("SIEM_"):
            monkeypatch.delenv(name)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_settings_hold_the_real_values(settings: Settings) -> None:
    """Guards the other tests: the secrets are really in there, only masked on the way out."""
    assert settings.kafka.client_options()["sasl_plain_password"] == SECRETS["kafka.sasl_password"]
    assert settings.elasticsearch.client_options()["api_key"] == SECRETS["elasticsearch.api_key"]
    assert settings.kibana.password is not None
    assert settings.kibana.password.get_secret_value() == SECRETS["kibana.password"]


def test_str_and_repr_mask_secrets(settings: Settings) -> None:
    for text in (
        str(settings),
        repr(settings),
        f"{settings}",
        f"{settings!r}",
        str(settings.kafka),
        repr(settings.kafka),
    ):
        assert_no_secret(text)
    assert "**********" in repr(settings)


def test_dumps_mask_secrets(settings: Settings) -> None:
    dumped = settings.model_dump(mode="json")
    assert dumped["kafka"]["sasl_password"] == "**********"
    assert dumped["elasticsearch"]["api_key"] == "**********"
    assert_no_secret(json.dumps(dumped))
    assert_no_secret(settings.model_dump_json())
    assert_no_secret(str(settings.model_dump()))  # python mode keeps SecretStr objects, which print masked


def test_config_show_masks_secrets(clean_env: None) -> None:
    from siem.cli import _mount_subcommands, app

    if not any(group.name == "config" for group in app.registered_groups):
        _mount_subcommands()
    result = CliRunner().invoke(app, ["config", "show"], env=ENV)
    assert result.exit_code == 0, result.output
    assert_no_secret(result.output)
    shown = json.loads(result.stdout)
    assert shown["kafka"]["sasl_username"] == "siem"  # the environment really reached the command
    assert shown["kafka"]["sasl_password"] == "**********"
    assert shown["elasticsearch"]["password"] == "**********"
    assert shown["kibana"]["api_key"] == "**********"


def test_config_error_does_not_echo_secrets(clean_env: None) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(kafka={"sasl_password": SECRETS["kafka.sasl_password"], "topic_partitions": 0})
    assert "topic_partitions" in str(caught.value)
    assert_no_secret(str(caught.value))
    assert_no_secret(repr(caught.value))


@pytest.mark.parametrize("json_lines", [True, False], ids=["ecs-json", "text"])
def test_log_lines_mask_secrets(
    settings: Settings, json_lines: bool, restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure("DEBUG", json=json_lines)  # the handler binds the (captured) stderr of this test
    log = logging.getLogger("siem.test.secrets")
    log.info("effective settings: %s", settings)
    log.info("effective settings: %r", settings)
    log.info("kafka: %s elasticsearch: %r", settings.kafka, settings.elasticsearch)
    log.info("dump: %s", settings.model_dump(mode="json"))
    try:
        raise RuntimeError(f"connecting with {settings.kafka!r} failed")
    except RuntimeError:
        log.exception("stage failed")
    err = capsys.readouterr().err
    assert err.count("effective settings") == 2 and "stage failed" in err  # the lines were really written
    assert "sasl_password=SecretStr('**********')" in err
    assert_no_secret(err)
