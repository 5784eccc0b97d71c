"""Support for the reliability tests: a synthetic mixed corpus with known ids and alerts, the pipeline as a
real ``siem run`` subprocess, exact id accounting in Elasticsearch, /healthz polling and a private stack.

Every expected document id is known before the pipeline runs (CloudTrail ``eventID``, Kubernetes
``auditID-stage``) or as soon as Kafka acknowledges the record (application lines: hash of topic, partition,
offset, line index), so the tests compare sets of ids, not only counts.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from elasticsearch import Elasticsearch
from kafka import KafkaProducer

from correlation.detection.alerts import alert_id
from correlation.detection.engine import RuleSetHolder
from correlation.incidents.builder import signal_from_alert
from correlation.windows.router import CorrelationRouter
from ingest.correlation_rules import compile_correlations
from ingest.detector import SigmaDetector
from parsers.base import SourceRecord
from parsers.ids import coordinate_id, k8s_audit_id
from parsers.registry import build_parsers
from siem.config import PROJECT_ROOT, Settings, StackSettings

# Rule ids of the project's own rules (sigma_rules/rules) the corpus triggers.
RULE_AWS_ADMIN_POLICY = "0f6c7d1e-3a52-4f0e-9b1c-5d2e8a7b6c41"
RULE_K8S_CLUSTER_ADMIN = "6b1f2c3d-8e4a-4b5c-9d6e-7f8a9b0c1d2e"
RULE_APP_DESERIALIZATION = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
RULE_WEB_DOTENV = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"

DAY = "2026-11-20"
ACCOUNT = "123456789012"
USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
NAMESPACES = ["default", "payments", "kube-system", "monitoring", "web"]


# --------------------------------------------------------------------------------------------------------------
# corpus
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Record:
    """One raw record; ``event_id`` is None when the id depends on where Kafka puts it (application lines)."""

    parser: str  # cloudtrail | k8s_audit | app
    value: bytes
    event_id: str | None
    alert_rule: str | None  # the rule it must trigger, if any


@dataclass(slots=True)
class Placed:
    record: Record
    topic: str
    partition: int
    offset: int
    rules: tuple[str, ...] = ()  # the rules the project's rule set fires on it (see ``expect_alerts``)
    incident_rules: tuple[str, ...] = ()  # those of ``rules`` whose alert opens or updates an incident

    @property
    def event_id(self) -> str:
        if self.record.event_id is not None:
            return self.record.event_id
        return coordinate_id(self.topic, self.partition, self.offset, 0)

    @property
    def alert_ids(self) -> list[str]:
        return [alert_id(rule, self.event_id) for rule in self.rules]

    @property
    def incident_alert_ids(self) -> list[str]:
        return [alert_id(rule, self.event_id) for rule in self.incident_rules]


def rules_fired(records: Sequence[Record]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The rules whose alerts the pipeline indexes for each record, with its default rules (sigma_rules/).

    The rule set grows while the project is developed, so the expectation comes from the pipeline's own
    parsers, rules and detector (building blocks of correlations with ``generate: false`` are not indexed),
    run in-process; the planted attacks must be among the matches. Rule matches do not depend on where Kafka
    puts a record, only the ids do (``Placed.alert_ids``).
    Also returns, per record, the rules whose alerts go to an incident (level and key entity).
    """
    settings = Settings()
    parsers = build_parsers(settings.parsers)
    rules = RuleSetHolder.from_settings(settings.rules)
    correlations = compile_correlations(rules.current)
    router = CorrelationRouter(correlations, settings.correlation.entity_fields) if correlations else None
    detector = SigmaDetector(rules, router, settings.rules.alert_incident_level)
    fired: list[tuple[tuple[str, ...], tuple[str, ...]]] = []
    level = settings.rules.alert_incident_level
    for n, record in enumerate(records):
        result = parsers[record.parser].parse(SourceRecord("oracle", 0, n, record.value))
        assert len(result.events) == 1 and not result.failures, f"corpus bug: {record.value[:200]!r}"
        alerts = [a for a in detector.detect(result.events[0], "oracle") if a.indexed]
        matched = tuple(sorted({a.document["rule"]["id"] for a in alerts}))
        planted = record.alert_rule
        assert planted is None or planted in matched, f"{planted} does not fire on {record.value[:300]!r}"
        opens = [a for a in alerts if signal_from_alert(a.document, settings.incidents, level) is not None]
        to_incident = tuple(sorted({a.document["rule"]["id"] for a in opens}))
        fired.append((matched, to_incident))
    return fired


