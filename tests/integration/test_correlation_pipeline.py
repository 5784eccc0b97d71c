"""Correlation end to end on the real stack: raw records -> detect -> siem.alerts -> correlate -> ES.

Each test gets its own topics, consumer groups and index prefix, writes its Sigma rules to ``tmp_path``,
produces re-timed records from ``samples/`` (the attack story lands a few minutes before "now", well inside
the allowed lateness) and waits (bounded) for the exact correlation alerts and incidents.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from elasticsearch import Elasticsearch
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from correlation.windows.messages import match_id
from ingest.service import Service, build_service, setup
from siem.config import (
    PROJECT_ROOT,
    ElasticsearchSettings,
    KafkaSettings,
    PipelineSettings,
    RulesSettings,
    Settings,
)
from tests.integration.pipeline_support import unmapped_fields

pytestmark = pytest.mark.integration

SAMPLES = PROJECT_ROOT / "samples"
WAIT_S = 60.0

FAILED_LOGIN = "8a4f0d52-1c57-4d6e-9f0b-2d3b6c1e7a01"
SUCCESS_LOGIN = "8a4f0d52-1c57-4d6e-9f0b-2d3b6c1e7a02"
BRUTE_FORCE = "8a4f0d52-1c57-4d6e-9f0b-2d3b6c1e7a03"
BRUTE_THEN_SUCCESS = "8a4f0d52-1c57-4d6e-9f0b-2d3b6c1e7a04"
CREATE_USER = "8a4f0d52-1c57-4d6e-9f0b-2d3b6c1e7a05"
CREATE_KEY = "8a4f0d52-1c57-4d6e-9f0b-2d3b6c1e7a06"
ATTACH_ADMIN = "8a4f0d52-1c57-4d6e-9f0b-2d3b6c1e7a07"
IAM_CHAIN = "8a4f0d52-1c57-4d6e-9f0b-2d3b6c1e7a08"
POD_EXEC = "8a4f0d52-1c57-4d6e-9f0b-2d3b6c1e7a09"
EXEC_SPREAD = "8a4f0d52-1c57-4d6e-9f0b-2d3b6c1e7a10"

LOGIN_RULES = f"""
title: AWS Console Login Failed
id: {FAILED_LOGIN}
name: aws_console_login_failed
level: low
logsource: {{product: aws, service: cloudtrail}}
detection:
    selection:
        eventSource: signin.amazonaws.com
        eventName: ConsoleLogin
        responseElements.ConsoleLogin: Failure
    condition: selection
---
title: AWS Console Login Succeeded
id: {SUCCESS_LOGIN}
name: aws_console_login_success
level: low
logsource: {{product: aws, service: cloudtrail}}
detection:
    selection:
        eventSource: signin.amazonaws.com
        eventName: ConsoleLogin
        responseElements.ConsoleLogin: Success
    condition: selection
---
title: AWS Console Login Brute Force
id: {BRUTE_FORCE}
name: aws_console_login_brute_force
level: medium
tags: [attack.credential-access, attack.t1110]
correlation:
    type: event_count
    rules: [aws_console_login_failed]
    group-by: [sourceIPAddress]
    timespan: 10m
    condition: {{gte: 5}}
    generate: true  # the failed logins stay alerts of their own, too
"""

CHAIN_RULE = f"""
title: AWS Console Brute Force Followed By Success
id: {BRUTE_THEN_SUCCESS}
name: aws_console_brute_force_then_success
level: high
tags: [attack.credential-access, attack.initial-access, attack.t1110, attack.t1078]
correlation:
    type: temporal_ordered
    rules: [aws_console_login_brute_force, aws_console_login_success]
    group-by: [sourceIPAddress]
    timespan: 1h
"""

IAM_RULES = f"""
title: IAM User Created
id: {CREATE_USER}
name: aws_iam_create_user
level: low
logsource: {{product: aws, service: cloudtrail}}
detection:
    selection: {{eventSource: iam.amazonaws.com, eventName: CreateUser}}
    condition: selection
---
title: IAM Access Key Created
id: {CREATE_KEY}
name: aws_iam_create_access_key
level: low
logsource: {{product: aws, service: cloudtrail}}
detection:
    selection: {{eventSource: iam.amazonaws.com, eventName: CreateAccessKey}}
    condition: selection
