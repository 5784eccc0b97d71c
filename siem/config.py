"""Configuration: one pydantic-settings model per component, combined in :class:`Settings`.

Sources, highest priority first: constructor arguments, environment (``SIEM_...``, nested with ``__``, e.g.
``SIEM_KAFKA__BOOTSTRAP_SERVERS``), the YAML file named by ``SIEM_CONFIG`` (optional), then defaults.
Unknown keys are rejected (``extra="forbid"``) so a typo fails at start instead of being ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from siem.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Defaults shared by the code, the local stack, docker-compose.yml and the tests.
DEFAULT_KAFKA_PORT = 19092
DEFAULT_KAFKA_CONTROLLER_PORT = 19093
DEFAULT_ES_PORT = 19200
RAW_TOPICS: dict[str, str] = {
    "siem.raw.cloudtrail": "cloudtrail",
    "siem.raw.k8s-audit": "k8s_audit",
    "siem.raw.app": "app",
}
ALERTS_TOPIC = "siem.alerts"
DLQ_TOPIC = "siem.dlq"

# orjson serializes at most 254 levels, and the documents we index wrap a source payload a few levels deeper
# (``aws.cloudtrail.flattened.request_parameters``, an alert around an event): the parsers' depth limit stays below.
MAX_JSON_DEPTH = 200


class _Component(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(_Component):
    """Kafka connection and topic names."""

    bootstrap_servers: str = Field(f"127.0.0.1:{DEFAULT_KAFKA_PORT}", description="host:port[,host:port]")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = Field(None, description="CA bundle used to verify the brokers")
    ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    client_id: str = "siem-pipeline"
    detect_group_id: str = Field("siem-detect", description="consumer group of the detect stage")
    correlate_group_id: str = Field("siem-correlate", description="consumer group of the correlate stage")
    raw_topics: dict[str, str] = Field(default_factory=lambda: dict(RAW_TOPICS), description="raw topic -> parser name")
    alerts_topic: str = ALERTS_TOPIC
    dlq_topic: str = DLQ_TOPIC
    session_timeout_ms: int | None = Field(
        None,
        ge=6000,
        description="consumer group session timeout: how long a crashed consumer's partitions wait before they are "
        "reassigned; None keeps the client default (45 s)",
    )
    topic_partitions: int = Field(3, ge=1, description="partitions used when the pipeline creates topics")
    topic_replication: int = Field(1, ge=1, description="replication factor when the pipeline creates topics")
    max_message_bytes: int = Field(
        32 * 1024 * 1024, gt=0, description="max.message.bytes of the topics the pipeline creates"
    )
    reconnect_backoff_max_ms: int = Field(
        1000,
        ge=50,
        le=60_000,
        description="longest wait between two attempts to reach a broker that went away; kafka-python's own "
        "default, 30,000, left the pipeline idle up to 30 s after a broker came back (Kafka's Java client uses 1,000)",
    )
    producer_linger_ms: int = Field(
        50,
        ge=0,
        le=1000,
        description="how long the pipeline's producer (alerts for correlation, DLQ entries) waits to fill a batch; "
        "each produce request costs the pipeline ~0.5-3 ms of CPU, so a few ms of linger makes one request per "
        "message at a steady alert rate (measured: 5 ms costs 4x the CPU of 50 ms at 500 messages/s)",
    )

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments shared by kafka-python consumers, producers and admin clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
            # The backoff doubles from 50 ms on every failed attempt: capped at 30 s, a 14 s broker restart was
            # followed by up to ~13 s of waiting for the next attempt.
            "reconnect_backoff_max_ms": self.reconnect_backoff_max_ms,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options["ssl_check_hostname"] = self.ssl_check_hostname
            if self.ssl_cafile:
                options["ssl_cafile"] = str(self.ssl_cafile)
            if self.ssl_certfile:
                options["ssl_certfile"] = str(self.ssl_certfile)
            if self.ssl_keyfile:
                options["ssl_keyfile"] = str(self.ssl_keyfile)
        return options


class ElasticsearchSettings(_Component):
    """Elasticsearch connection and index names."""

    hosts: list[str] = Field(default_factory=lambda: [f"http://127.0.0.1:{DEFAULT_ES_PORT}"])
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = None
    ca_certs: Path | None = None
    verify_certs: bool = True
    request_timeout_s: float = Field(30.0, gt=0)
    index_prefix: str = Field("siem", description="prefix of every index and template the pipeline owns")
    retention_days: int = Field(30, ge=1, description="daily indices older than this are deleted")
    index_shards: int = Field(1, ge=1)
    index_replicas: int = Field(0, ge=0, description="0 suits one node; use 1+ on a cluster")
    refresh_interval: str = Field("1s", description="index refresh interval; larger values index faster")

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``elasticsearch.Elasticsearch``."""
        options: dict[str, Any] = {"hosts": self.hosts, "request_timeout": self.request_timeout_s}
        if self.api_key:
            options["api_key"] = self.api_key.get_secret_value()
        elif self.username:
            options["basic_auth"] = (self.username, self.password.get_secret_value() if self.password else "")
        if self.ca_certs:
            options["ca_certs"] = str(self.ca_certs)
        if any(h.startswith("https") for h in self.hosts):
            options["verify_certs"] = self.verify_certs
        return options

    def events_index(self, dataset: str, day: str) -> str:
        """Daily events index for one dataset; ``day`` is ``yyyy.mm.dd``."""
        return f"{self.index_prefix}-events-{dataset}-{day}"

    def alerts_index(self, day: str) -> str:
        return f"{self.index_prefix}-alerts-{day}"

    @property
    def incidents_index(self) -> str:
        return f"{self.index_prefix}-incidents"

    def incident_claims_index(self, day: str) -> str:
        """Which incident took each alert (one small document per alert id, in the alert's day): the incident
        store's replay check; daily, so the retention job drops the claims with their alerts."""
        return f"{self.index_prefix}-incident-claims-{day}"

    @property
    def dlq_index(self) -> str:
        return f"{self.index_prefix}-dlq"


