"""Composable index templates with explicit ECS mappings for events, alerts, incidents and the DLQ.

Why explicit: analysts filter on these fields in Kibana and the first document of a day must not decide a
field's type. Unknown strings map to ``keyword``; the free-form source subtrees (CloudTrail request parameters,
Kubernetes request/response objects) are ``flattened`` so arbitrary keys cannot explode the mapping, and their
leaves are keywords so a number in one record and a string in the next is not a mapping error.
"""

from __future__ import annotations

from typing import Any

from elasticsearch import Elasticsearch

from siem.config import ElasticsearchSettings

KEYWORD: dict[str, Any] = {"type": "keyword", "ignore_above": 1024}
TEXT_AND_KEYWORD: dict[str, Any] = {"type": "keyword", "ignore_above": 8191, "fields": {"text": {"type": "text"}}}
DATE: dict[str, Any] = {"type": "date"}
LONG: dict[str, Any] = {"type": "long"}
FLOAT: dict[str, Any] = {"type": "float"}
# A malformed address must not send the whole event to the DLQ: the value stays in _source, unindexed.
IP: dict[str, Any] = {"type": "ip", "ignore_malformed": True}
BOOL: dict[str, Any] = {"type": "boolean"}
# Searchable by exact value but not aggregated: these are long JSON strings.
LONG_KEYWORD: dict[str, Any] = {"type": "keyword", "ignore_above": 8191, "doc_values": False}
FLATTENED: dict[str, Any] = {"type": "flattened", "ignore_above": 8191}
TITLE: dict[str, Any] = {"type": "text", "fields": {"keyword": KEYWORD}}  # full text, and exact for sorting
STORED_ONLY: dict[str, Any] = {"type": "keyword", "index": False, "doc_values": False}


def _obj(**fields: dict[str, Any]) -> dict[str, Any]:
    return {"properties": fields}


def _kw(*names: str) -> dict[str, dict[str, Any]]:
    return {name: KEYWORD for name in names}


def _endpoint() -> dict[str, Any]:
    return _obj(ip=IP, address=KEYWORD, domain=KEYWORD, port=LONG, bytes=LONG)


ECS_PROPERTIES: dict[str, Any] = {
    "@timestamp": DATE,
    "message": {"type": "text"},
    "tags": KEYWORD,
    "labels": {"type": "object", "dynamic": True},
    "ecs": _obj(version=KEYWORD),
    "event": _obj(
        **_kw("kind", "category", "type", "action", "provider", "outcome", "id", "dataset", "module", "code"),
        reason=KEYWORD,
        severity=LONG,
        risk_score=FLOAT,
        ingested=DATE,
        created=DATE,
        start=DATE,
        end=DATE,
        duration=LONG,
        original=STORED_ONLY,
    ),
    "cloud": _obj(
        **_kw("provider", "region", "availability_zone"),
        account=_obj(**_kw("id", "name")),
        service=_obj(**_kw("name")),
        instance=_obj(**_kw("id")),
    ),
    "source": _endpoint(),
    "destination": _endpoint(),
    "client": _endpoint(),
    "user": _obj(
        **_kw("id", "name", "domain", "email", "full_name", "roles"),
        changes=_obj(**_kw("name")),
        target=_obj(**_kw("id", "name")),
        effective=_obj(**_kw("id", "name")),
        group=_obj(**_kw("id", "name")),
    ),
    "user_agent": _obj(original=TEXT_AND_KEYWORD, **_kw("name", "version")),
    "related": _obj(user=KEYWORD, ip=IP, hosts=KEYWORD, hash=KEYWORD),
    "orchestrator": _obj(
        **_kw("type", "namespace", "api_version", "organization"),
        cluster=_obj(**_kw("name", "url", "id")),
        resource=_obj(**_kw("name", "type", "id"), parent=_obj(**_kw("type"))),
    ),
    "http": _obj(
        version=KEYWORD,
        request=_obj(method=KEYWORD, referrer=KEYWORD, id=KEYWORD, body=_obj(bytes=LONG), bytes=LONG),
        response=_obj(status_code=LONG, body=_obj(bytes=LONG), bytes=LONG),
    ),
    "url": _obj(
        original=TEXT_AND_KEYWORD, full=TEXT_AND_KEYWORD, **_kw("path", "query", "domain", "scheme", "extension")
    ),
    "log": _obj(level=KEYWORD, logger=KEYWORD, file=_obj(path=KEYWORD)),
    "host": _obj(**_kw("name", "hostname", "id"), ip=IP),
    "process": _obj(name=KEYWORD, pid=LONG),
    "service": _obj(**_kw("name", "type", "version", "environment")),
    "error": _obj(message={"type": "text"}, **_kw("code", "type")),
    "network": _obj(**_kw("protocol", "transport", "direction"), forwarded_ip=IP),
    "tls": _obj(**_kw("version", "version_protocol", "cipher"), client=_obj(server_name=KEYWORD)),
    "group": _obj(**_kw("id", "name")),
    # Application logs' own fields (whatever each app logs) are one flattened object: apps disagree on types.
    "app": FLATTENED,
    "aws": _obj(
        cloudtrail=_obj(
            flattened=_obj(
                request_parameters=FLATTENED,
                response_elements=FLATTENED,
                additional_eventdata=FLATTENED,
                service_event_details=FLATTENED,
            ),
            request_parameters=LONG_KEYWORD,
            response_elements=LONG_KEYWORD,
            additional_eventdata=LONG_KEYWORD,
            service_event_details=LONG_KEYWORD,
        )
    ),
    "kubernetes": _obj(
        audit=_obj(
            requestObject=FLATTENED,
            responseObject=FLATTENED,
            annotations=FLATTENED,
        )
    ),
}

