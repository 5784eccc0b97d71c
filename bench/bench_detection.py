"""Detection-only throughput: events already parsed, one core, growing rule sets.

Rule sets: the SigmaHQ CloudTrail + Kubernetes rules (73), then 500 ... 5,000 rules made from them by swapping
their literals for other realistic values (other API calls of a real AWS service, seen in the test corpus or
plausible; Kubernetes resources and verbs; other substrings), so the index is exercised the way a large real rule
base would exercise it. Prints events/s, rule evaluations per event and throughput relative to the SigmaHQ set.

    taskset -c 1 .venv/bin/python bench/bench_detection.py [--seconds 3] [--sizes 500 1000 2000 5000]
        [--pairing consistent|independent]
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from correlation.detection.engine import RuleSet  # noqa: E402
from correlation.detection.loader import load_rules  # noqa: E402
from parsers.base import ParsedEvent  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
SIGMAHQ = DATA / "sigmahq" / "rules"
RULE_DIRS = [SIGMAHQ / "cloud" / "aws" / "cloudtrail", SIGMAHQ / "application" / "kubernetes" / "audit"]


def load_events() -> list[ParsedEvent]:
    events: list[ParsedEvent] = []
    for line in (DATA / "panther" / "cloudtrail_tests.jsonl").read_text().splitlines():
        record = json.loads(line)["log"]
        if isinstance(record, dict) and "eventName" in record:
            events.append(ParsedEvent(str(record.get("eventID", len(events))), "aws.cloudtrail", {}, record))
    for line in (DATA / "panther" / "k8s_tests.jsonl").read_text().splitlines():
        record = json.loads(line)["log"]
        if isinstance(record, dict) and record.get("kind") == "Event" and "verb" in record:
            events.append(ParsedEvent(str(record.get("auditID", len(events))), "kubernetes.audit_logs", {}, record))
    return events


# Plausible AWS API calls the test corpus does not contain (real rule bases watch many more APIs than one
# corpus exercises): (eventSource, eventName).
EXTRA_AWS_CALLS: dict[str, tuple[str, ...]] = {
    "iam.amazonaws.com": ("AttachRolePolicy", "AttachUserPolicy", "CreateRole", "DeleteRolePolicy",
                          "PutRolePolicy", "UpdateAssumeRolePolicy", "CreatePolicyVersion", "DeactivateMFADevice",
                          "DeleteUser", "AddUserToGroup", "CreateServiceLinkedRole", "PassRole"),
    "ec2.amazonaws.com": ("CreateSnapshot", "DeleteSnapshot", "CreateKeyPair", "DeleteVpc",
                          "CreateVpcPeeringConnection",
                          "ModifyImageAttribute", "StopInstances", "TerminateInstances", "GetPasswordData",
                          "DisableSerialConsoleAccess", "CreateTrafficMirrorSession", "ReplaceRoute"),
    "s3.amazonaws.com": ("PutBucketPolicy", "DeleteBucketPolicy", "PutBucketAcl", "PutObjectAcl",
                         "PutBucketReplication", "PutLifecycleConfiguration", "DeleteBucketEncryption",
                         "PutPublicAccessBlock", "DeletePublicAccessBlock"),
    "kms.amazonaws.com": ("ScheduleKeyDeletion", "DisableKey", "PutKeyPolicy", "CreateGrant", "RetireGrant"),
    "rds.amazonaws.com": ("DeleteDBInstance", "ModifyDBSnapshotAttribute", "CopyDBSnapshot", "StopDBInstance"),
    "lambda.amazonaws.com": ("UpdateFunctionCode20150331v2", "AddPermission20150331v2", "CreateFunction20150331",
                             "UpdateFunctionConfiguration20150331v2"),
    "secretsmanager.amazonaws.com": ("GetSecretValue", "DeleteSecret", "PutResourcePolicy", "RotateSecret"),
    "sts.amazonaws.com": ("AssumeRoleWithWebIdentity", "GetFederationToken", "DecodeAuthorizationMessage"),
    "organizations.amazonaws.com": ("LeaveOrganization", "RemoveAccountFromOrganization", "DeletePolicy"),
    "logs.amazonaws.com": ("DeleteLogGroup", "DeleteLogStream", "PutRetentionPolicy", "DeleteSubscriptionFilter"),
    "cloudwatch.amazonaws.com": ("DeleteAlarms", "DisableAlarmActions", "PutMetricAlarm"),
    "dynamodb.amazonaws.com": ("DeleteTable", "ExportTableToPointInTime", "UpdateContinuousBackups"),
    "ecr.amazonaws.com": ("SetRepositoryPolicy", "DeleteRepository", "PutImage", "BatchDeleteImage"),
    "ssm.amazonaws.com": ("StartSession", "GetParameters", "DeleteParameter", "PutParameter"),
    "route53.amazonaws.com": ("ChangeResourceRecordSets", "DeleteHostedZone", "DisassociateVPCFromHostedZone"),
    "sns.amazonaws.com": ("DeleteTopic", "SetTopicAttributes", "Subscribe"),
    "sqs.amazonaws.com": ("DeleteQueue", "SetQueueAttributes", "PurgeQueue"),
    "cloudformation.amazonaws.com": ("CreateStack", "DeleteStack", "UpdateStack", "CreateStackSet"),
    "backup.amazonaws.com": ("DeleteBackupVault", "DeleteRecoveryPoint", "PutBackupVaultAccessPolicy"),
    "access-analyzer.amazonaws.com": ("DeleteAnalyzer", "UpdateArchiveRule"),
    "waf.amazonaws.com": ("DeleteWebACL", "UpdateWebACL", "DeleteRule"),
}
EXTRA_K8S = {
    "verb": ("deletecollection", "escalate", "bind", "impersonate", "proxy"),
    "objectRef.resource": ("networkpolicies", "podsecuritypolicies", "persistentvolumes", "statefulsets",
                           "replicasets", "nodes", "namespaces", "tokenreviews", "leases", "horizontalpodautoscalers"),
}

NUMBER_POOLS = {"responseStatus.code": (400, 401, 403, 404, 409, 410, 413, 415, 422, 429, 500, 502, 503, 504)}


def value_pools(events: list[ParsedEvent]) -> dict[str, list[str]]:
    """Literal vocabularies: the values seen in the corpus plus plausible ones it does not contain."""
    pools = {field: set(values) for field, values in EXTRA_K8S.items()}
    for event in events:
        native = event.native
        if isinstance(native.get("verb"), str):
            pools["verb"].add(native["verb"])
        resource = (native.get("objectRef") or {}).get("resource")
        if isinstance(resource, str) and resource:
            pools["objectRef.resource"].add(resource)
    return {k: sorted(v) for k, v in pools.items()}


def aws_calls(events: list[ParsedEvent]) -> dict[str, list[str]]:
    """eventSource -> eventNames it serves: pairs seen in the corpus plus :data:`EXTRA_AWS_CALLS`."""
    calls: dict[str, set[str]] = {source: set(names) for source, names in EXTRA_AWS_CALLS.items()}
    for event in events:
        source, name = event.native.get("eventSource"), event.native.get("eventName")
        if isinstance(source, str) and isinstance(name, str):
            calls.setdefault(source, set()).add(name)
    return {source: sorted(names) for source, names in sorted(calls.items())}


def _mutate(value: Any, field: str, modifiers: list[str], pools: dict[str, list[str]], rng: random.Random,
            tag: str) -> Any:
    if isinstance(value, list):
        return [_mutate(v, field, modifiers, pools, rng, tag) for v in value]
    if type(value) is int and field in NUMBER_POOLS and not modifiers:
        return rng.choice(NUMBER_POOLS[field])
    if not isinstance(value, str) or value in ("*", ""):
        return value
    if field in pools and not modifiers and pools[field]:
        return rng.choice(pools[field])
    if modifiers and modifiers[0] in ("re", "cidr", "fieldref", "expand", "exists"):
        return value
    return f"{value}{tag}"


class Generator:
    """Variants of real rules with other literals.

    ``consistent`` (default): a variant watches other API calls of one real service, so its eventSource and
    eventNames belong together, as in real rules. ``independent``: eventName and eventSource drawn separately
    (a worst case for an index on eventName alone: many rules share each eventName).
    """

    def __init__(self, events: list[ParsedEvent], pairing: str) -> None:
        self.pools = value_pools(events)
        self.calls = aws_calls(events)
        self.sources = list(self.calls)
        self.names = sorted({n for names in self.calls.values() for n in names})
        self.pairing = pairing

    def variant(self, rule: dict[str, Any], number: int, rng: random.Random) -> dict[str, Any]:
        out = copy.deepcopy(rule)
        out["id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        out["title"] = f"{rule['title']} (variant {number})"
        out.pop("related", None)
        tag = f"-v{number}"
        source = rng.choice(self.sources)
        for name, body in out["detection"].items():
            if name == "condition":
                continue
            maps = body if isinstance(body, list) else [body]
            for item in maps:
                if not isinstance(item, dict):
                    continue
                for key in list(item):
                    field, *modifiers = key.split("|")
                    if field in ("eventName", "eventSource") and not modifiers:
                        item[key] = self._aws(item[key], field, source, rng)
                    else:
                        item[key] = _mutate(item[key], field, modifiers, self.pools, rng, tag)
        return out

    def _aws(self, value: Any, field: str, source: str, rng: random.Random) -> Any:
        if isinstance(value, list):
            return [self._aws(v, field, source, rng) for v in value]
        if not isinstance(value, str):
            return value
        if self.pairing == "independent":
            return rng.choice(self.sources if field == "eventSource" else self.names)
        return source if field == "eventSource" else rng.choice(self.calls[source])


def build_rules(size: int, base: list[dict[str, Any]], generator: Generator, target: Path) -> Path:
    rng = random.Random(size)
    directory = target / f"rules_{size}"
    directory.mkdir()
    for number in range(size):
        template = base[number % len(base)]
        rule = template if number < len(base) else generator.variant(template, number, rng)
        (directory / f"rule_{number:05d}.yml").write_text(yaml.safe_dump(rule, sort_keys=False))
    return directory


def measure(rule_set: RuleSet, events: list[ParsedEvent], seconds: float) -> tuple[float, float, int, float]:
    """(events per wall-clock second, per CPU second of this process, matches in one pass over the events,
    rule evaluations per event). On a shared core the CPU-time rate is the one-core throughput."""
    before = sum(rule.stats.evaluations for rule in rule_set.rules)
    matches = sum(len(rule_set.match(event)) for event in events)
    evaluations = (sum(rule.stats.evaluations for rule in rule_set.rules) - before) / len(events)
    processed = 0
    match = rule_set.match
    start, cpu = time.perf_counter(), time.process_time()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for event in events:
            for found in match(event):
                # The detect stage builds an alert for every match, which reads ``matched_fields``: include the
                # work to produce them (computed lazily by ``Match``), so the figure is not flattered by laziness.
                found.matched_fields  # noqa: B018
        processed += len(events)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return processed / wall, processed / cpu, matches, evaluations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sizes", type=int, nargs="*", default=[500, 1000, 2000, 5000])
    parser.add_argument("--pairing", choices=("consistent", "independent"), default="consistent",
                        help="how variants pick eventSource/eventName (see Generator)")
    args = parser.parse_args()
    events = load_events()
    generator = Generator(events, args.pairing)
    base = [yaml.safe_load(p.read_text()) for d in RULE_DIRS for p in sorted(d.glob("*.yml"))]
    print(f"events: {len(events)} parsed records (CloudTrail + Kubernetes audit), replayed for {args.seconds}s; "
          f"variant literals: {len(generator.names)} eventNames of {len(generator.sources)} eventSources, "
          f"pairing={args.pairing}")
    print(f"{'rules':>7} {'loaded':>7} {'load s':>7} {'events/s':>10} {'ev/cpu-s':>10} {'evals/event':>11}"
          f" {'matches/pass':>12} {'vs SigmaHQ':>10}")
    first: float | None = None
    with tempfile.TemporaryDirectory() as tmp:
        sets = [("SigmaHQ", RULE_DIRS)] + [
            (str(size), [build_rules(size, base, generator, Path(tmp))]) for size in args.sizes
        ]
        for label, directories in sets:
            started = time.perf_counter()
            loaded = load_rules(list(directories))
            load_s = time.perf_counter() - started
            rule_set = RuleSet.from_loaded(loaded)
            rate, cpu_rate, found, evaluations = measure(rule_set, events, args.seconds)
            first = first or cpu_rate
            print(f"{label:>7} {len(loaded.rules):>7} {load_s:>7.1f} {rate:>10,.0f} {cpu_rate:>10,.0f} "
                  f"{evaluations:>11.2f} {found:>12} {cpu_rate / first:>10.2f}", flush=True)


if __name__ == "__main__":
    main()
