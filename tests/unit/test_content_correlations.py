"""The project's correlation rules (sigma_rules/rules) fire on attack sequences and stay quiet otherwise.

Events go through the same path as in production: base rules match the event (``RuleSet.match``), each match is
routed to the correlations that reference its rule (group-by values read from the event, native fields first,
then ECS), and the correlation engine evaluates the windows.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from correlation.detection.engine import RuleSet
from correlation.detection.fields import lookup
from correlation.detection.loader import load_rules
from correlation.windows.engine import CorrelationEngine
from correlation.windows.messages import CorrelationMatch
from correlation.windows.router import CorrelationRouter
from correlation.windows.rules import CompiledCorrelation, compile_correlation
from parsers.base import ParsedEvent
from siem.config import PROJECT_ROOT

DATASETS = {"aws": "aws.cloudtrail", "k8s": "kubernetes.audit_logs", "web": "app.access", "app": "app.logs"}


@cache
def content() -> tuple[RuleSet, tuple[CompiledCorrelation, ...]]:
    loaded = load_rules([PROJECT_ROOT / "sigma_rules"])
    assert not loaded.problems, loaded.problems
    return RuleSet.from_loaded(loaded), tuple(compile_correlation(c) for c in loaded.correlations)


class Pipeline:
    """Detect + correlate for a sequence of native events with explicit timestamps (seconds)."""

    def __init__(self) -> None:
        self.rules, self.correlations = content()
        self.router = CorrelationRouter(self.correlations)
        self.engine = CorrelationEngine(
            self.correlations, allowed_lateness_ms=0, router=self.router, timer_resolution_ms=1
        )
        self.fired: list[CorrelationMatch] = []
        self.n = 0

    def feed(self, source: str, ts_s: int, native: dict[str, Any]) -> None:
        self.n += 1
        event = ParsedEvent(f"e{self.n}", DATASETS[source], {}, native)

        def get(path: str) -> Any:
            values = lookup(event.native, path) or lookup(event.ecs, path)
            return values[0] if values else None

        for number, match in enumerate(self.rules.match(event)):
            name = getattr(match.rule.rule, "name", None) or match.rule.title
            for inp in self.router.route(
                match.rule.rule_id, name, get, ts_s * 1000, f"a{self.n}.{number}", event_id=event.id
            ):
                self.fired.extend(self.engine.process(inp))

    def names(self) -> set[str]:
        by_id = {c.id: c.name for c in self.correlations}
        return {str(by_id[m.correlation_id]) for m in self.fired}


def ct(name: str, source: str = "iam.amazonaws.com", ip: str = "203.0.113.66", **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventSource": source,
        "eventName": name,
        "sourceIPAddress": ip,
        "userIdentity": {"type": "IAMUser", "userName": "mallory", "arn": "arn:aws:iam::123456789012:user/mallory"},
    }
    event.update(fields)
    return event


def console(outcome: str, user: str = "alice.admin", ip: str = "203.0.113.66") -> dict[str, Any]:
    return ct(
        "ConsoleLogin",
        "signin.amazonaws.com",
        ip,
        responseElements={"ConsoleLogin": outcome},
        additionalEventData={"MFAUsed": "No"},
        userIdentity={"type": "IAMUser", "userName": user},
    )


def test_console_brute_force_then_success_fires_chain() -> None:
    p = Pipeline()
    for i in range(5):
        p.feed("aws", i * 10, console("Failure"))
    assert "aws_console_brute_force" in p.names()
    assert "aws_console_brute_force_then_success" not in p.names()
    p.feed("aws", 120, console("Success"))
    assert "aws_console_brute_force_then_success" in p.names()


def test_console_failures_from_different_ips_do_not_make_a_brute_force() -> None:
    p = Pipeline()
    for i in range(5):
        p.feed("aws", i, console("Failure", ip=f"198.51.100.{i}"))
    p.feed("aws", 60, console("Success", ip="198.51.100.1"))
    assert p.names() == set()


def test_password_spray_counts_distinct_users() -> None:
    p = Pipeline()
    for i, user in enumerate(["alice", "bob", "carol"]):
        p.feed("aws", i, console("Failure", user=user, ip="198.51.100.50"))
    assert "aws_console_password_spray" not in p.names()
    p.feed("aws", 10, console("Failure", user="dave", ip="198.51.100.50"))
    assert "aws_console_password_spray" in p.names()


ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"


def test_iam_persistence_chain_in_order_fires() -> None:
    p = Pipeline()
    p.feed("aws", 0, ct("CreateUser", requestParameters={"userName": "backup-svc"}))
    p.feed("aws", 60, ct("CreateAccessKey", requestParameters={"userName": "backup-svc"}))
    p.feed("aws", 120, ct("AttachUserPolicy", requestParameters={"userName": "backup-svc", "policyArn": ADMIN}))
    assert "aws_iam_persistence_chain" in p.names()


def test_iam_persistence_chain_out_of_order_or_too_slow_does_not_fire() -> None:
    p = Pipeline()
    p.feed("aws", 0, ct("AttachUserPolicy", requestParameters={"userName": "svc", "policyArn": ADMIN}))
    p.feed("aws", 10, ct("CreateAccessKey", requestParameters={"userName": "svc"}))
    p.feed("aws", 20, ct("CreateUser", requestParameters={"userName": "svc"}))
    p.feed("aws", 10_000, ct("CreateUser", requestParameters={"userName": "late"}))
    p.feed("aws", 10_100, ct("CreateAccessKey", requestParameters={"userName": "late"}))
    p.feed("aws", 20_000, ct("AttachUserPolicy", requestParameters={"userName": "late", "policyArn": ADMIN}))
    assert "aws_iam_persistence_chain" not in p.names()


def test_new_admin_stopping_cloudtrail_uses_aliases() -> None:
    p = Pipeline()
    p.feed("aws", 0, ct("AttachUserPolicy", requestParameters={"userName": "backup-svc", "policyArn": ADMIN}))
    p.feed(
        "aws",
        300,
        ct(
            "StopLogging",
            "cloudtrail.amazonaws.com",
            requestParameters={"name": "main"},
            userIdentity={"type": "IAMUser", "userName": "someone-else"},
        ),
    )
    assert "aws_admin_grant_then_logging_stopped" not in p.names()
    p.feed(
        "aws",
        400,
        ct(
            "StopLogging",
            "cloudtrail.amazonaws.com",
            requestParameters={"name": "main"},
            userIdentity={"type": "IAMUser", "userName": "backup-svc"},
        ),
    )
    assert "aws_admin_grant_then_logging_stopped" in p.names()


def test_discovery_burst_threshold() -> None:
    p = Pipeline()
    calls = ["ListUsers", "ListRoles", "ListPolicies", "GetAccountAuthorizationDetails", "ListAccessKeys"]
    for i in range(19):
        p.feed("aws", i, ct(calls[i % len(calls)]))
    assert "aws_discovery_burst" not in p.names()
    p.feed("aws", 30, ct("ListGroups"))
    assert "aws_discovery_burst" in p.names()


def test_bulk_secret_retrieval_counts_distinct_secrets() -> None:
    p = Pipeline()
    for i in range(6):
        p.feed("aws", i, ct("GetSecretValue", "secretsmanager.amazonaws.com", requestParameters={"secretId": "same"}))
    assert "aws_bulk_secret_retrieval" not in p.names()
    for i in range(5):
        p.feed(
            "aws",
            10 + i,
            ct("GetSecretValue", "secretsmanager.amazonaws.com", requestParameters={"secretId": f"prod/s{i}"}),
        )
    assert "aws_bulk_secret_retrieval" in p.names()


def k8s(
    verb: str,
    resource: str,
    ns: str | None = "default",
    user: str = "eve",
    name: str = "x",
    sub: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    ref: dict[str, Any] = {"resource": resource, "name": name}
    if ns:
        ref["namespace"] = ns
    if sub:
        ref["subresource"] = sub
    event: dict[str, Any] = {
        "kind": "Event",
        "verb": verb,
        "user": {"username": user},
        "objectRef": ref,
        "sourceIPs": ["10.0.0.5"],
        "responseStatus": {"code": 200},
    }
    event.update(fields)
    return event


def test_exec_across_namespaces_value_count() -> None:
    p = Pipeline()
    p.feed("k8s", 0, k8s("create", "pods", "team-a", sub="exec"))
    p.feed("k8s", 10, k8s("create", "pods", "team-b", sub="exec"))
    p.feed("k8s", 20, k8s("create", "pods", "team-b", sub="exec", user="other"))
    assert "k8s_exec_across_namespaces" not in p.names()
    p.feed("k8s", 30, k8s("create", "pods", "team-c", sub="attach"))
    assert "k8s_exec_across_namespaces" in p.names()


def test_privileged_pod_then_exec_into_the_same_pod() -> None:
    p = Pipeline()
    pod = {
        "kind": "Pod",
        "metadata": {"name": "escape"},
        "spec": {"containers": [{"name": "c", "securityContext": {"privileged": True}}]},
    }
    p.feed("k8s", 0, k8s("create", "pods", "default", name="escape", requestObject=pod))
    p.feed("k8s", 30, k8s("create", "pods", "default", name="unrelated", sub="exec"))
    assert "k8s_privileged_pod_then_exec" not in p.names()
    p.feed("k8s", 60, k8s("create", "pods", "default", name="escape", sub="exec"))
    assert "k8s_privileged_pod_then_exec" in p.names()


def test_admin_binding_and_secret_dump_in_any_order() -> None:
    p = Pipeline()
    p.feed("k8s", 0, k8s("list", "secrets", ns=None, user="eve"))
    p.feed(
        "k8s",
        60,
        k8s(
            "create",
            "clusterrolebindings",
            ns=None,
            user="eve",
            requestObject={"roleRef": {"name": "cluster-admin"}, "subjects": [{"name": "eve"}]},
        ),
    )
    assert "k8s_admin_binding_and_secret_dump" in p.names()


def test_forbidden_burst() -> None:
    p = Pipeline()
    for i in range(10):
        p.feed("k8s", i, k8s("list", "pods", user="stolen", responseStatus={"code": 403}))
    assert "k8s_forbidden_burst" in p.names()


def web(uri: str, status: int, method: str = "POST", ip: str = "198.51.100.23", nbytes: int = 61) -> dict[str, Any]:
    return {
        "c-ip": ip,
        "cs-method": method,
        "cs-uri-stem": uri,
        "cs-uri-query": "-",
        "sc-status": status,
        "sc-bytes": nbytes,
        "cs-user-agent": "python-requests/2.32.3",
    }


def test_web_401_burst_then_200_from_same_client() -> None:
    p = Pipeline()
    p.feed("web", 0, web("/api/v1/auth/login", 200))  # a success before the burst does not count
    for i in range(10):
        p.feed("web", 1 + i * 3, web("/api/v1/auth/login", 401))
    assert "web_login_brute_force" in p.names()
    p.feed("web", 40, web("/api/v1/auth/login", 200, ip="203.0.113.1"))
    assert "web_brute_force_then_login" not in p.names()
    p.feed("web", 45, web("/api/v1/auth/login", 200))
    assert "web_brute_force_then_login" in p.names()


def test_web_bulk_download_value_sum() -> None:
    p = Pipeline()
    for i in range(5):
        p.feed("web", i * 60, web("/export/all.csv", 200, method="GET", nbytes=100_000_000))
    assert "web_bulk_download" not in p.names()  # exactly 500 MB: the condition is "more than"
    p.feed("web", 400, web("/export/all.csv", 200, method="GET", nbytes=2_000_000))
    assert "web_bulk_download" in p.names()


def test_web_error_spike() -> None:
    p = Pipeline()
    for i in range(49):
        p.feed("web", i, web(f"/admin{i}", 404, method="GET"))
    assert "web_error_spike" not in p.names()
    p.feed("web", 55, web("/admin-x", 404, method="GET"))
    assert "web_error_spike" in p.names()


def test_sqli_request_then_app_sql_error_across_sources() -> None:
    p = Pipeline()
    attack = web("/products", 500, method="GET", ip="203.0.113.9")
    attack["cs-uri-query"] = "id=1%20UNION%20SELECT%20password%20FROM%20users"
    p.feed("web", 0, attack)
    p.feed("app", 1, {"level": "error", "client_ip": "198.51.100.1", "msg": 'syntax error at or near "UNION"'})
    assert "web_attack_then_app_error" not in p.names()
    p.feed("app", 2, {"level": "error", "client_ip": "203.0.113.9", "msg": 'syntax error at or near "UNION"'})
    assert "web_attack_then_app_error" in p.names()


@pytest.mark.parametrize("attempts", [[1, 2, 3], [4, 5, 6, 7]])
def test_app_failures_then_success_and_retry_average(attempts: list[int]) -> None:
    p = Pipeline()
    for i, attempt in enumerate(attempts):
        p.feed("app", i, {"event": "login_failed", "username": "bob", "client_ip": "198.51.100.23", "attempt": attempt})
    p.feed("app", 30, {"event": "session_created", "username": "bob", "client_ip": "198.51.100.23"})
    assert ("app_user_targeted_attempts" in p.names()) is (sum(attempts) / len(attempts) >= 5)
    assert ("app_auth_failures_then_success" in p.names()) is (len(attempts) >= 5)


def test_app_failure_burst_then_success() -> None:
    p = Pipeline()
    for i in range(5):
        p.feed("app", i, {"event": "login_failed", "username": "bob", "client_ip": "198.51.100.23", "attempt": i})
    p.feed("app", 30, {"event": "session_created", "username": "bob", "client_ip": "198.51.100.23"})
    assert {"app_auth_failure_burst", "app_auth_failures_then_success"} <= p.names()