# Unknown leaves become keywords whatever their JSON type, so type drift between records never fails a write.
DYNAMIC_TEMPLATES: list[dict[str, Any]] = [
    {f"unknown_{kind}_as_keyword": {"match_mapping_type": kind, "mapping": KEYWORD}}
    for kind in ("string", "long", "double", "boolean")
]

RULE_PROPERTIES: dict[str, Any] = {
    "rule": _obj(
        **_kw("id", "name", "author", "reference", "version", "ruleset", "license", "category", "uuid"),
        description={"type": "text"},
    ),
    "threat": _obj(
        framework=KEYWORD,
        tactic=_obj(**_kw("id", "name", "reference")),
        technique=_obj(**_kw("id", "name", "reference"), subtechnique=_obj(**_kw("id", "name", "reference"))),
    ),
    "sigma": _obj(**_kw("level", "status", "falsepositives", "fields", "file")),
    "siem": _obj(
        source_event=_obj(**_kw("index", "id", "dataset")),
        # The source fields a rule matched on, under their source names (requestParameters.policyArn, ...): as
        # many keys as the rules name, so one flattened field. Each key as its own field cost a mapping update per
        # new key in every daily index (~25 ms of Elasticsearch CPU each, measured) and grows toward the field limit
        # with a large rule base. Still queryable by key: siem.matched_fields.requestParameters.policyArn: "...".
        matched_fields=FLATTENED,
        level=KEYWORD,
        title=TITLE,
        silent_source=KEYWORD,
        # end_offsets: "topic/partition@offset,..." where each watched partition stood when the silence was raised
        silence=_obj(topics=KEYWORD, minutes=FLOAT, since=DATE, end_offsets=LONG_KEYWORD),
        correlation=_obj(
            **_kw("type", "group_key", "rule_ids", "alert_ids", "event_ids"),
            group_by=FLATTENED,  # keyed by the rule's group-by field names
            aggregate=FLOAT,
            input_count=LONG,
            timespan_ms=LONG,
            entities=_obj(**_kw("field", "value")),
        ),
    ),
}