class RuleOracle:
    """``rules_fired`` in another process (it costs about as much CPU as the pipeline's own matching), started
    early so it runs while the pipeline does."""

    def __init__(self, records: Sequence[Record]) -> None:
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self._future = self._pool.submit(rules_fired, list(records))

    def apply(self, placed: Sequence[Placed], timeout_s: float = 180.0) -> None:
        """Set ``rules`` on every placed record; ``placed`` is in the order the records were given."""
        try:
            fired = self._future.result(timeout_s)
        finally:
            self._pool.shutdown(cancel_futures=True)
        assert len(fired) == len(placed)
        for p, (rules, incident_rules) in zip(placed, fired, strict=True):
            p.rules, p.incident_rules = rules, incident_rules

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ip(rng: random.Random) -> str:
    return f"{rng.choice(['198.51.100', '203.0.113', '192.0.2', '10.20.30'])}.{rng.randint(1, 254)}"


def _time(rng: random.Random) -> tuple[int, int, int]:
    return rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)


def _cloudtrail(rng: random.Random, n: int, alert: bool) -> Record:
    user = rng.choice(USERS)
    h, m, s = _time(rng)
    event_id = _uuid(rng)
    record: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": f"AIDA{rng.getrandbits(60):015X}",
            "arn": f"arn:aws:iam::{ACCOUNT}:user/{user}",
            "accountId": ACCOUNT,
            "accessKeyId": f"AKIA{rng.getrandbits(60):016X}",
            "userName": user,
        },
        "eventTime": f"{DAY}T{h:02d}:{m:02d}:{s:02d}Z",
        "awsRegion": rng.choice(["us-east-1", "eu-west-1", "ap-southeast-2"]),
        "sourceIPAddress": _ip(rng),
        "userAgent": rng.choice(
            ["aws-cli/2.17.0 Python/3.11.8", "Boto3/1.35.54 Botocore/1.35.54", "console.amazonaws.com"]
        ),
        "requestID": _uuid(rng),
        "eventID": event_id,
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": ACCOUNT,
        "eventCategory": "Management",
    }
    if alert:
        record.update(
            eventSource="iam.amazonaws.com",
            eventName="AttachUserPolicy",
            requestParameters={
                "userName": rng.choice(USERS),
                "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess",
            },
            responseElements=None,
        )
        return Record("cloudtrail", orjson.dumps(record), event_id, RULE_AWS_ADMIN_POLICY)
    kind = n % 5
    if kind == 0:
        record.update(
            eventSource="signin.amazonaws.com",
            eventName="ConsoleLogin",
            eventType="AwsConsoleSignIn",
            responseElements={"ConsoleLogin": rng.choice(["Success", "Failure"])},
            additionalEventData={"MFAUsed": rng.choice(["Yes", "No"])},
        )
    elif kind == 1:
        record.update(
            eventSource="ec2.amazonaws.com",
            eventName="DescribeInstances",
            readOnly=True,
            requestParameters={"instancesSet": {}, "filterSet": {"items": [{"name": "instance-state-name"}]}},
            responseElements=None,
        )
    elif kind == 2:
        record.update(
            eventSource="s3.amazonaws.com",
            eventName="GetObject",
            readOnly=True,
            managementEvent=False,
            eventCategory="Data",
            requestParameters={"bucketName": f"logs-{rng.randint(1, 9)}", "key": f"2026/11/20/{n}.json.gz"},
            resources=[{"type": "AWS::S3::Object", "ARN": f"arn:aws:s3:::logs/2026/11/20/{n}.json.gz"}],
        )
    elif kind == 3:
        # Near misses of the admin-policy rule: another policy, or a failed attach.
        record.update(
            eventSource="iam.amazonaws.com",
            eventName="AttachRolePolicy",
            requestParameters={"roleName": "ci", "policyArn": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
        )
        if rng.random() < 0.5:
            record.update(
                eventName="AttachUserPolicy",
                errorCode="AccessDenied",
                errorMessage="User is not authorized to perform: iam:AttachUserPolicy",
                requestParameters={"userName": user, "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"},
            )
    else:
        record.update(
            eventSource="sts.amazonaws.com",
            eventName="AssumeRole",
            requestParameters={"roleArn": f"arn:aws:iam::{ACCOUNT}:role/deploy", "roleSessionName": f"s-{n}"},
            responseElements={"assumedRoleUser": {"arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/s-{n}"}},
        )
    return Record("cloudtrail", orjson.dumps(record), event_id, None)


def _k8s(rng: random.Random, n: int, alert: bool) -> Record:
    audit_id = _uuid(rng)
    h, m, s = _time(rng)
    namespace = rng.choice(NAMESPACES)
    user = rng.choice([*USERS, "system:serviceaccount:kube-system:replicaset-controller"])
    event: dict[str, Any] = {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "Metadata",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": [_ip(rng)],
        "userAgent": "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": f"{DAY}T{h:02d}:{m:02d}:{s:02d}.{rng.randint(0, 999999):06d}Z",
        "stageTimestamp": f"{DAY}T{h:02d}:{m:02d}:{s:02d}.999999Z",
    }
    if alert:
        event.update(
            level="RequestResponse",
            verb="create",
            requestURI="/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            objectRef={"resource": "clusterrolebindings", "name": f"pwn-{n}", "apiGroup": "rbac.authorization.k8s.io"},
            requestObject={
                "kind": "ClusterRoleBinding",
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "User", "name": rng.choice(USERS)}],
            },
            responseStatus={"metadata": {}, "code": 201},
        )
        return Record(
            "k8s_audit", orjson.dumps(event), k8s_audit_id(audit_id, "ResponseComplete"), RULE_K8S_CLUSTER_ADMIN
        )
    verb, resource = rng.choice(
        [("get", "pods"), ("list", "pods"), ("watch", "configmaps"), ("patch", "deployments"), ("create", "pods")]
    )
    name = f"{resource[:-1]}-{n}"
    event.update(
        verb=verb,
        requestURI=f"/api/v1/namespaces/{namespace}/{resource}/{name}",
        objectRef={"resource": resource, "namespace": namespace, "name": name, "apiVersion": "v1"},
    )
    if n % 7 == 0:  # near miss of the cluster-admin rule
        event.update(
            verb="create",
            objectRef={"resource": "rolebindings", "namespace": namespace, "apiGroup": "rbac.authorization.k8s.io"},
            requestObject={"roleRef": {"kind": "ClusterRole", "name": "view"}},
        )
    return Record("k8s_audit", orjson.dumps(event), k8s_audit_id(audit_id, "ResponseComplete"), None)


