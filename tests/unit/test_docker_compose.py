"""docker-compose.yml, the Dockerfile and siem.config agree: ports, versions, env var names, commands."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from siem.config import DEFAULT_ES_PORT, DEFAULT_KAFKA_PORT, Settings, StackSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("kafka", "elasticsearch", "kibana", "siem", "demo-producer", "kibana-setup")
SIEM_SERVICES = ("siem", "demo-producer", "kibana-setup")
IN_NETWORK_KAFKA = "kafka:9092"
IN_NETWORK_ES = ["http://elasticsearch:9200"]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def _published_ports(service: dict[str, Any]) -> dict[int, int]:
    """container port -> host port, for short ("[ip:]host:container") and long syntax entries."""
    published: dict[int, int] = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            published[int(entry["target"])] = int(entry["published"])
        else:
            *_, host, container = str(entry).split(":")
            published[int(container.split("/")[0])] = int(host)
    return published


def _image_tag(service: dict[str, Any]) -> str:
    return str(service["image"]).rsplit(":", 1)[1]


def _dockerfile_env(text: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for key, value in re.findall(r"^ENV\s+(SIEM_\w+)=(\S+)", text, flags=re.MULTILINE):
        env[key] = value.strip("'\"")
    return env


def _all_siem_env(services: dict[str, Any], dockerfile: str) -> dict[str, str]:
    env = dict(_dockerfile_env(dockerfile))
    for service in services.values():
        env.update({k: v for k, v in _environment(service).items() if k.startswith("SIEM_")})
    return env


def _settings_field(env_name: str) -> str:
    """Walk Settings' model fields along SIEM_<SECTION>__<FIELD>; returns the dotted path or fails."""
    parts = env_name.removeprefix("SIEM_").lower().split("__")
    model: type[BaseModel] = Settings
    for depth, part in enumerate(parts):
        assert part in model.model_fields, f"{env_name}: {model.__name__} has no field {part!r}"
        annotation = model.model_fields[part].annotation
        if depth < len(parts) - 1:
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), f"{env_name}: {part} is a leaf"
            model = annotation
    return ".".join(parts)


def test_services_exist(services: dict[str, Any]) -> None:
    assert set(SERVICES) <= set(services)


@pytest.mark.parametrize("name", ["kafka", "elasticsearch", "kibana"])
def test_backing_services_have_healthchecks(services: dict[str, Any], name: str) -> None:
    check = services[name].get("healthcheck")
    assert check and check.get("test"), f"{name} has no healthcheck"
    command = " ".join(check["test"]) if isinstance(check["test"], list) else check["test"]
    expected = {"kafka": "kafka-", "elasticsearch": "_cluster/health", "kibana": "/api/status"}[name]
    assert expected in command


def test_host_ports_match_the_code_defaults(services: dict[str, Any]) -> None:
    assert _published_ports(services["kafka"]).get(DEFAULT_KAFKA_PORT) == DEFAULT_KAFKA_PORT
    assert _published_ports(services["elasticsearch"]).get(9200) == DEFAULT_ES_PORT
    assert _published_ports(services["kibana"]).get(5601) == 5601


def test_kafka_listeners_serve_the_network_and_the_host(services: dict[str, Any]) -> None:
    env = _environment(services["kafka"])
    assert env["KAFKA_PROCESS_ROLES"].replace(" ", "") in ("broker,controller", "controller,broker")
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    endpoints = {listener.split("://", 1)[1] for listener in advertised}
    assert {IN_NETWORK_KAFKA, f"127.0.0.1:{DEFAULT_KAFKA_PORT}"} <= endpoints
    listen_ports = {listener.rsplit(":", 1)[1] for listener in env["KAFKA_LISTENERS"].split(",")}
    assert {"9092", str(DEFAULT_KAFKA_PORT)} <= listen_ports


def test_elasticsearch_is_a_single_node_with_a_heap(services: dict[str, Any]) -> None:
    env = _environment(services["elasticsearch"])
    assert env["discovery.type"] == "single-node"
    assert "-Xmx" in env["ES_JAVA_OPTS"]
    assert json.loads(_environment(services["kibana"])["ELASTICSEARCH_HOSTS"]) == IN_NETWORK_ES


