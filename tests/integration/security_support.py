"""Throwaway PKI and PRIVATE secured Kafka / Elasticsearch instances for tests/integration/test_security.py.

The shared local stack (default ``StackSettings``) is never touched: these instances have their own home
(``.stack/private-security``) and ports, and reuse only the shared, read-only artifact cache.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from siem.config import PROJECT_ROOT, KafkaSettings, StackSettings, load_settings
from stack.base import LOOPBACK, ManagedService, Reporter
from stack.elasticsearch import ElasticsearchService, ProbeAccess
from stack.host import find_java_home
from stack.kafka import KafkaService
from stack.services import boot

PRIVATE_HOME = PROJECT_ROOT / ".stack" / "private-security"
# Below Linux's ephemeral range (32768-60999 by default): a port inside it can be taken, between two test modules, by
# the local end of any outgoing connection (a CI rehearsal lost the broker's 39092 that way: "Address already in use").
KAFKA_PORT = 28092
KAFKA_CONTROLLER_PORT = 28094
ES_PORT = 28200
ES_TRANSPORT_PORT = 28300
OPENSSL_TIMEOUT_S = 60
LOCK_TIMEOUT_S = 300


# --- certificates ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Pki:
    """A CA and one server certificate (SAN IP:127.0.0.1, DNS:localhost) signed by it, all PEM."""

    ca_cert: Path
    cert: Path
    key: Path  # unencrypted PKCS#8 ("BEGIN PRIVATE KEY"), what Kafka's PEM keystore and ES both read
    keystore_pem: Path  # key + certificate chain in one file: Kafka's ssl.keystore.type=PEM


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=OPENSSL_TIMEOUT_S
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed (exit {result.returncode}): {result.stderr}")


def make_pki(directory: Path, ca_name: str = "siem-test-ca") -> Pki:
    """Generate a fresh CA + server certificate with the ``openssl`` CLI (valid two days)."""
    directory.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", f"/CN={ca_name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=localhost",
        cwd=directory,
    )  # fmt: skip
    (directory / "node.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n",
        encoding="ascii",
    )
    _openssl(
        "x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "node.crt", "-days", "2", "-sha256", "-extfile", "node.ext",
        cwd=directory,
    )  # fmt: skip
    keystore = directory / "node-keystore.pem"
    keystore.write_text(
        "".join((directory / name).read_text(encoding="ascii") for name in ("node.key", "node.crt", "ca.crt")),
        encoding="ascii",
    )
    return Pki(ca_cert=directory / "ca.crt", cert=directory / "node.crt", key=directory / "node.key",
               keystore_pem=keystore)  # fmt: skip


# --- private stack --------------------------------------------------------------------------------------------
def private_stack_settings() -> StackSettings:
    """Own home and ports; the artifact cache is the shared one (resolved already, read only here)."""
    shared = load_settings().stack
    return StackSettings(
        home=PRIVATE_HOME,
        cache_dir=shared.artifacts_dir,
        java_home=shared.java_home,
        kafka_port=KAFKA_PORT,
        kafka_controller_port=KAFKA_CONTROLLER_PORT,
        elasticsearch_port=ES_PORT,
        elasticsearch_transport_port=ES_TRANSPORT_PORT,
        kafka_heap="256m",
        elasticsearch_heap="512m",
        start_timeout_s=120.0,
        stop_timeout_s=20.0,
    )


def new_password() -> str:
    return secrets.token_urlsafe(18)


@dataclass(frozen=True, slots=True)
class KafkaCredentials:
    plain_user: str
    plain_password: str
    scram_user: str
    scram_password: str
    broker_password: str  # inter-broker PLAIN identity of the broker itself


def kafka_sasl_ssl_overrides(pki: Pki, creds: KafkaCredentials, port: int, controller_port: int) -> dict[str, str]:
    """Client listener SASL_SSL (PLAIN + SCRAM-SHA-256/512), controller listener PLAINTEXT on loopback."""
    prefix = "listener.name.sasl_ssl."
    plain_jaas = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="broker" password="{creds.broker_password}" '
        f'user_broker="{creds.broker_password}" user_{creds.plain_user}="{creds.plain_password}";'
    )
    return {
        "listeners": f"SASL_SSL://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"SASL_SSL://{LOOPBACK}:{port}",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        f"{prefix}plain.sasl.jaas.config": plain_jaas,
        f"{prefix}scram-sha-256.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        f"{prefix}scram-sha-512.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        f"{prefix}ssl.keystore.type": "PEM",
        f"{prefix}ssl.keystore.location": str(pki.keystore_pem),
        f"{prefix}ssl.truststore.type": "PEM",
        f"{prefix}ssl.truststore.location": str(pki.ca_cert),
        f"{prefix}ssl.client.auth": "none",
    }


def scram_format_args(user: str, password: str) -> list[str]:
    return [
        "--add-scram",
        f"SCRAM-SHA-256=[name={user},password={password}]",
        "--add-scram",
        f"SCRAM-SHA-512=[name={user},password={password}]",
    ]


def es_security_overrides() -> dict[str, object]:
    """HTTP and transport TLS with the generated key pair, copied into ``<config>/certs``."""
    tls = {
        "key": "certs/node.key",
        "certificate": "certs/node.crt",
        "certificate_authorities": ["certs/ca.crt"],
    }
    config: dict[str, object] = {"xpack.security.http.ssl.enabled": True}
    config.update({f"xpack.security.http.ssl.{k}": v for k, v in tls.items()})
    config["xpack.security.transport.ssl.enabled"] = True
    config["xpack.security.transport.ssl.verification_mode"] = "certificate"
    config.update({f"xpack.security.transport.ssl.{k}": v for k, v in tls.items()})
    return config


def es_config_files(pki: Pki) -> dict[str, Path]:
    return {"certs/node.key": pki.key, "certs/node.crt": pki.cert, "certs/ca.crt": pki.ca_cert}


@contextmanager
def _private_lock(timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """One private secured stack at a time on this machine (ports are fixed); waiting is bounded."""
    PRIVATE_HOME.mkdir(parents=True, exist_ok=True)
    with open(PRIVATE_HOME / "private.lock", "a+b") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another run holds {PRIVATE_HOME / 'private.lock'}") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextmanager
def running(*services: ManagedService) -> Iterator[None]:
    """Start ``services`` from clean homes, wait for all concurrently, and ALWAYS stop them afterwards.

    Every wait is bounded: start-up by ``start_timeout_s``, stopping by ``stop_timeout_s`` (then SIGKILL).
    """
    with _private_lock():
        try:
            for service in services:
                service.stop()  # a leftover of an interrupted run (our private pid file only)
                shutil.rmtree(service.home, ignore_errors=True)  # fresh data: credentials are formatted in once
            boot(list(services))  # the slowest first: it boots while the next one is prepared
            yield
        finally:
            for service in reversed(services):
                service.stop()


def java_home(settings: StackSettings) -> Path:
    return find_java_home(settings.java_home)


def kafka_service(settings: StackSettings, pki: Pki, creds: KafkaCredentials, report: Reporter = print) -> KafkaService:
    return KafkaService(
        settings,
        report,
        java_home(settings),
        overrides=kafka_sasl_ssl_overrides(pki, creds, settings.kafka_port, settings.kafka_controller_port),
        format_args=scram_format_args(creds.scram_user, creds.scram_password),
        probe_ca_file=pki.ca_cert,
    )


def elasticsearch_service(
    settings: StackSettings, pki: Pki, elastic_password: str, report: Reporter = print
) -> ElasticsearchService:
    return ElasticsearchService(
        settings,
        report,
        java_home(settings),
        security=True,
        overrides=es_security_overrides(),
        probe_access=ProbeAccess("elastic", elastic_password, pki.ca_cert),
        config_files=es_config_files(pki),
        secure_settings={"bootstrap.password": elastic_password},
    )


# --- refused Kafka clients run in a child process --------------------------------------------------------------
# kafka-python 3.0 never closes the TLS socket of a connection the broker refused; in a child process that leak
# cannot turn into ResourceWarnings in unrelated tests of this session.
_REFUSED_PRODUCER = """
import json, os, sys
from kafka import KafkaProducer
from kafka.errors import KafkaError
from siem import logs
from siem.config import KafkaSettings

logs.configure("DEBUG", json=True)  # the pipeline's own logging config at its most verbose
fields = {**json.loads(sys.argv[1]), "sasl_password": os.environ["SIEM_TEST_PASSWORD"]}
options = KafkaSettings.model_validate(fields).client_options()
try:
    producer = KafkaProducer(**options, bootstrap_timeout_ms=5000, max_block_ms=5000)
    producer.send("siem.test.security.denied", value=b"x").get(timeout=10)
    producer.close(timeout=5)
except KafkaError as exc:
    print(f"REFUSED {type(exc).__name__}: {exc}")
    sys.exit(0)
print("CONNECTED")
sys.exit(1)
"""


def try_refused_producer(settings: KafkaSettings, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a producer built from ``settings.client_options()`` in a child; returns its output (stderr = logs)."""
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    env = {**os.environ, "SIEM_TEST_PASSWORD": password}
    return subprocess.run(
        [sys.executable, "-c", _REFUSED_PRODUCER, settings.model_dump_json(exclude={"sasl_password"})],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