class ParserSettings(_Component):
    """Limits and options shared by the source parsers."""

    max_message_bytes: int = Field(10 * 1024 * 1024, gt=0, description="larger records go to the DLQ")
    max_depth: int = Field(64, gt=0, le=MAX_JSON_DEPTH, description="deeper JSON nesting goes to the DLQ")
    keep_original: bool = Field(False, description="store the raw record in event.original")
    k8s_stages: list[str] = Field(
        default_factory=lambda: ["ResponseComplete", "Panic"], description="audit stages that are indexed"
    )
    k8s_streaming_subresources: list[str] = Field(
        default_factory=lambda: ["exec", "attach", "portforward"],
        description="their ResponseStarted stage is indexed too: ResponseComplete only comes when the session ends",
    )
    extra_redaction_paths: list[str] = Field(
        default_factory=list, description="dotted paths (native or ECS) replaced by the redaction marker"
    )


class PipelineSettings(_Component):
    """Batching and flow control of the runtime."""

    poll_max_records: int = Field(2000, gt=0)
    poll_timeout_ms: int = Field(500, gt=0)
    bulk_max_actions: int = Field(2000, gt=0)
    bulk_max_bytes: int = Field(8 * 1024 * 1024, gt=0)
    bulk_flush_interval_s: float = Field(1.0, gt=0)
    bulk_eager_flush: bool = Field(
        True,
        description="send the buffered documents as soon as the stage has caught up with its partitions and no "
        "bulk request is in flight, instead of waiting for bulk_max_actions or bulk_flush_interval_s; batches "
        "still grow with the load (they fill while a request is in flight)",
    )
    # No retry count: a 429/5xx item is retried until Elasticsearch takes it (its partition paused meanwhile), with a
    # capped backoff; giving up would mean dropping it or sending a good document to the DLQ.
    bulk_backoff_max_s: float = Field(30.0, gt=0, description="longest wait between two retries of a bulk request")
    dlq_max_original_bytes: int = Field(
        512 * 1024, gt=0, description="original bytes kept in a DLQ entry; the full record stays in its topic"
    )
    shutdown_timeout_s: float = Field(30.0, gt=0, description="graceful shutdown: max time to flush and commit")
    metrics_host: str = Field("127.0.0.1", description="address of /metrics and /healthz (0.0.0.0 in containers)")
    metrics_port: int = Field(19464, ge=0, le=65535, description="Prometheus /metrics and /healthz; 0 disables")
    health_probe_interval_s: float = Field(
        5.0, gt=0, description="how often /healthz's Kafka and Elasticsearch reachability is checked"
    )
    retention_interval_s: float = Field(
        3600.0, ge=0, description="how often daily indices older than elasticsearch.retention_days are deleted "
        "(also once at start); 0 disables the job"
    )
    silent_sources: dict[str, float] = Field(
        default_factory=dict,
        description='minutes without a new record on a source\'s raw topics before a silent-source alert, e.g. '
        '{"cloudtrail": 30} (sources as in kafka.raw_topics); empty: no source is watched',
    )
    silent_check_interval_s: float = Field(60.0, gt=0, description="how often the silent-source check runs")
    silent_alert_level: Literal["informational", "low", "medium", "high", "critical"] = Field(
        "high", description="level of silent-source alerts (at rules.alert_incident_level or above: an incident)"
    )