# Incident documents (correlation/incidents/model.py); explicit so triage filters never depend on which
# process created the index first.
INCIDENT_PROPERTIES: dict[str, Any] = {
    "@timestamp": DATE,
    **_kw(
        "id",
        "key",
        "status",
        "severity",
        "assignee",
        "tactics",
        "techniques",
        "alert_ids",
        "evidence_event_ids",
        "correlation_ids",
    ),
    "title": TITLE,
    "severity_score": LONG,
    "risk_score": FLOAT,
    "first_seen": DATE,
    "last_seen": DATE,
    "first_seen_ms": LONG,
    "last_seen_ms": LONG,
    "created": DATE,
    "updated": DATE,
    "alert_count": LONG,
    "alert_ids_truncated": BOOL,
    "evidence_event_count": LONG,
    "rules": _obj(**_kw("id", "name", "level", "kind"), alert_count=LONG),
    "entities": {"type": "object", "dynamic": True},
    "applied_offsets": {"type": "object", "enabled": False},  # replay bookkeeping, kept in _source only
    "inherited_correlation_ids": {"type": "keyword", "index": False, "doc_values": False},  # replay bookkeeping
    "notes": _obj(text={"type": "text"}, **_kw("author"), at=DATE),
    "history": _obj(**_kw("action", "actor", "from_status", "to_status", "reason"), at=DATE),
}

# Source-native fields that entity grouping and hunting rely on, typed explicitly.
SOURCE_PROPERTIES: dict[str, Any] = {
    "aws": _obj(
        cloudtrail=_obj(
            **_kw("event_type", "event_category", "error_code", "recipient_account_id", "request_id", "resources_text"),
            **_kw("api_version", "event_version", "shared_event_id", "vpc_endpoint_id"),
            # Booleans in CloudTrail, keywords here as they always were (the dynamic templates made them so).
            **_kw("management_event", "read_only"),
            error_message={"type": "keyword", "ignore_above": 8191},
            # CloudTrail's own key spellings (ARN, accountId; a few producers send arn)
            resources=_obj(**_kw("ARN", "arn", "accountId", "type")),
            console_login=_obj(additional_eventdata=_obj(**_kw("login_to", "mfa_used", "mobile_version"))),
            user_identity=_obj(
                **_kw("type", "arn", "access_key_id", "invoked_by"),
                session_context=_obj(
                    mfa_authenticated=KEYWORD,
                    creation_date=KEYWORD,
                    session_issuer=_obj(**_kw("type", "arn", "principal_id", "account_id")),
                ),
            ),
        )
    ),
    "kubernetes": _obj(
        audit=_obj(
            **_kw("auditID", "stage", "verb", "level", "requestURI", "kind", "apiVersion", "timestamp"),
            # user.extra: whatever the authenticator adds (keys like authentication.kubernetes.io/pod-name)
            user=_obj(**_kw("username", "uid", "groups"), extra=FLATTENED),
            impersonatedUser=_obj(**_kw("username", "groups")),
            objectRef=_obj(**_kw("resource", "subresource", "namespace", "name", "uid", "apiGroup", "apiVersion")),
            responseStatus=_obj(code=LONG, **_kw("status", "reason"), message=TEXT_AND_KEYWORD, metadata=FLATTENED),
            metadata=_obj(creationTimestamp=KEYWORD),
            # the cloud's envelope of a GKE (Cloud Logging) or AKS (Azure diagnostics) audit record
            gke_metadata=_obj(
                **_kw("cluster_name", "location", "log_name", "project_id", "receive_time", "resource_name")
            ),
            aks_metadata=_obj(**_kw("category", "operation_name", "resource_id")),
            sourceIPs=IP,
            userAgent=KEYWORD,
            # kept as sent (microsecond strings); @timestamp is the parsed time
            requestReceivedTimestamp=KEYWORD,
            stageTimestamp=KEYWORD,
        )
    ),
}


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


EVENT_PROPERTIES: dict[str, Any] = _deep_merge(ECS_PROPERTIES, SOURCE_PROPERTIES)