def _app(rng: random.Random, n: int, alert: bool) -> Record:
    h, m, s = _time(rng)
    ip = _ip(rng)
    if alert:
        if n % 2 == 0:
            line = orjson.dumps(
                {
                    "asctime": f"{DAY} {h:02d}:{m:02d}:{s:02d},{rng.randint(0, 999):03d}",
                    "levelname": "ERROR",
                    "name": "app.cache",
                    "message": "_pickle.UnpicklingError: could not find MARK",
                    "request_id": _uuid(rng),
                }
            ).decode()
            rule = RULE_APP_DESERIALIZATION
        else:
            line = (
                f'{ip} - - [20/Nov/2026:{h:02d}:{m:02d}:{s:02d} +0000] "GET /.env HTTP/1.1" 200 {rng.randint(80, 900)} '
                f'"-" "Mozilla/5.0 (compatible; scanner/{n})"'
            )
            rule = RULE_WEB_DOTENV
        return Record("app", line.encode(), None, rule)
    kind = n % 4
    if kind == 0:
        line = orjson.dumps(
            {
                "@timestamp": f"{DAY}T{h:02d}:{m:02d}:{s:02d}.{rng.randint(0, 999):03d}Z",
                "log.level": rng.choice(["info", "warn", "debug"]),
                "message": f"order {n} processed in {rng.randint(1, 900)} ms",
                "service.name": "checkout",
                "trace.id": f"{rng.getrandbits(128):032x}",
                "user": rng.choice(USERS),
            }
        ).decode()
    elif kind == 1:
        line = (
            f'ts={DAY}T{h:02d}:{m:02d}:{s:02d}Z level=info msg="cache refresh" component=inventory '
            f"items={rng.randint(1, 5000)} duration_ms={rng.randint(1, 300)}"
        )
    elif kind == 2:
        status = rng.choice([200, 200, 200, 301, 404, 500])
        path = rng.choice(["/", "/api/orders", "/static/app.js", "/login", "/.env"])  # /.env with 404 is a near miss
        if path == "/.env":
            status = 404
        line = (
            f'{ip} - - [20/Nov/2026:{h:02d}:{m:02d}:{s:02d} +0000] "GET {path}?page={n} HTTP/1.1" {status} '
            f'{rng.randint(100, 90000)} "https://shop.example.com/" "Mozilla/5.0 (X11; Linux x86_64)"'
        )
    else:
        line = (
            f"<134>1 {DAY}T{h:02d}:{m:02d}:{s:02d}.000Z web-{rng.randint(1, 4)} payments {rng.randint(100, 9999)} "
            f'ID47 [meta requestId="{n}"] payment authorised amount={rng.randint(1, 999)}.00 EUR'
        )
    return Record("app", line.encode(), None, None)