class RulesSettings(_Component):
    """Where Sigma rules come from."""

    directories: list[Path] = Field(default_factory=lambda: [PROJECT_ROOT / "sigma_rules"])
    placeholders: dict[str, list[str]] = Field(default_factory=dict, description="values for |expand")
    alert_incident_level: Literal["informational", "low", "medium", "high", "critical"] = "high"
    reload_interval_s: float = Field(
        30.0, ge=0, description="how often the rule directories are checked for changes (hot reload); 0 disables"
    )


class StackSettings(_Component):
    """The embedded local stack (Kafka KRaft + Elasticsearch) started without Docker."""

    home: Path = Field(PROJECT_ROOT / ".stack", description="artifacts cache, data and logs")
    cache_dir: Path | None = Field(
        None, description="where resolved artifacts are kept; default <home>/cache (shareable between stacks)"
    )
    kafka_version: str = "4.1.1"
    elasticsearch_version: str = "8.19.21"
    kafka_port: int = DEFAULT_KAFKA_PORT
    kafka_controller_port: int = DEFAULT_KAFKA_CONTROLLER_PORT
    elasticsearch_port: int = DEFAULT_ES_PORT
    elasticsearch_heap: str = "1g"
    kafka_heap: str = "512m"
    elasticsearch_user: str = Field("siem-es", description="unprivileged user that runs ES when we are root")
    java_home: Path | None = Field(None, description="JDK for both services; default: the java on PATH")
    start_timeout_s: float = Field(180.0, gt=0)
    stop_timeout_s: float = Field(60.0, gt=0, description="SIGTERM grace period before SIGKILL")
    kafka_fallback_version: str | None = Field(
        "3.9.1", description="Kafka version tried when kafka_version cannot be resolved; None disables"
    )
    elasticsearch_transport_port: int = Field(
        DEFAULT_ES_PORT + 100, description="node-to-node port; pinned so it cannot collide with another ES"
    )

    @property
    def artifacts_dir(self) -> Path:
        """Where artifacts are resolved: ``cache_dir``, or ``<home>/cache``."""
        return self.cache_dir if self.cache_dir is not None else self.home / "cache"


class CorrelationSettings(_Component):
    """Sigma correlation windows (correlate stage)."""

    allowed_lateness_s: float = Field(
        900.0, ge=0, description="alerts older than (newest alert time - this) are late: counted, not correlated"
    )
    timer_interval_s: float = Field(5.0, gt=0, description="how often the timer closes due windows")
    timer_resolution_ms: int = Field(1000, gt=0, description="granularity of the window-close timer wheel")
    max_events_per_group: int = Field(
        10_000, gt=0, description="alerts kept per (correlation, group key); the oldest are dropped beyond"
    )
    max_evidence: int = Field(100, gt=0, description="alert/event ids carried by one correlation alert")
    chain_locally: bool = Field(
        False, description="feed matches to parent correlations in-process instead of via the alerts topic"
    )
    entity_fields: list[str] = Field(
        default_factory=lambda: [
            "user.name",
            "aws.cloudtrail.user_identity.arn",
            "cloud.account.id",
            "source.ip",
            "kubernetes.audit.user.username",
            "orchestrator.namespace",
            "kubernetes.pod.name",
        ],
        description="alert fields copied into correlation inputs as entities (for incidents)",
    )