DLQ_PROPERTIES: dict[str, Any] = {
    "@timestamp": DATE,
    "dlq": _obj(
        **_kw("topic", "parser", "error_type", "stage", "index", "doc_id"),
        partition=LONG,
        offset=LONG,
        index_in_record=LONG,
        message={"type": "text"},
        original_base64=STORED_ONLY,
        original_size=LONG,
        original_truncated=BOOL,
        original_sha256=KEYWORD,
    ),
    "event": _obj(**_kw("kind", "dataset", "id")),
}


def _component(settings: ElasticsearchSettings, properties: dict[str, Any], fields_limit: int) -> dict[str, Any]:
    return {
        "settings": {
            "index": {
                "number_of_shards": settings.index_shards,
                "number_of_replicas": settings.index_replicas,
                "mapping": {"total_fields": {"limit": fields_limit}},
                "refresh_interval": settings.refresh_interval,
            }
        },
        "mappings": {
            "date_detection": False,
            "numeric_detection": False,
            "dynamic_templates": DYNAMIC_TEMPLATES,
            "properties": properties,
        },
    }


def index_templates(settings: ElasticsearchSettings) -> dict[str, dict[str, Any]]:
    """Index template bodies by template name."""
    prefix = settings.index_prefix
    ecs_base = f"{prefix}-ecs-base"
    rule_fields = f"{prefix}-rule-fields"
    return {
        f"{prefix}-events": {
            "index_patterns": [f"{prefix}-events-*"],
            "composed_of": [ecs_base],
            "priority": 200,
            "_meta": {"managed_by": "siem-pipeline"},
        },
        f"{prefix}-alerts": {
            "index_patterns": [f"{prefix}-alerts-*"],
            "composed_of": [ecs_base, rule_fields],
            "priority": 200,
            "_meta": {"managed_by": "siem-pipeline"},
        },
        f"{prefix}-incidents": {
            "index_patterns": [f"{prefix}-incidents*"],
            "composed_of": [ecs_base, rule_fields],
            "template": {"mappings": {"properties": INCIDENT_PROPERTIES}},
            "priority": 200,
            "_meta": {"managed_by": "siem-pipeline"},
        },
        f"{prefix}-incident-claims": {  # which incident took each alert (the incident store's replay check)
            "index_patterns": [f"{prefix}-incident-claims-*"],
            "template": {
                "settings": {"index": {"number_of_shards": 1, "number_of_replicas": settings.index_replicas}},
                "mappings": {
                    "dynamic": False,
                    "properties": {
                        "incident_id": {"type": "keyword"},
                        "claimed_ms": {"type": "long"},
                        "source": {"type": "keyword"},  # topic/partition of the message that attached the alert
                        "offset": {"type": "long"},
                    },
                },
            },
            "priority": 200,
            "_meta": {"managed_by": "siem-pipeline"},
        },
        f"{prefix}-dlq": {
            "index_patterns": [f"{prefix}-dlq*"],
            "template": _component(settings, DLQ_PROPERTIES, 200),
            "priority": 200,
            "_meta": {"managed_by": "siem-pipeline"},
        },
    }


def component_templates(settings: ElasticsearchSettings) -> dict[str, dict[str, Any]]:
    prefix = settings.index_prefix
    return {
        f"{prefix}-ecs-base": {"template": _component(settings, EVENT_PROPERTIES, 5000)},
        f"{prefix}-rule-fields": {"template": {"mappings": {"properties": RULE_PROPERTIES}}},
    }


def install_templates(client: Elasticsearch, settings: ElasticsearchSettings) -> list[str]:
    """Create or update every template (idempotent); returns the names installed."""
    installed: list[str] = []
    for name, body in component_templates(settings).items():
        client.cluster.put_component_template(name=name, template=body["template"])
        installed.append(name)
    for name, body in index_templates(settings).items():
        client.indices.put_index_template(name=name, **body)
        installed.append(name)
    return installed


def missing_templates(client: Elasticsearch, settings: ElasticsearchSettings) -> list[str]:
    """Names of our index templates that the cluster does not have (for `siem doctor`)."""
    missing = []
    for name in index_templates(settings):
        if not client.indices.exists_index_template(name=name):
            missing.append(name)
    return missing
