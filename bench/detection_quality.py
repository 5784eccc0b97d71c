"""Detection quality of the project's rules on third-party labelled data (Panther and Falco test records).

Panther and Falco labels say whether *their* rule fires. Each of their rules is mapped by hand to an intent: the
project rule(s) that detect the same thing, or "no equivalent". Records are parsed with the production parsers
(``parsers.registry.build_parsers``) so rules see the same event as in the pipeline. For every intent we report
malicious records alerted / total, benign records flagged / total, and the gaps.

Two rule sets are measured: the project's rules alone, and the project's plus the SigmaHQ community rules (a
SigmaHQ rule is not mapped to intents: in that column a record counts as alerted / flagged when one of the
intent's project rules *or any SigmaHQ rule* fires on it).

    python bench/detection_quality.py [--data ../shared/data] [--out docs/detection-quality.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from correlation.detection.engine import RuleSet  # noqa: E402
from correlation.detection.loader import load_rules  # noqa: E402
from parsers.base import ParsedEvent, Parser, SourceRecord  # noqa: E402
from parsers.registry import build_parsers  # noqa: E402
from siem.config import ParserSettings  # noqa: E402

NONE: tuple[str, ...] = ()  # "no equivalent"

AWS_NET = (
    "aws_security_group_change",
    "aws_nacl_change",
    "aws_network_gateway_change",
    "aws_route_table_change",
    "aws_vpc_change",
)
# Panther rule id -> project rule names (by `name:`) with the same intent.
PANTHER_INTENTS: dict[str, tuple[str, ...]] = {
    "AWS.Bedrock.DeleteModelInvocationLoggingConfiguration": ("aws_security_service_disabled",),
    "AWS.Bedrock.GuardrailUpdateDelete": NONE,
    "AWS.CloudTrail.AMIModifiedForPublicAccess": ("aws_snapshot_or_ami_shared",),
    "AWS.CloudTrail.Account.Discovery": ("aws_discovery_call",),
    "AWS.CloudTrail.AttemptToLeaveOrg": ("aws_organization_left",),
    "AWS.CloudTrail.CodebuildProjectMadePublic": NONE,
    "AWS.CloudTrail.Created": ("aws_cloudtrail_config_change",),
    "AWS.CloudTrail.DNSLogsDeleted": ("aws_log_deletion",),
    "AWS.CloudTrail.EnableRegion": ("aws_account_region_enabled",),
    "AWS.CloudTrail.EventSelectorsDisabled": ("aws_cloudtrail_event_selectors_reduced",),
    "AWS.CloudTrail.IAMAnythingChanged": (
        "aws_iam_policy_change",
        "aws_iam_user_created",
        "aws_iam_access_key_created",
        "aws_iam_login_profile_changed",
        "aws_iam_role_trust_policy_updated",
        "aws_iam_user_added_to_admin_group",
        "aws_iam_mfa_device_removed",
    ),
    "AWS.CloudTrail.IAMAssumeRoleBlacklistIgnored": NONE,
    "AWS.CloudTrail.IAMCompromisedKeyQuarantine": ("aws_iam_policy_change",),
    "AWS.CloudTrail.IAMEntityCreatedWithoutCloudFormation": ("aws_iam_user_created",),
    "AWS.CloudTrail.IMDSCredentialExfiltration": ("aws_instance_credentials_used_outside",),
    "AWS.CloudTrail.LoginProfileCreatedOrModified": ("aws_iam_login_profile_changed",),
    "AWS.CloudTrail.NetworkACLPermissiveEntry": ("aws_nacl_change",),
    "AWS.CloudTrail.Password.Policy.Discovery": ("aws_discovery_call",),
    "AWS.CloudTrail.PasswordSpraying": ("aws_console_login_failed",),
    "AWS.CloudTrail.ResourceMadePublic": ("aws_resource_policy_made_public",),
    "AWS.CloudTrail.RootAccessKeyCreated": ("aws_root_access_key_created",),
    "AWS.CloudTrail.RootPasswordChanged": ("aws_root_password_changed",),
    "AWS.CloudTrail.SES.CheckIdentityVerifications": ("aws_discovery_call",),
    "AWS.CloudTrail.SES.CheckSESSendingEnabled": ("aws_discovery_call",),
    "AWS.CloudTrail.SES.CheckSendQuota": ("aws_discovery_call",),
    "AWS.CloudTrail.SES.ListIdentities": ("aws_discovery_call",),
    "AWS.CloudTrail.SecurityConfigurationChange": (
        "aws_cloudtrail_config_change",
        "aws_config_change",
        "aws_guardduty_tampering",
        "aws_security_service_disabled",
    ),
    "AWS.CloudTrail.ShortLifecycle": NONE,
    "AWS.CloudTrail.SnapshotMadePublic": ("aws_snapshot_or_ami_shared",),
    "AWS.CloudTrail.Stopped": ("aws_cloudtrail_stopped_or_deleted",),
    "AWS.CloudTrail.UnauthorizedAPICall": ("aws_unauthorized_api_call",),
    "AWS.CloudTrail.UserAccessKeyAuth": NONE,
    "AWS.CloudTrail.VPCE.AccessDenied": NONE,
    "AWS.CloudTrail.VPCE.ExternalPrincipal": NONE,
    "AWS.CloudTrail.VPCE.S3ExternalIP": NONE,
    "AWS.CloudTrail.VPCE.SensitiveAPICalls": NONE,
    "AWS.ConfigService.Created": ("aws_config_change",),
    "AWS.ConfigService.DisabledDeleted": ("aws_config_recorder_stopped",),
    "AWS.Console.GetSigninToken.Abuse": NONE,
    "AWS.Console.LoginWithoutMFA": ("aws_console_login_without_mfa",),
    "AWS.Console.LoginWithoutSAML": NONE,
    "AWS.Console.RootLogin": ("aws_console_root_login",),
    "AWS.Console.RootLoginFailed": ("aws_console_login_failed",),
    "AWS.Console.Sign-In": ("aws_console_login_success",),
    "AWS.EC2.DownloadInstanceUserData": ("aws_ec2_user_data_downloaded",),
    "AWS.EC2.EBS.Encryption.Disabled": NONE,
    "AWS.EC2.GatewayModified": ("aws_network_gateway_change",),
    "AWS.EC2.LaunchUnusualEC2Instances": NONE,
    "AWS.EC2.ManualSecurityGroupChange": ("aws_security_group_change",),
    "AWS.EC2.ManyPasswordReadAttempts": ("aws_ec2_password_data_retrieved",),
    "AWS.EC2.Monitoring": AWS_NET,
    "AWS.EC2.MultiInstanceConnect": ("aws_ec2_instance_connect_key_pushed",),
    "AWS.EC2.NetworkACLModified": ("aws_nacl_change",),
    "AWS.EC2.RouteTableModified": ("aws_route_table_change",),
    "AWS.EC2.SecurityGroupModified": ("aws_security_group_change",),
    "AWS.EC2.Startup.Script.Change": ("aws_ec2_user_data_modified",),
    "AWS.EC2.StopInstances": NONE,
    "AWS.EC2.Traffic.Mirroring": ("aws_ec2_traffic_mirroring",),
    "AWS.EC2.VPCModified": ("aws_vpc_change",),
    "AWS.EC2.Vulnerable.XZ.Image.Launched": NONE,
    "AWS.ECR.CRUD": NONE,
    "AWS.ECR.EVENTS": NONE,
    "AWS.IAM.AccessKeyCompromised": NONE,
    "AWS.IAM.AttachAdminRolePolicy": ("aws_iam_admin_policy_attached",),
    "AWS.IAM.AttachAdminUserPolicy": ("aws_iam_admin_policy_attached",),
    "AWS.IAM.Backdoor.User.Keys": ("aws_iam_access_key_created_for_other_user",),
    "AWS.IAM.BackdoorRole": ("aws_iam_role_trust_policy_updated",),
    "AWS.IAM.CreateRole": NONE,
    "AWS.IAM.CreateUser": ("aws_iam_user_created",),
    "AWS.IAM.CredentialsUpdated": ("aws_iam_login_profile_changed", "aws_iam_access_key_created"),
    "AWS.IAM.Group.Read.Only.Events": ("aws_discovery_call",),
    "AWS.IAM.PolicyModified": ("aws_iam_policy_change",),
    "AWS.IAMUser.ReconAccessDenied": ("aws_unauthorized_api_call",),
    "AWS.IPSet.Modified": ("aws_guardduty_tampering",),
    "AWS.KMS.CustomerManagedKeyLoss": ("aws_kms_key_disabled_or_deletion_scheduled",),
    "AWS.LAMBDA.CRUD": ("aws_lambda_code_or_layer_changed",),
    "AWS.Lambda.UpdateFunctionCode": ("aws_lambda_code_or_layer_changed",),
    "AWS.Lambda.UpdateFunctionConfiguration": ("aws_lambda_code_or_layer_changed",),
    "AWS.Macie.Evasion": ("aws_security_service_disabled",),
    "AWS.Modify.Cloud.Compute.Infrastructure": NONE,
    "AWS.Potential.Backdoor.Lambda": ("aws_lambda_code_or_layer_changed",),
    "AWS.RDS.ActivityStreamStopped": NONE,
    "AWS.RDS.AutomatedBackupDeleted": ("aws_backup_or_snapshot_deleted",),
    "AWS.RDS.ClusterFailover": NONE,
    "AWS.RDS.DeletionProtectionDisabled": ("aws_rds_deletion_protection_disabled",),
    "AWS.RDS.IAMRoleAdded": NONE,
    "AWS.RDS.InstanceDeletion": ("aws_rds_deletion_protection_disabled",),
    "AWS.RDS.InstanceMadePublic": NONE,
    "AWS.RDS.InstanceRebooted": NONE,
    "AWS.RDS.LogFileDownloaded": NONE,
    "AWS.RDS.ManualSnapshotCreated": NONE,
    "AWS.RDS.MasterPasswordUpdated": NONE,
    "AWS.RDS.PublicRestore": NONE,
    "AWS.RDS.SecurityGroupIngressAuthorized": NONE,
    "AWS.RDS.SnapshotCopiedCrossRegion": NONE,
    "AWS.RDS.SnapshotDeleted": ("aws_backup_or_snapshot_deleted",),
    "AWS.RDS.SnapshotEnumeration": NONE,
    "AWS.RDS.SnapshotExport": NONE,
    "AWS.RDS.SnapshotShared": ("aws_snapshot_or_ami_shared",),
    "AWS.Root.Activity": ("aws_root_account_usage",),
    "AWS.S3.BucketDeleted": ("aws_s3_object_deleted",),
    "AWS.S3.BucketPolicyModified": ("aws_s3_bucket_policy_change",),
    "AWS.S3.CopyObject.CrossAccount.Encryption.KMS": NONE,
    "AWS.S3.CopyObjectToExternalAccountBucket": NONE,
    "AWS.S3.CopyObjectWithClientSideEncryption": ("aws_s3_object_encrypted_with_customer_key",),
    "AWS.S3.DeleteBucketEncryption": ("aws_s3_bucket_logging_or_encryption_removed",),
    "AWS.S3.DeleteBucketReplication": ("aws_s3_bucket_policy_change",),
    "AWS.S3.DeleteObject": ("aws_s3_object_deleted",),
    "AWS.S3.DeleteObjects": ("aws_s3_object_deleted",),
    "AWS.S3.DeletePublicAccessBlock": ("aws_s3_public_access_block_removed",),
    "AWS.S3.DisableBucketLogging": ("aws_s3_bucket_logging_or_encryption_removed",),
    "AWS.S3.DisableMfaDelete": ("aws_s3_versioning_suspended",),
    "AWS.S3.RansomwareNoteUpload": ("aws_s3_ransom_note_uploaded",),
    "AWS.S3.SecurityControlDisabling": (
        "aws_s3_public_access_block_removed",
        "aws_s3_bucket_logging_or_encryption_removed",
        "aws_s3_versioning_suspended",
    ),
    "AWS.S3.SuspendVersioning": ("aws_s3_versioning_suspended",),
    "AWS.SSM.DecryptSSMParams": ("aws_ssm_securestring_decrypted",),
    "AWS.SSM.DistributedCommand": ("aws_ssm_remote_command",),
    "AWS.STS.GetCallerIdentity.TruffleHog": ("aws_offensive_tool_user_agent",),
    "AWS.STS.GetSessionToken.Misuse": NONE,
    "AWS.SecretsManager.BatchRetrieveSecrets": ("aws_secretsmanager_secret_retrieved",),
    "AWS.SecretsManager.BatchRetrieveSecretsCatchAll": ("aws_secretsmanager_secret_retrieved",),
    "AWS.SecretsManager.RetrieveSecrets": ("aws_secretsmanager_secret_retrieved",),
    "AWS.SecretsManager.RetrieveSecretsMultiRegion": ("aws_secretsmanager_secret_retrieved",),
    "AWS.SecurityHub.Finding.Evasion": ("aws_security_service_disabled",),
    "AWS.Software.Discovery": ("aws_discovery_call",),
    "AWS.Suspicious.SAML.Activity": NONE,
    "AWS.Unsuccessful.MFA.attempt": NONE,
    "AWS.UnusedRegion": NONE,
    "AWS.User.Login.Profile.Modified": ("aws_iam_login_profile_changed",),
    "AWS.VPCFlow.LogsDeleted": ("aws_vpc_flow_logs_deleted",),
    "AWS.WAF.Disassociation": NONE,
    "Retrieve.SSO.access.token": NONE,
    "Role.Assumed.by.AWS.Service": NONE,
    "Role.Assumed.by.User": NONE,
    "Sign-in.with.AWS.CLI.prompt": NONE,
    "Standard.BruteForceByIP": ("aws_console_login_failed",),
    "Standard.BruteForceByUser": ("aws_console_login_failed",),
    "Standard.ImpossibleTravel.Login": NONE,
    "Standard.NewAWSAccountCreated": ("aws_organizations_change",),
    "Standard.NewUserAccountCreated": ("aws_iam_user_created",),
    "Standard.SignInFromRogueState": NONE,
    # Kubernetes
    "Amazon.EKS.AnonymousAPIAccess": ("k8s_anonymous_request",),
    "Amazon.EKS.Audit.Multiple403": ("k8s_request_forbidden",),
    "Amazon.EKS.Audit.SystemNamespaceFromPublicIP": NONE,
    "GCP.GKE.Kubernetes.Cron.Job.Created.Or.Modified": ("k8s_cronjob_created",),
    "GCP.K8S.Pod.Create.Or.Modify.Host.Path.Volume.Mount": ("k8s_hostpath_volume",),
    "GCP.K8S.Privileged.Pod.Created": ("k8s_privileged_pod",),
    "GCP.K8S.Service.Type.NodePort.Deployed": ("k8s_nodeport_service",),
    "GCP.K8s.ExecIntoPod": ("k8s_pod_exec",),
    "GCP.K8s.IOC.Activity": NONE,
    "GCP.K8s.New.Daemonset.Deployed": ("k8s_daemonset_created",),
    "GCP.K8s.Pod.Attached.To.Node.Host.Network": ("k8s_host_network_pod",),
    "GCP.K8s.Pod.Using.Host.PID.Namespace": ("k8s_host_pid_or_ipc_pod",),
    "Kubernetes.API.AnonymousAccess": ("k8s_anonymous_request",),
    "Kubernetes.API.IOC.Activity": NONE,
    "Kubernetes.API.Multiple403.PublicIP": ("k8s_request_forbidden",),
    "Kubernetes.AdmissionController.Created": ("k8s_admission_webhook_changed",),
    "Kubernetes.BulkSecretAccess": ("k8s_secret_read",),
    "Kubernetes.ClientCertificate.Created": ("k8s_client_certificate_requested",),
    "Kubernetes.ClusterRoleBinding.Privileged": ("k8s_cluster_admin_binding", "k8s_wildcard_or_admin_binding"),
    "Kubernetes.CronJob.CreatedOrModified": ("k8s_cronjob_created",),
    "Kubernetes.DaemonSet.Created": ("k8s_daemonset_created",),
    "Kubernetes.Ingress.NoTLS": ("k8s_ingress_without_tls",),
    "Kubernetes.Kubectl.CP.Operation": ("k8s_service_account_token_read_via_exec",),
    "Kubernetes.Pod.Dangerous.Capabilities": ("k8s_dangerous_capabilities",),
    "Kubernetes.Pod.Exec": ("k8s_pod_exec",),
    "Kubernetes.Pod.Host.IPC": ("k8s_host_ipc_pod",),
    "Kubernetes.Pod.Host.Network": ("k8s_host_network_pod",),
    "Kubernetes.Pod.Host.PID": ("k8s_host_pid_or_ipc_pod",),
    "Kubernetes.Pod.HostPath.Volume": ("k8s_hostpath_volume",),
    "Kubernetes.Pod.Privileged.Created": ("k8s_privileged_pod",),
    "Kubernetes.Pod.StealServiceAccountToken": ("k8s_service_account_token_read_via_exec",),
    "Kubernetes.Pod.SystemNamespace": ("k8s_workload_in_kube_system",),
    "Kubernetes.Role.NodeProxyPermissions": ("k8s_role_node_proxy",),
    "Kubernetes.Role.PodExec": ("k8s_role_pod_exec",),
    "Kubernetes.Role.Wildcard": ("k8s_wildcard_role",),
    "Kubernetes.Role.WritePermissions": NONE,
    "Kubernetes.Secret.AccessDenied": ("k8s_secret_access_denied",),
    "Kubernetes.Secrets.DumpAllNamespaces": ("k8s_secrets_listed_cluster_wide",),
    "Kubernetes.Service.NodePort.Deployed": ("k8s_nodeport_service",),
    "Kubernetes.ServiceAccount.TokenCreated": ("k8s_serviceaccount_token_created",),
    "Kubernetes.System.Principal.PublicIP": ("k8s_system_principal_from_public_ip",),
    "Kubernetes.SystemRole.Modified": ("k8s_system_role_modified",),
}

# Falco rule name -> project rules. Falco's k8s activity rules ("K8s ... Created/Deleted") just log changes.
FALCO_INTENTS: dict[str, tuple[str, ...]] = {
    "Create Privileged Pod": ("k8s_privileged_pod",),
    "Create HostNetwork Pod": ("k8s_host_network_pod",),
    "Create Sensitive Mount Pod": ("k8s_sensitive_hostpath_mount",),
    "Create NodePort Service": ("k8s_nodeport_service",),
    "Create/Modify Configmap With Private Credentials": ("k8s_configmap_with_credentials",),
    "Anonymous Request Allowed": ("k8s_anonymous_request",),
    "Attach/Exec Pod": ("k8s_pod_exec",),
    "Pod Created in Kube Namespace": ("k8s_workload_in_kube_system",),
    "Service Account Created in Kube Namespace": ("k8s_workload_in_kube_system",),
    "System ClusterRole Modified/Deleted": ("k8s_system_role_modified",),
    "Attach to cluster-admin Role": ("k8s_cluster_admin_binding",),
    "ClusterRole With Wildcard Created": ("k8s_wildcard_role",),
    "ClusterRole With Write Privileges Created": NONE,
    "ClusterRole With Pod Exec Created": ("k8s_role_pod_exec",),
    "Create Disallowed Pod": NONE,
    "Disallowed K8s User": NONE,
    "Create Disallowed Namespace": NONE,
}
FALCO_ACTIVITY_PREFIX = "K8s "
# Falco tests that expect no detection name no rule; say which rule each one is the negative case of.
FALCO_NEGATIVES: dict[str, str] = {
    "compat_engine_v4_create_unprivileged_pod": "Create Privileged Pod",
    "create_unprivileged_pod": "Create Privileged Pod",
    "create_unsensitive_mount_pod": "Create Sensitive Mount Pod",
    "create_nohostnetwork_pod": "Create HostNetwork Pod",
    "create_nonodeport_service": "Create NodePort Service",
    "create_configmap_no_private_creds": "Create/Modify Configmap With Private Credentials",
}


@dataclass
class Intent:
    source: str  # "panther" or "falco"
    label: str  # their rule id
    rules: tuple[str, ...]
    malicious: int = 0
    benign: int = 0
    alerted: dict[str, int] = field(default_factory=dict)  # rule set -> malicious records alerted
    flagged: dict[str, int] = field(default_factory=dict)  # rule set -> benign records flagged
    missed: dict[str, list[str]] = field(default_factory=dict)  # rule set -> missed test names
    false_positives: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Labelled:
    source: str
    label: str
    test: str
    malicious: bool
    events: tuple[ParsedEvent, ...]


def _parse(parser: Parser, raw: bytes, offset: int) -> tuple[ParsedEvent, ...]:
    result = parser.parse(SourceRecord(f"siem.raw.{parser.name}", 0, offset, raw))
    return tuple(result.events)


def panther_records(data: Path, parsers: dict[str, Parser]) -> Iterator[Labelled]:
    for filename, parser_name in (("cloudtrail_tests.jsonl", "cloudtrail"), ("k8s_tests.jsonl", "k8s_audit")):
        with (data / "panther" / filename).open(encoding="utf-8") as handle:
            for offset, line in enumerate(handle):
                record: dict[str, Any] = json.loads(line)
                raw = json.dumps(record["log"]).encode()
                yield Labelled(
                    "panther",
                    record["rule_id"],
                    record.get("test_name", str(offset)),
                    bool(record["expected_result"]),
                    _parse(parsers[parser_name], raw, offset),
                )


def falco_records(data: Path, parsers: dict[str, Parser]) -> Iterator[Labelled]:
    base = data / "falco_k8s_audit"
    with (base / "falco_k8s_audit_tests.jsonl").open(encoding="utf-8") as handle:
        tests = [json.loads(line) for line in handle]
    for offset, test in enumerate(tests):
        name = str(test["test"])
        files = [Path(f).name for f in test.get("rules_file") or []]
        if test["detect"]:
            labels = [next(iter(count)) for count in test.get("detect_counts") or []]
        elif any(f.startswith(("trust_", "allow_")) for f in files):
            continue  # negative only because of a site allow-list (trusted image/user): not a rule property
        elif name in FALCO_NEGATIVES:
            labels = [FALCO_NEGATIVES[name]]
        else:
            continue  # malformed-input and activity-rule negatives name no detection
        trace = base / "trace_files" / str(test["trace_file"])
        events = _trace_events(trace.read_bytes(), parsers["k8s_audit"], offset)
        for label in labels:
            if label.startswith(FALCO_ACTIVITY_PREFIX) or label not in FALCO_INTENTS:
                continue
            yield Labelled("falco", label, name, bool(test["detect"]), events)


def _trace_events(raw: bytes, parser: Parser, offset: int) -> tuple[ParsedEvent, ...]:
    events = _parse(parser, raw, offset)
    if events:
        return events
    lines = [line for line in raw.splitlines() if line.strip()]
    return tuple(e for i, line in enumerate(lines) for e in _parse(parser, line, offset * 1000 + i))


def _names(rule_set: RuleSet, events: Iterable[ParsedEvent]) -> tuple[set[str], bool]:
    """Names of the project rules that fired, and whether any community rule fired."""
    names: set[str] = set()
    community = False
    for event in events:
        for match in rule_set.match(event):
            if match.rule.ruleset == "siem":
                names.add(str(getattr(match.rule.rule, "name", None) or match.rule.title))
            else:
                community = True
    return names, community


def evaluate(data: Path, rule_sets: dict[str, RuleSet]) -> list[Intent]:
    parsers = build_parsers(ParserSettings())
    intents: dict[tuple[str, str], Intent] = {}
    for record in [*panther_records(data, parsers), *falco_records(data, parsers)]:
        table = PANTHER_INTENTS if record.source == "panther" else FALCO_INTENTS
        key = (record.source, record.label)
        intent = intents.setdefault(key, Intent(record.source, record.label, table.get(record.label, NONE)))
        if record.malicious:
            intent.malicious += 1
        else:
            intent.benign += 1
        for set_name, rule_set in rule_sets.items():
            fired, community = _names(rule_set, record.events)
            hit = bool(fired.intersection(intent.rules)) or (community and set_name != "project")
            if record.malicious:
                intent.alerted[set_name] = intent.alerted.get(set_name, 0) + hit
                if not hit:
                    intent.missed.setdefault(set_name, []).append(record.test)
            else:
                intent.flagged[set_name] = intent.flagged.get(set_name, 0) + hit
                if hit:
                    intent.false_positives.setdefault(set_name, []).append(record.test)
    return sorted(intents.values(), key=lambda i: (i.source, not i.rules, i.label))


def _ratio(numerator: int, denominator: int) -> str:
    return f"{numerator}/{denominator}" if denominator else "-"


def render(intents: list[Intent], set_names: list[str], elapsed_s: float) -> str:
    lines = [
        "# Detection quality on labelled third-party records",
        "",
        "Generated by `python bench/detection_quality.py`; do not edit by hand. Data: `../shared/data/panther`",
        "(Panther rule tests, Apache-2.0) and `../shared/data/falco_k8s_audit` (Falco k8s audit tests, Apache-2.0).",
        "Labels say whether *their* rule fires; each of their rules is mapped by hand to the project rule(s) with",
        "the same intent (`bench/detection_quality.py`). *alerted* = malicious records on which one of the intent's",
        "rules fired; *FP* = benign records on which one fired. Falco negatives that exist only because of a site",
        "allow-list (trusted images, allowed users) are left out. In the `+sigmahq` columns a record also counts",
        "when any SigmaHQ rule fires on it (SigmaHQ rules are not mapped to intents).",
        "",
    ]
    mapped = [i for i in intents if i.rules]
    for set_name in set_names:
        mal = sum(i.malicious for i in mapped)
        ben = sum(i.benign for i in mapped)
        lines.append(
            f"- **{set_name}**, mapped intents: malicious alerted "
            f"{_ratio(sum(i.alerted.get(set_name, 0) for i in mapped), mal)}, benign flagged "
            f"{_ratio(sum(i.flagged.get(set_name, 0) for i in mapped), ben)}"
        )
    unmapped = [i for i in intents if not i.rules]
    lines.append(
        f"- intents with no project rule: {len(unmapped)} of {len(intents)} "
        f"({sum(i.malicious for i in unmapped)} malicious records)"
    )
    lines += [
        "",
        "| source | their rule | our rule(s) | "
        + " | ".join(f"alerted ({s}) | FP ({s})" for s in set_names)
        + " | missed (project) |",
        "|---|---|---|" + "---|---|" * len(set_names) + "---|",
    ]
    for i in intents:
        cells = []
        for s in set_names:
            cells += [_ratio(i.alerted.get(s, 0), i.malicious), _ratio(i.flagged.get(s, 0), i.benign)]
        missed = "; ".join(i.missed.get(set_names[0], [])) if i.rules else "no equivalent"
        ours = ", ".join(f"`{r}`" for r in i.rules) or "-"
        lines.append(f"| {i.source} | {i.label} | {ours} | " + " | ".join(cells) + f" | {missed} |")
    lines += ["", "## Gaps", "", "Intents with no project rule:", ""]
    lines += [f"- {i.source}: {i.label} ({i.malicious} malicious records)" for i in unmapped]
    lines += ["", "Mapped intents with missed malicious records or false positives (project rules):", ""]
    for i in mapped:
        misses = i.missed.get(set_names[0], [])
        fps = i.false_positives.get(set_names[0], [])
        if misses or fps:
            lines.append(f"- {i.source}: {i.label}: missed {misses or '-'}; false positives {fps or '-'}")
    lines += ["", f"Evaluation time: {elapsed_s:.1f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "detection-quality.md")
    args = parser.parse_args(argv)
    started = time.monotonic()
    project = ROOT / "sigma_rules"
    rule_sets = {
        "project": RuleSet.from_loaded(load_rules([project])),
        "+sigmahq": RuleSet.from_loaded(load_rules([project, args.data / "sigmahq" / "rules"])),
    }
    intents = evaluate(args.data, rule_sets)
    # The elapsed time varies between runs; keep it out of the committed document so it is reproducible.
    text = render(intents, list(rule_sets), time.monotonic() - started)
    print(text)
    args.out.write_text(text.rsplit("Evaluation time", 1)[0].rstrip() + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