def make_corpus(size: int, seed: int, alert_every: int = 97) -> list[Record]:
    """``size`` records: about 40% CloudTrail, 30% Kubernetes audit, 30% application lines, with alerts
    spread through the stream (every ``alert_every``-th record) and near misses of every rule."""
    rng = random.Random(seed)
    records: list[Record] = []
    for n in range(size):
        alert = n % alert_every == alert_every // 2
        pick = rng.random()
        if pick < 0.4:
            records.append(_cloudtrail(rng, n, alert))
        elif pick < 0.7:
            records.append(_k8s(rng, n, alert))
        else:
            records.append(_app(rng, n, alert))
    return records


# --------------------------------------------------------------------------------------------------------------
# producing
# --------------------------------------------------------------------------------------------------------------
def topic_for(settings: Settings, parser: str) -> str:
    return next(t for t, p in settings.kafka.raw_topics.items() if p == parser)


def produce_placed(settings: Settings, records: Sequence[Record]) -> list[Placed]:
    """Produce with acks=all and return where Kafka put every record."""
    producer = KafkaProducer(
        **settings.kafka.client_options(), acks="all", linger_ms=20, batch_size=256 * 1024, retries=20
    )
    try:
        futures = [
            (record, producer.send(topic_for(settings, record.parser), value=record.value)) for record in records
        ]
        producer.flush(timeout=120)
        placed: list[Placed] = []
        for record, future in futures:
            meta = future.get(timeout=60)
            placed.append(Placed(record, meta.topic, meta.partition, meta.offset))
        return placed
    finally:
        producer.close(timeout=10)


class BackgroundProducer:
    """Produces chunks of records at a steady pace in a thread, so records keep flowing while we kill things."""

    def __init__(self, settings: Settings, records: Sequence[Record], chunk: int, pause_s: float) -> None:
        self._settings = settings
        self._records = records
        self._chunk = chunk
        self._pause_s = pause_s
        self.placed: list[Placed] = []
        self.error: BaseException | None = None
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="background-producer", daemon=True)

    def start(self) -> BackgroundProducer:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for start in range(0, len(self._records), self._chunk):
                if self._stop.is_set():
                    return
                self.placed += produce_placed(self._settings, self._records[start : start + self._chunk])
                self.sent = len(self.placed)
                self._stop.wait(self._pause_s)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout_s: float) -> list[Placed]:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._stop.set()
            raise AssertionError(f"producer did not finish within {timeout_s} s ({self.sent} sent)")
        if self.error is not None:
            raise AssertionError(f"producer failed: {self.error!r}") from self.error
        return self.placed

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