---
title: AdministratorAccess Policy Attached
id: {ATTACH_ADMIN}
name: aws_iam_attach_admin_policy
level: high
tags: [attack.persistence, attack.privilege-escalation, attack.t1098.003]
logsource: {{product: aws, service: cloudtrail}}
detection:
    selection:
        eventSource: iam.amazonaws.com
        eventName: [AttachUserPolicy, AttachGroupPolicy, AttachRolePolicy]
        requestParameters.policyArn|endswith: /AdministratorAccess
    filter:
        errorCode|exists: true
    condition: selection and not filter
---
title: IAM Persistence Chain
id: {IAM_CHAIN}
name: aws_iam_persistence_chain
level: critical
tags: [attack.persistence, attack.t1136.003, attack.t1098.001]
correlation:
    type: temporal_ordered
    rules: [aws_iam_create_user, aws_iam_create_access_key, aws_iam_attach_admin_policy]
    group-by: [userIdentity.arn]
    timespan: 1h
    generate: true
"""

K8S_RULES = f"""
title: Kubernetes Exec Into Pod
id: {POD_EXEC}
name: k8s_pod_exec
level: low
logsource: {{product: kubernetes, service: audit}}
detection:
    selection:
        verb: create
        objectRef.resource: pods
        objectRef.subresource: exec
    filter_refused:
        responseStatus.code: 403
    condition: selection and not filter_refused
---
title: Kubernetes Exec Into Pods Across Namespaces
id: {EXEC_SPREAD}
name: k8s_exec_across_namespaces
level: high
tags: [attack.execution, attack.lateral-movement, attack.t1609]
correlation:
    type: value_count
    rules: [k8s_pod_exec]
    group-by: [user.username]
    timespan: 30m
    condition: {{gte: 3, field: objectRef.namespace}}