@pytest.mark.parametrize("name", SIEM_SERVICES)
def test_pipeline_containers_use_in_network_addresses(services: dict[str, Any], name: str) -> None:
    env = _environment(services[name])
    assert env["SIEM_KAFKA__BOOTSTRAP_SERVERS"] == IN_NETWORK_KAFKA
    assert json.loads(env["SIEM_ELASTICSEARCH__HOSTS"]) == IN_NETWORK_ES


def test_every_siem_env_var_is_a_settings_field(services: dict[str, Any], dockerfile: str) -> None:
    env = _all_siem_env(services, dockerfile)
    assert "SIEM_KAFKA__BOOTSTRAP_SERVERS" in env
    for name in env:
        _settings_field(name)


def test_settings_accept_the_compose_environment(
    services: dict[str, Any], dockerfile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("SIEM_"):
            monkeypatch.delenv(name)
    for name, value in _all_siem_env(services, dockerfile).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.kafka.bootstrap_servers == IN_NETWORK_KAFKA
    assert settings.elasticsearch.hosts == IN_NETWORK_ES
    assert settings.kafka.client_options()["bootstrap_servers"] == [IN_NETWORK_KAFKA]
    assert settings.rules.directories == [Path("/app/sigma_rules")]


def test_pipeline_commands(services: dict[str, Any]) -> None:
    assert services["siem"]["command"] == ["run"]
    assert services["demo-producer"]["command"] == ["demo", "--loop"]
    assert services["kibana-setup"]["command"] == ["setup", "kibana"]
    assert services["siem"]["build"]["context"] == "."
    images = {services[name]["image"] for name in SIEM_SERVICES}
    assert len(images) == 1, "all pipeline containers run the same image"


def test_dependencies_wait_for_health(services: dict[str, Any]) -> None:
    def condition(service: str, dependency: str) -> str:
        return str(services[service]["depends_on"][dependency]["condition"])

    assert condition("siem", "kafka") == "service_healthy"
    assert condition("siem", "elasticsearch") == "service_healthy"
    assert condition("demo-producer", "kafka") == "service_healthy"
    assert condition("kibana", "elasticsearch") == "service_healthy"
    assert condition("kibana-setup", "kibana") == "service_healthy"


def test_data_lives_in_named_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name in ("kafka", "elasticsearch", "kibana"):
        sources = {str(v).split(":", 1)[0] for v in services[name].get("volumes", [])}
        assert sources & declared, f"{name} has no named data volume"


def test_image_versions_match_the_stack_settings(services: dict[str, Any]) -> None:
    stack = StackSettings()
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert _image_tag(services["kafka"]) == stack.kafka_version
    assert services["elasticsearch"]["image"].startswith("docker.elastic.co/elasticsearch/elasticsearch:")
    assert _image_tag(services["elasticsearch"]) == stack.elasticsearch_version
    assert services["kibana"]["image"].startswith("docker.elastic.co/kibana/kibana:")
    assert _image_tag(services["kibana"]) == stack.elasticsearch_version


def test_dockerfile_installs_the_project_as_a_non_root_user(dockerfile: str) -> None:
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, flags=re.MULTILINE)
    # The project is built into a wheel where a C compiler is installed (mypyc, setup.py), then installed.
    assert re.search(r"apt-get install\b[^\n]*\bgcc\b", dockerfile), "the build stage has a C compiler"
    assert re.search(r"pip wheel\b[^\n]*--wheel-dir /wheels \.(\s|$)", dockerfile, flags=re.MULTILINE)
    assert re.search(r"^COPY --from=build /wheels ", dockerfile, flags=re.MULTILINE)
    assert re.search(r"pip install /tmp/wheels/\*\.whl", dockerfile), "installs the built project"
    assert re.search(r'^ENTRYPOINT \["siem"\]', dockerfile, flags=re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".stack", ".git", "**/*.so"} <= ignored  # local compiled modules are rebuilt in the image