# --------------------------------------------------------------------------------------------------------------
# the pipeline as a subprocess
# --------------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pipeline_env(
    settings: Settings, metrics_port: int, *, session_timeout_ms: int = 6000, **pipeline: Any
) -> dict[str, str]:
    """The environment that makes ``siem run`` use the isolated topics, groups, prefix and services.

    A short group session (the broker's minimum) lets a restarted process get its partitions back a few
    seconds after a SIGKILL instead of the default 45 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIEM_")}
    kafka, es = settings.kafka, settings.elasticsearch
    env.update(
        SIEM_KAFKA__BOOTSTRAP_SERVERS=kafka.bootstrap_servers,
        SIEM_KAFKA__RAW_TOPICS=json.dumps(kafka.raw_topics),
        SIEM_KAFKA__ALERTS_TOPIC=kafka.alerts_topic,
        SIEM_KAFKA__DLQ_TOPIC=kafka.dlq_topic,
        SIEM_KAFKA__DETECT_GROUP_ID=kafka.detect_group_id,
        SIEM_KAFKA__CORRELATE_GROUP_ID=kafka.correlate_group_id,
        SIEM_KAFKA__TOPIC_PARTITIONS=str(kafka.topic_partitions),
        SIEM_KAFKA__SESSION_TIMEOUT_MS=str(session_timeout_ms),
        SIEM_ELASTICSEARCH__HOSTS=json.dumps(es.hosts),
        SIEM_ELASTICSEARCH__INDEX_PREFIX=es.index_prefix,
        SIEM_PIPELINE__METRICS_PORT=str(metrics_port),
        PYTHONUNBUFFERED="1",
        PYTHONFAULTHANDLER="1",  # SIGABRT dumps every thread's stack into the log (see PipelineProcess.abort)
    )
    for name, value in pipeline.items():
        env[f"SIEM_PIPELINE__{name.upper()}"] = str(value)
    return env


class PipelineProcess:
    """``siem run --stage detect --no-live`` (or both stages: ``stage=None``) as a child process; output appended
    to ``log_path``."""

    def __init__(self, env: dict[str, str], log_path: Path, stage: str | None = "detect") -> None:
        self._env = env
        self._stage_args = ["--stage", stage] if stage else []
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start {self.starts + 1} at {time.strftime('%H:%M:%S')} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "siem", "run", *self._stage_args, "--no-live"],
                env=self._env,
                cwd=PROJECT_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no flush, no commit, no goodbye to the group."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def abort(self) -> str:
        """A stuck process: SIGABRT makes it write every thread's stack to the log; returns the log tail."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGABRT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.log_tail(120)

    def terminate(self, timeout_s: float) -> int:
        """SIGTERM and wait; returns the exit code (raises if it does not exit in time)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        """Used in ``finally``: whatever state it is in, it is gone afterwards."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


def log_path(name: str) -> Path:
    """Where a test's pipeline output goes: outside pytest's rotating tmp dirs, so it survives for a post-mortem."""
    directory = Path(tempfile.gettempdir()) / "siem-reliability"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"


@contextmanager
def pipeline_process(env: dict[str, str], log_path: Path, stage: str | None = "detect") -> Iterator[PipelineProcess]:
    process = PipelineProcess(env, log_path, stage)
    try:
        yield process
    finally:
        process.stop()


# --------------------------------------------------------------------------------------------------------------
# Elasticsearch accounting
# --------------------------------------------------------------------------------------------------------------
def ids_in(es: Elasticsearch, index: str, query: dict[str, Any] | None = None) -> Counter[str]:
    """Every document id under ``index`` (a pattern), counted: a count above 1 is a duplicate across indices."""
    es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    ids: Counter[str] = Counter()
    response = es.search(
        index=index, scroll="2m", size=10_000, source=False, sort=["_doc"], ignore_unavailable=True,
        allow_no_indices=True, query=query or {"match_all": {}},
    )  # fmt: skip
    scroll_id = response.get("_scroll_id")
    try:
        while True:
            hits = response["hits"]["hits"]
            if not hits:
                break
            ids.update(hit["_id"] for hit in hits)
            response = es.scroll(scroll_id=scroll_id, scroll="2m")
            scroll_id = response.get("_scroll_id")
    finally:
        if scroll_id:
            es.options(ignore_status=404).clear_scroll(scroll_id=scroll_id)
    return ids


def doc_count(es: Elasticsearch, index: str) -> int:
    try:
        es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
        response = es.count(index=index, ignore_unavailable=True, allow_no_indices=True)
    except Exception:  # ES restarting: the caller just polls again
        return -1
    return int(response["count"])


@dataclass(slots=True)
class Accounting:
    """Expected against actual, per kind of document."""

    kind: str
    expected: int
    actual: int
    missing: set[str] = field(default_factory=set)
    unexpected: set[str] = field(default_factory=set)
    duplicates: dict[str, int] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return self.expected == self.actual and not (self.missing or self.unexpected or self.duplicates)

    def summary(self) -> str:
        return (
            f"{self.kind}: expected {self.expected}, in ES {self.actual}, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, duplicates {sum(self.duplicates.values())}"
        )


def account(kind: str, expected_ids: Sequence[str], found: Counter[str]) -> Accounting:
    expected = set(expected_ids)
    assert len(expected) == len(expected_ids), f"corpus bug: {kind} ids are not unique"
    return Accounting(
        kind,
        len(expected),
        sum(found.values()),
        missing=expected - set(found),
        unexpected=set(found) - expected,
        duplicates={i: c - 1 for i, c in found.items() if c > 1},
    )


# Alerts of correlation rules (written by the correlate stage) are not predicted by the oracle; they are left out.
DETECTION_ALERTS = {"bool": {"must_not": [{"term": {"event.dataset": "siem.correlation"}}]}}