class IncidentSettings(_Component):
    """How alerts and correlations are grouped into incidents (siem-incidents)."""

    key_fields: list[str] = Field(
        default_factory=lambda: [
            "aws.cloudtrail.user_identity.arn",
            "kubernetes.audit.user.username",
            "user.name",
            "source.ip",
            "siem.silent_source",
        ],
        description="entity fields, in priority order, whose first present value keys a single-alert incident "
        "(siem.silent_source: the log source of a silent-source alert)",
    )
    correlation_key: Literal["group_by", "entity"] = Field(
        "group_by", description="key correlation incidents by the group-by values or by the first entity field"
    )
    attach_window_s: float = Field(
        3600.0, gt=0, description="an alert attaches to an open incident with its key last seen within this"
    )
    max_alert_ids: int = Field(1000, gt=0, description="alert ids kept per incident (a total is always kept)")
    max_evidence_ids: int = Field(1000, gt=0, description="event ids kept per incident (a total is always kept)")
    max_entities: int = Field(200, gt=0, description="distinct entity values kept per kind")
    update_retries: int = Field(10, ge=1, description="optimistic-concurrency retries before giving up")
    cache_size: int = Field(
        10_000,
        gt=0,
        description="recent incidents whose key and last written version the pipeline remembers "
        "(a forgotten one costs a search or a read on its next alert)",
    )


class KibanaSettings(_Component):
    """Kibana connection used by ``siem setup kibana`` to import the saved objects."""

    url: str = Field("http://127.0.0.1:5601", description="Kibana base URL (include a space path if any)")
    username: str | None = Field(None, description="basic-auth user; ignored when api_key is set")
    password: SecretStr | None = None
    api_key: SecretStr | None = Field(None, description="encoded API key (sent as 'Authorization: ApiKey ...')")
    ca_certs: Path | None = Field(None, description="CA bundle used to verify Kibana's certificate")
    verify_certs: bool = Field(True, description="verify Kibana's TLS certificate (https only)")
    timeout: float = Field(30.0, gt=0, description="seconds per HTTP request")


class Settings(BaseSettings):
    """Effective configuration of the whole pipeline."""

    model_config = SettingsConfigDict(env_prefix="SIEM_", env_nested_delimiter="__", extra="forbid", frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    elasticsearch: ElasticsearchSettings = Field(default_factory=ElasticsearchSettings)
    parsers: ParserSettings = Field(default_factory=ParserSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    rules: RulesSettings = Field(default_factory=RulesSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    correlation: CorrelationSettings = Field(default_factory=CorrelationSettings)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    kibana: KibanaSettings = Field(default_factory=KibanaSettings)

    @model_validator(mode="after")
    def _silent_sources_exist(self) -> Settings:
        # A typo ("cloudtrial") would watch nothing and never alert: refuse it at start instead.
        known = set(self.kafka.raw_topics.values())
        for source, minutes in self.pipeline.silent_sources.items():
            if source not in known:
                raise ValueError(
                    f"pipeline.silent_sources: {source!r} is not a source of kafka.raw_topics ({sorted(known)})"
                )
            if minutes <= 0:
                raise ValueError(f"pipeline.silent_sources: {source!r} needs a positive number of minutes")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("SIEM_CONFIG")
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into a :class:`ConfigError` naming each bad field."""
    config_file = os.environ.get("SIEM_CONFIG")
    if config_file and not Path(config_file).is_file():
        raise ConfigError(f"SIEM_CONFIG points to {config_file!r}, which is not a file")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"invalid configuration: {problems}") from None