"""


# ---- sample records, re-timed ---------------------------------------------------------------------------


def _lines(name: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (SAMPLES / name).read_bytes().splitlines() if line.strip()]


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _fmt(dt: datetime, micro: bool) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def retime(records: list[dict[str, Any]], fields: tuple[str, ...], anchor_ago: timedelta) -> list[dict[str, Any]]:
    """Shift every timestamp by one delta so the earliest record lands ``anchor_ago`` before now."""
    first = min(_parse(r[f]) for r in records for f in fields if f in r)
    delta = datetime.now(UTC).replace(microsecond=0) - anchor_ago - first
    out = []
    for record in records:
        copy = dict(record)
        for f in fields:
            if f in copy:
                copy[f] = _fmt(_parse(copy[f]) + delta, micro="." in copy[f])
        out.append(copy)
    return out


def cloudtrail(predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    chosen = [r for r in _lines("cloudtrail.jsonl") if predicate(r)]
    return retime(chosen, ("eventTime",), timedelta(minutes=8))


def epoch_ms(ts: str) -> int:
    return int(_parse(ts).timestamp() * 1000)


ATTACKER_IP = "203.0.113.66"
ALICE = "arn:aws:iam::123456789012:user/alice.admin"


def is_console_login(r: dict[str, Any]) -> bool:
    return r.get("eventName") == "ConsoleLogin"


# ---- harness ------------------------------------------------------------------------------------------


class Pipeline:
    """Unique topics/groups/indices for one test; services started in-thread and always stopped."""

    def __init__(self, stack: Any, rules_dir: Path, rules: str) -> None:
        sfx = uuid.uuid4().hex[:8]
        rules_dir.mkdir(parents=True, exist_ok=True)
        (rules_dir / "rules.yml").write_text(rules, encoding="utf-8")
        self.prefix = f"t-corr-{sfx}"
        self.settings = Settings(
            kafka=KafkaSettings(
                bootstrap_servers=stack.kafka_bootstrap,
                raw_topics={f"t-{sfx}.cloudtrail": "cloudtrail", f"t-{sfx}.k8s": "k8s_audit"},
                alerts_topic=f"t-{sfx}.alerts",
                dlq_topic=f"t-{sfx}.dlq",
                detect_group_id=f"t-{sfx}-detect",
                correlate_group_id=f"t-{sfx}-correlate",
            ),
            elasticsearch=ElasticsearchSettings(hosts=[stack.elasticsearch_url], index_prefix=self.prefix),
            rules=RulesSettings(directories=[rules_dir]),
            pipeline=PipelineSettings(metrics_port=0, bulk_flush_interval_s=0.2, poll_timeout_ms=200),
        )
        self.topics = [*self.settings.kafka.raw_topics, self.settings.kafka.alerts_topic, self.settings.kafka.dlq_topic]
        self.templates = setup(self.settings)["templates"]
        self._wait_for_topic_metadata()
        self.es = Elasticsearch(stack.elasticsearch_url, request_timeout=30)
        self.producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
        self.services: list[Service] = []

    def _wait_for_topic_metadata(self) -> None:
        """A group member that subscribes before a new topic has partition leaders gets no partitions until
        its next metadata refresh (metadata.max.age.ms, 5 min): wait until the topics are fully visible."""
        probe = KafkaConsumer(bootstrap_servers=self.settings.kafka.bootstrap_servers)
        deadline = time.monotonic() + 30
        try:
            while True:
                probe.poll(timeout_ms=0)  # lets the client refresh its metadata
                counts = {t: len(probe.partitions_for_topic(t) or ()) for t in self.topics}
                if all(n == self.settings.kafka.topic_partitions for n in counts.values()):
                    return
                assert time.monotonic() < deadline, f"topics not visible: {counts}"
                probe.topics()  # forces a metadata request
                time.sleep(0.2)
        finally:
            probe.close()

    def start(self, stages: tuple[str, ...] = ("detect", "correlate")) -> Service:
        service = build_service(self.settings, stages=stages)  # type: ignore[arg-type]
        service.start()
        self.services.append(service)
        return service

    def stop(self, service: Service) -> None:
        service.stop(timeout_s=45)
        assert not service.alive(), "service did not stop"
        assert service.errors == []

    def produce(self, source: str, records: list[dict[str, Any]]) -> None:
        topic = next(t for t, parser in self.settings.kafka.raw_topics.items() if parser == source)
        for record in records:
            # One key per account/cluster: the records stay in order on one partition, so which alerts fill a
            # window (and thus the window start in the match id) is deterministic.
            self.producer.send(topic, orjson.dumps(record), key=b"one-source")
        self.producer.flush(30)

    def search(self, index: str, query: dict[str, Any], size: int = 100) -> list[dict[str, Any]]:
        if not self.es.indices.exists(index=index, allow_no_indices=False, ignore_unavailable=True):
            return []
        self.es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
        resp = self.es.search(index=index, query=query, size=size, ignore_unavailable=True, allow_no_indices=True)
        return [{"_id": h["_id"], **h["_source"]} for h in resp["hits"]["hits"]]

    def correlations(self, rule_id: str) -> list[dict[str, Any]]:
        return self.search(f"{self.prefix}-alerts-*", {"term": {"rule.id": rule_id}})

    def alerts(self, rule_id: str) -> list[dict[str, Any]]:
        return self.correlations(rule_id)

    def incidents(self) -> list[dict[str, Any]]:
        return self.search(self.settings.elasticsearch.incidents_index, {"match_all": {}})

    def wait_for(self, what: str, probe: Callable[[], Any], timeout_s: float = WAIT_S) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = probe()
            if value:
                return value
            for service in self.services:
                assert service.errors == [], service.errors
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
            time.sleep(0.5)

    def settle(self, seconds: float = 3.0) -> None:
        """Give a late duplicate time to show up before asserting 'exactly one'."""
        time.sleep(seconds)

    def correlate_committed_all(self) -> bool:
        """The correlate group has committed the end of every partition of the alerts topic."""
        kafka = self.settings.kafka
        # assign() only (never subscribe): reads the group's commits without joining the group
        consumer = KafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=kafka.correlate_group_id,
                                 enable_auto_commit=False)
        try:
            tps = [TopicPartition(kafka.alerts_topic, p) for p in consumer.partitions_for_topic(kafka.alerts_topic)]
            consumer.assign(tps)
            ends = consumer.end_offsets(tps)
            return sum(ends.values()) > 0 and all(
                end == 0 or consumer.committed(tp) == end for tp, end in ends.items()
            )
        finally:
            consumer.close(autocommit=False)

    def close(self) -> None:
        for service in self.services:
            if service.alive():
                service.stop(timeout_s=45)
        self.producer.close(timeout=10)
        try:
            names = list(self.es.indices.get(index=f"{self.prefix}-*", expand_wildcards="all"))
            for name in names:
                self.es.indices.delete(index=name, ignore_unavailable=True)
            # index templates first: component templates in use cannot be removed
            for name in self.templates:
                if self.es.indices.exists_index_template(name=name):
                    self.es.indices.delete_index_template(name=name)
            for name in self.templates:
                if self.es.cluster.exists_component_template(name=name):
                    self.es.cluster.delete_component_template(name=name)
        finally:
            self.es.close()
        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka.bootstrap_servers)
        try:
            admin.delete_topics(self.topics)
        except Exception:  # best effort: unique names never collide anyway
            pass
        finally:
            admin.close()


@pytest.fixture
def pipeline_factory(local_stack, tmp_path) -> Iterator[Callable[[str], Pipeline]]:
    made: list[Pipeline] = []

    def make(rules: str) -> Pipeline:
        pipeline = Pipeline(local_stack, tmp_path / f"rules{len(made)}", rules)
        made.append(pipeline)
        return pipeline

    yield make
    for pipeline in made:
        pipeline.close()


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, [i.get("_id") for i in items]
    return items[0]


# ---- scenarios ------------------------------------------------------------------------------------------


def test_console_brute_force_then_success(pipeline_factory):
    p = pipeline_factory(LOGIN_RULES + "---" + CHAIN_RULE)
    records = cloudtrail(is_console_login)
    attacker_failures = [
        r for r in records if r["sourceIPAddress"] == ATTACKER_IP and r["responseElements"]["ConsoleLogin"] == "Failure"
    ]
    success = next(
        r for r in records if r["sourceIPAddress"] == ATTACKER_IP and r["responseElements"]["ConsoleLogin"] == "Success"
    )
    assert len(attacker_failures) == 9  # 8 for alice.admin, 1 for an unknown user name
    p.start()
    p.produce("cloudtrail", records)

    burst = only(p.wait_for("brute force correlation", lambda: p.correlations(BRUTE_FORCE)))
    chained = only(p.wait_for("brute force -> success correlation", lambda: p.correlations(BRUTE_THEN_SUCCESS)))
    p.settle()
    # the first five failures within 10 minutes match; the remaining four open a window that never reaches five
    first_five = attacker_failures[:5]
    assert burst["_id"] == match_id(BRUTE_FORCE, (ATTACKER_IP,), epoch_ms(first_five[0]["eventTime"]))
    corr = burst["siem"]["correlation"]
    assert (corr["type"], corr["aggregate"], corr["input_count"]) == ("event_count", 5.0, 5)
    assert corr["group_by"] == {"sourceIPAddress": ATTACKER_IP}
    assert len(corr["alert_ids"]) == 5
    assert sorted(corr["event_ids"]) == sorted(r["eventID"] for r in first_five)
    assert burst["event"]["start"][:19] == first_five[0]["eventTime"][:19]
    assert burst["event"]["end"][:19] == first_five[-1]["eventTime"][:19]
    # the parent correlation saw the burst (via siem.alerts) and then the success, in that order
    assert chained["_id"] == match_id(BRUTE_THEN_SUCCESS, (ATTACKER_IP,), epoch_ms(first_five[-1]["eventTime"]))
    ccorr = chained["siem"]["correlation"]
    assert (ccorr["type"], ccorr["input_count"]) == ("temporal_ordered", 2)
    assert ccorr["alert_ids"][0] == burst["_id"]
    assert ccorr["event_ids"] == [success["eventID"]]
    assert chained["siem"]["level"] == "high"
    assert p.correlations(BRUTE_FORCE) == [burst] and p.correlations(BRUTE_THEN_SUCCESS) == [chained]

    incidents = p.wait_for("two incidents", lambda: (lambda i: i if len(i) == 2 else None)(p.incidents()))
    by_key = {i["key"]: i for i in incidents}
    assert set(by_key) == {
        f"corr:{BRUTE_FORCE}:sourceIPAddress={ATTACKER_IP}",
        f"corr:{BRUTE_THEN_SUCCESS}:sourceIPAddress={ATTACKER_IP}",
    }
    assert by_key[f"corr:{BRUTE_FORCE}:sourceIPAddress={ATTACKER_IP}"]["correlation_ids"] == [burst["_id"]]
    top = by_key[f"corr:{BRUTE_THEN_SUCCESS}:sourceIPAddress={ATTACKER_IP}"]
    assert (top["correlation_ids"], top["severity"], top["alert_count"]) == ([chained["_id"]], "high", 1)
    assert ATTACKER_IP in top["entities"]["ips"]
    # correlation alerts, incidents and claims: every field they carry is in the templates
    assert unmapped_fields(p.es, p.prefix) == {}


def test_iam_persistence_chain(pipeline_factory):
    p = pipeline_factory(IAM_RULES)
    story = {"CreateUser", "CreateAccessKey", "AttachUserPolicy"}
    records = cloudtrail(lambda r: r.get("eventSource") == "iam.amazonaws.com")
    steps = [r for r in records if r["eventName"] in story and r["userIdentity"].get("arn") == ALICE]
    assert [r["eventName"] for r in steps] == ["CreateUser", "CreateAccessKey", "AttachUserPolicy"]
    p.start()
    p.produce("cloudtrail", records)

    chain = only(p.wait_for("IAM persistence correlation", lambda: p.correlations(IAM_CHAIN)))
    assert chain["_id"] == match_id(IAM_CHAIN, (ALICE,), epoch_ms(steps[0]["eventTime"]))
    corr = chain["siem"]["correlation"]
    assert (corr["type"], corr["aggregate"], corr["input_count"]) == ("temporal_ordered", 3.0, 3)
    assert corr["event_ids"] == [r["eventID"] for r in steps]
    assert chain["siem"]["level"] == "critical"
    assert set(chain["threat"]["technique"]["id"]) == {"T1136.003", "T1098.001"}

    # two incidents: the correlation (keyed by its group) and the high-level admin-policy alert on its own
    incidents = p.wait_for("two incidents", lambda: (lambda i: i if len(i) == 2 else None)(p.incidents()))
    p.settle()
    incidents = p.incidents()
    by_kind = {tuple(r["kind"] for r in i["rules"]): i for i in incidents}
    assert set(by_kind) == {("correlation",), ("detection",)}
    correlation_incident = by_kind[("correlation",)]
    assert correlation_incident["key"] == f"corr:{IAM_CHAIN}:userIdentity.arn={ALICE}"
    assert correlation_incident["correlation_ids"] == [chain["_id"]]
    assert correlation_incident["severity"] == "critical"
    admin_alert = only(p.alerts(ATTACH_ADMIN))
    detection_incident = by_kind[("detection",)]
    assert detection_incident["alert_ids"] == [admin_alert["_id"]]
    assert detection_incident["rules"][0]["id"] == ATTACH_ADMIN
    assert detection_incident["severity"] == "high"


def test_kubernetes_exec_across_namespaces(pipeline_factory):
    p = pipeline_factory(K8S_RULES)
    events = retime(_lines("k8s_audit.jsonl"), ("requestReceivedTimestamp", "stageTimestamp"), timedelta(minutes=10))
    execs = [
        e for e in events
        if e.get("objectRef", {}).get("subresource") == "exec" and e["stage"] == "ResponseComplete"
        and e["user"]["username"] == "oidc:mallory@example.com"
    ]
    assert [e["objectRef"]["namespace"] for e in execs] == ["payments", "web", "kube-system", "data"]
    p.start()
    p.produce("k8s_audit", events)

    spread = only(p.wait_for("exec spread correlation", lambda: p.correlations(EXEC_SPREAD)))
    p.settle()
    assert p.correlations(EXEC_SPREAD) == [spread]
    corr = spread["siem"]["correlation"]
    assert (corr["type"], corr["aggregate"], corr["input_count"]) == ("value_count", 3.0, 3)
    assert corr["group_by"] == {"user.username": "oidc:mallory@example.com"}
    first = execs[0]
    assert spread["_id"] == match_id(EXEC_SPREAD, ("oidc:mallory@example.com",), epoch_ms(first["stageTimestamp"]))
    incident = only(p.wait_for("incident", p.incidents))
    assert incident["key"] == f"corr:{EXEC_SPREAD}:user.username=oidc:mallory@example.com"
    assert incident["correlation_ids"] == [spread["_id"]]
    assert set(incident["entities"]["namespaces"]) == {"payments", "web", "kube-system"}


def test_restart_in_the_middle_of_an_open_window(pipeline_factory):
    p = pipeline_factory(LOGIN_RULES)
    records = cloudtrail(is_console_login)
    failures = [
        r for r in records if r["sourceIPAddress"] == ATTACKER_IP and r["responseElements"]["ConsoleLogin"] == "Failure"
    ][:5]
    first = p.start()
    p.produce("cloudtrail", failures[:3])
    p.wait_for("3 failed-login alerts", lambda: len(p.alerts(FAILED_LOGIN)) == 3)
    p.wait_for("correlate group committed", p.correlate_committed_all)
    assert p.correlations(BRUTE_FORCE) == []
    p.stop(first)

    second = p.start()
    p.produce("cloudtrail", failures[3:])
    burst = only(p.wait_for("brute force correlation after restart", lambda: p.correlations(BRUTE_FORCE)))
    p.settle()
    assert p.correlations(BRUTE_FORCE) == [burst]
    assert burst["_id"] == match_id(BRUTE_FORCE, (ATTACKER_IP,), epoch_ms(failures[0]["eventTime"]))
    corr = burst["siem"]["correlation"]
    assert (corr["aggregate"], corr["input_count"]) == (5.0, 5)
    assert sorted(corr["event_ids"]) == sorted(r["eventID"] for r in failures)
    incident = only(p.incidents())
    assert incident["correlation_ids"] == [burst["_id"]] and incident["alert_count"] == 1
    p.stop(second)


def test_two_correlators_share_the_keys(pipeline_factory):
    p = pipeline_factory(LOGIN_RULES)
    template = [
        r for r in cloudtrail(is_console_login)
        if r["sourceIPAddress"] == ATTACKER_IP and r["responseElements"]["ConsoleLogin"] == "Failure"
    ][:5]
    ips = [f"203.0.113.{n}" for n in range(100, 108)]
    records = []
    for ip in ips:
        for n, r in enumerate(template):
            records.append({**r, "sourceIPAddress": ip, "eventID": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ip}/{n}"))})
    correlators = [p.start(("correlate",)), p.start(("correlate",))]
    runners = [s.runners[0] for s in correlators]

    def split() -> bool:
        owned = [r.assignment() for r in runners]
        return all(owned) and not (owned[0] & owned[1]) and len(owned[0] | owned[1]) == 3

    p.wait_for("both correlators own partitions", split)
    p.start(("detect",))
    p.produce("cloudtrail", records)

    found = p.wait_for("8 correlations", lambda: (lambda c: c if len(c) == len(ips) else None)(
        p.correlations(BRUTE_FORCE)))
    p.settle()
    assert len(p.correlations(BRUTE_FORCE)) == len(ips)
    assert sorted(c["siem"]["correlation"]["group_key"][0] for c in found) == ips
    for c in found:
        assert c["_id"] == match_id(BRUTE_FORCE, (c["siem"]["correlation"]["group_key"][0],),
                                    epoch_ms(template[0]["eventTime"]))
    # each key was decided by exactly one process, and both processes did some of the work
    decided = [r._correlate.engine.stats.matches for r in runners]
    assert sum(decided) == len(ips) and all(decided), decided
    incidents = p.incidents()
    assert sorted(i["key"] for i in incidents) == sorted(f"corr:{BRUTE_FORCE}:sourceIPAddress={ip}" for ip in ips)


def test_a_correlation_rule_added_while_running_correlates_after_the_reload(pipeline_factory):
    base_rules, brute_force_rule = LOGIN_RULES.rsplit("---", 1)
    p = pipeline_factory(base_rules)
    rules = p.settings.rules.model_copy(update={"reload_interval_s": 1.0})
    p.settings = p.settings.model_copy(update={"rules": rules})
    p.start()
    # The running service picks up the new file: the detect stage starts routing failed logins to the
    # correlation, the correlate stage starts keeping its windows. Nothing is restarted.
    (rules.directories[0] / "brute_force.yml").write_text(brute_force_rule, encoding="utf-8")
    time.sleep(5.0)  # several reload intervals, and polls of both stages
    records = cloudtrail(is_console_login)
    p.produce("cloudtrail", records)
    burst = only(p.wait_for("brute force correlation after the reload", lambda: p.correlations(BRUTE_FORCE)))
    first_five = [
        r for r in records if r["sourceIPAddress"] == ATTACKER_IP and r["responseElements"]["ConsoleLogin"] == "Failure"
    ][:5]
    assert burst["_id"] == match_id(BRUTE_FORCE, (ATTACKER_IP,), epoch_ms(first_five[0]["eventTime"]))
    assert sorted(burst["siem"]["correlation"]["event_ids"]) == sorted(r["eventID"] for r in first_five)