def check_exact(es: Elasticsearch, settings: Settings, placed: Sequence[Placed]) -> tuple[Accounting, Accounting]:
    prefix = settings.elasticsearch.index_prefix
    events = account("events", [p.event_id for p in placed], ids_in(es, f"{prefix}-events-*"))
    alerts = account(
        "alerts", [a for p in placed for a in p.alert_ids], ids_in(es, f"{prefix}-alerts-*", DETECTION_ALERTS)
    )
    return events, alerts


@dataclass
class IncidentAccounting:
    """Detection alerts in incidents: each expected one counted once, whatever crashes and replays happened."""

    expected: int
    counted: int  # detection alerts the incidents counted (their per-rule counts of detection rules)
    incidents: int
    listed_twice: set[str] = field(default_factory=set)  # alert ids listed by two incidents
    unexpected: set[str] = field(default_factory=set)  # listed alert ids the oracle does not expect
    correlations: int = 0  # distinct correlation matches the incidents list
    correlations_twice: set[str] = field(default_factory=set)  # match ids listed by two incidents

    @property
    def exact(self) -> bool:
        return self.expected == self.counted and not (self.listed_twice or self.unexpected or self.correlations_twice)

    def summary(self) -> str:
        return (
            f"incident alerts: expected {self.expected}, counted {self.counted} in {self.incidents} incidents, "
            f"listed twice {len(self.listed_twice)}, unexpected {len(self.unexpected)}; correlation matches "
            f"{self.correlations}, listed twice {len(self.correlations_twice)}"
        )


def incident_documents(es: Elasticsearch, settings: Settings) -> list[dict[str, Any]]:
    index = settings.elasticsearch.incidents_index
    es.indices.refresh(index=index, ignore_unavailable=True)
    response = es.search(index=index, size=10_000, ignore_unavailable=True)
    return [hit["_source"] for hit in response["hits"]["hits"]]


def check_incidents(es: Elasticsearch, settings: Settings, placed: Sequence[Placed]) -> IncidentAccounting:
    expected = {a for p in placed for a in p.incident_alert_ids}
    counted = 0
    seen: set[str] = set()
    twice: set[str] = set()
    matches: set[str] = set()
    matches_twice: set[str] = set()
    incidents = incident_documents(es, settings)
    for incident in incidents:
        correlation_ids = set(incident.get("correlation_ids", []))
        detection_ids = [a for a in incident.get("alert_ids", []) if a not in correlation_ids]
        counted += sum(int(rule["alert_count"]) for rule in incident.get("rules", []) if rule["kind"] == "detection")
        twice |= seen.intersection(detection_ids)
        seen.update(detection_ids)
        matches_twice |= matches.intersection(correlation_ids)  # a match has one key, so one incident
        matches.update(correlation_ids)
    return IncidentAccounting(len(expected), counted, len(incidents), twice, seen - expected, len(matches),
                              matches_twice)


# --------------------------------------------------------------------------------------------------------------
# /healthz
# --------------------------------------------------------------------------------------------------------------
def healthz(port: int, timeout_s: float = 3.0) -> tuple[int, dict[str, Any] | None]:
    """(HTTP status, JSON body); (0, None) when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=timeout_s) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return int(exc.code), json.loads(exc.read())
        except ValueError:
            return int(exc.code), None
    except (OSError, ValueError):
        return 0, None


def detect_stage(report: dict[str, Any] | None) -> dict[str, Any]:
    stages = (report or {}).get("stages", {})
    return dict(stages.get("detect", {}))


# --------------------------------------------------------------------------------------------------------------
# a private stack (outage tests must never stop the shared one)
# --------------------------------------------------------------------------------------------------------------
PRIVATE_HOME = PROJECT_ROOT / ".stack" / "private-outage"
SHARED_CACHE = PROJECT_ROOT / ".stack" / "cache"


def private_stack_settings() -> StackSettings:
    return StackSettings(
        home=PRIVATE_HOME,
        cache_dir=SHARED_CACHE,  # the artifacts the shared stack already resolved: no second download
        kafka_port=29092,
        kafka_controller_port=29093,
        elasticsearch_port=29200,
        elasticsearch_transport_port=29300,
        elasticsearch_heap="512m",
        kafka_heap="384m",
        stop_timeout_s=30.0,
    )


def remove_private_home() -> None:
    shutil.rmtree(PRIVATE_HOME, ignore_errors=True)


def wait_until(condition: Any, timeout_s: float, interval_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return bool(condition())
