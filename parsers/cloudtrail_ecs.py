"""One CloudTrail record (already redacted, canonical camelCase keys) -> ECS document.

Field choices follow Elastic's AWS CloudTrail integration (the oracle in tests/unit/test_parsers_oracle.py):
renamed source fields go to ECS, the rest under ``aws.cloudtrail.*`` in snake_case, and the free-form
request/response payloads both as a ``flattened`` object and as a string. Deliberate differences are declared
in that test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from parsers.cloudtrail_categories import CATEGORIES
from parsers.common import ECS_VERSION, add_unique, as_ip, put
from parsers.redaction import redact_credentials as _redact
from parsers.timestamps import parse_iso_or_none

DATASET = "aws.cloudtrail"

# source key -> aws.cloudtrail key, copied as-is when present.
_SCALARS = (
    ("eventVersion", "event_version"),
    ("eventCategory", "event_category"),
    ("errorCode", "error_code"),
    ("errorMessage", "error_message"),
    ("requestID", "request_id"),
    ("eventType", "event_type"),
    ("apiVersion", "api_version"),
    ("managementEvent", "management_event"),
    ("readOnly", "read_only"),
    ("recipientAccountId", "recipient_account_id"),
    ("sharedEventID", "shared_event_id"),
    ("sharedEventId", "shared_event_id"),
    ("vpcEndpointId", "vpc_endpoint_id"),
    ("resources", "resources"),
    ("insightDetails", "insight_details"),
)
# Free-form payloads: kept as an object (for queries) and as a string (for full-text search), like Elastic.
_SCALAR_MAP = dict(_SCALARS)
_PAYLOADS = (
    ("requestParameters", "request_parameters"),
    ("responseElements", "response_elements"),
    ("additionalEventData", "additional_eventdata"),
    ("serviceEventDetails", "service_event_details"),
)
_ISSUER = (("type", "type"), ("principalId", "principal_id"), ("arn", "arn"), ("accountId", "account_id"))
_dumps = orjson.dumps
# event name -> (event.category, event.type) as lists, copied per document (documents must not share lists).
_CATEGORY_LISTS = {name: (list(cat), list(types)) for name, (cat, types) in CATEGORIES.items()}
_SIGN_IN_PAYLOADS = ("responseElements", "serviceEventDetails")


# The scalar fields a record holds, in the record's key order (the document keeps that order), per key layout:
# records of the same kind share a layout, so this replaces a membership test per key with one dict hit.
_PLANS: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
_PLANS_MAX = 4096


def _scalar_plan(rec: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    layout = tuple(rec)
    plan = _PLANS.get(layout)
    if plan is None:
        scalars = _SCALAR_MAP
        plan = tuple((src, scalars[src]) for src in layout if src in scalars)
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[layout] = plan
    return plan


def _split_resources(ct: dict[str, Any]) -> None:
    """``resources`` is a list of objects (ARN, accountId, type); a few producers send strings instead. Mixed
    shapes cannot share one mapping, so anything that is not an object moves to ``resources_text``."""
    resources = ct.get("resources")
    if resources is None or (type(resources) is list and all(type(item) is dict for item in resources)):
        return
    items = resources if type(resources) is list else [resources]
    objects = [item for item in items if type(item) is dict]
    texts = [item if isinstance(item, str) else orjson.dumps(item).decode() for item in items if type(item) is not dict]
    if objects:
        ct["resources"] = objects
    else:
        del ct["resources"]
    if texts:
        ct["resources_text"] = texts


def _kept(value: Any) -> bool:
    """``put``'s rule: Elastic's pipelines drop nulls, empty strings and empty lists/objects."""
    return value is not None and value != "" and value != [] and value != {}


def _session_context(sc: dict[str, Any], ct_ui: dict[str, Any], user: dict[str, Any]) -> None:
    out: dict[str, Any] = {}
    attrs = sc.get("attributes")
    if isinstance(attrs, dict):
        value = attrs.get("mfaAuthenticated")
        if value or _kept(value):
            out["mfa_authenticated"] = value
        created = parse_iso_or_none(attrs.get("creationDate"))
        if created:
            out["creation_date"] = created
    value = sc.get("ec2RoleDelivery")
    if value or _kept(value):
        out["ec2_role_delivery"] = value
    issuer = sc.get("sessionIssuer")
    if isinstance(issuer, dict):
        iss: dict[str, Any] = {}
        for src, dst in _ISSUER:
            value = issuer.get(src)
            if value or _kept(value):
                iss[dst] = value
        if iss:
            out["session_issuer"] = iss
        # For assumed roles the role name is the most useful "user name" (Elastic does the same).
        value = issuer.get("userName")
        if value or _kept(value):
            user["name"] = value
    if out:
        ct_ui["session_context"] = out


def _outcome_from_payload(rec: dict[str, Any], action: str) -> str:
    # Sign-in events report their result in the payload instead of an error code.
    for key in _SIGN_IN_PAYLOADS:
        payload = rec.get(key)
        if isinstance(payload, dict):
            result = payload.get(action)
            if result in ("Success", "Failure"):
                return str(result).lower()
    return "success"


def _tls(details: dict[str, Any], doc: dict[str, Any]) -> None:
    tls: dict[str, Any] = {}
    version = details.get("tlsVersion")
    if isinstance(version, str) and "v" in version:
        protocol, _, number = version.partition("v")
        tls["version_protocol"] = protocol.lower()
        tls["version"] = number
    cipher = details.get("cipherSuite")
    if cipher or _kept(cipher):
        tls["cipher"] = cipher
    host = details.get("clientProvidedHostHeader")
    if host:
        tls["client"] = {"server_name": host}
    if tls:
        doc["tls"] = tls


def _targets(params: Any, response: Any, user: dict[str, Any], doc: dict[str, Any], related: list[str]) -> None:
    if isinstance(params, dict):
        target = params.get("userName")
        if isinstance(target, str) and target:
            user["target"] = {"name": target}
            add_unique(related, target)
        new_name = params.get("newUserName")
        if isinstance(new_name, str) and new_name:
            user["changes"] = {"name": new_name}
            add_unique(related, new_name)
        group = params.get("groupName")
        if isinstance(group, str) and group:
            doc["group"] = {"name": group}
    if isinstance(response, dict):
        group_obj, user_obj = response.get("group"), response.get("user")
        if isinstance(group_obj, dict) and group_obj.get("groupId"):
            doc.setdefault("group", {})["id"] = group_obj["groupId"]
        if isinstance(user_obj, dict) and user_obj.get("userId"):
            user.setdefault("target", {})["id"] = user_obj["userId"]


def _console_login(extra: Any, ct: dict[str, Any]) -> None:
    if not isinstance(extra, dict):
        return
    out: dict[str, Any] = {}
    if "MobileVersion" in extra:
        out["mobile_version"] = extra["MobileVersion"] != "No"
    put(out, "login_to", extra.get("LoginTo"))
    if "MFAUsed" in extra:
        out["mfa_used"] = extra["MFAUsed"] != "No"
    if out:
        ct["console_login"] = {"additional_eventdata": out}


def _payload_text(value: Any, redact: bool) -> str:
    if isinstance(value, str):
        return value
    if redact and value:
        _redact(value)
    return _dumps(value).decode()


def _payloads(get: Callable[[str], Any], redact: bool) -> tuple[Any, Any, Any, Any, list[tuple[str, str]]]:
    """The four free-form payloads and their JSON text (request/response redacted first when ``redact``)."""
    texts: list[tuple[str, str]] = []
    params = get("requestParameters")
    if params is not None and params != "":
        texts.append(("request_parameters", _payload_text(params, redact)))
    response = get("responseElements")
    if response is not None and response != "":
        texts.append(("response_elements", _payload_text(response, redact)))
    extra = get("additionalEventData")
    if extra is not None and extra != "":
        texts.append(("additional_eventdata", _payload_text(extra, False)))
    details = get("serviceEventDetails")
    if details is not None and details != "":
        texts.append(("service_event_details", _payload_text(details, False)))
    return params, response, extra, details, texts


def _event(get: Callable[[str], Any], rec: dict[str, Any], action: Any, ct: dict[str, Any]) -> dict[str, Any]:
    event: dict[str, Any] = {"kind": "event", "module": "aws", "dataset": DATASET}
    if action:
        event["action"] = action
    provider = get("eventSource")
    if provider:
        event["provider"] = provider
    event_id = get("eventID")
    if event_id:
        event["id"] = event_id
    if get("errorCode") or get("errorMessage"):
        event["outcome"] = "failure"
    elif isinstance(action, str):
        event["outcome"] = _outcome_from_payload(rec, action)
    else:
        event["outcome"] = "success"
    mapped = _CATEGORY_LISTS.get(action) if isinstance(action, str) else None
    if mapped is not None:
        event["category"] = mapped[0].copy()
        event["type"] = mapped[1].copy()
    else:
        event["type"] = ["info"]
    if action == "ConsoleLogin":
        _console_login(get("additionalEventData"), ct)
    return event


def _identity(
    ui: dict[str, Any], ct: dict[str, Any], cloud: dict[str, Any], user: dict[str, Any], related_user: list[str]
) -> None:
    ui_get = ui.get
    ct_ui: dict[str, Any] = {}
    value = ui_get("type")
    if value:
        ct_ui["type"] = value
    value = ui_get("arn")
    if value:
        ct_ui["arn"] = value
    value = ui_get("accessKeyId")
    if value:
        ct_ui["access_key_id"] = value
    value = ui_get("invokedBy")
    if value:
        ct_ui["invoked_by"] = value
    name = ui_get("userName")
    if isinstance(name, str) and name:
        related_user.append(name)
        user["name"] = name
    principal = ui_get("principalId")
    if principal:
        user["id"] = principal
    account = ui_get("accountId")
    if account:
        cloud["account"] = {"id": account}
    sc = ui_get("sessionContext")
    if isinstance(sc, dict):
        _session_context(sc, ct_ui, user)
    if ct_ui:
        ct["user_identity"] = ct_ui


def _source(address: str, doc: dict[str, Any], related: dict[str, Any]) -> None:
    ip = as_ip(address)
    if ip is not None:
        doc["source"] = {"address": address, "ip": ip}
        related["ip"] = [ip]
    elif "." in address and " " not in address:
        doc["source"] = {"address": address, "domain": address}  # a service principal such as ec2.amazonaws.com
    else:
        doc["source"] = {"address": address}


def _network(get: Callable[[str], Any], doc: dict[str, Any], user: dict[str, Any], related_user: list[str]) -> None:
    """source, user_agent, tls, then the user and related objects collected so far."""
    related: dict[str, Any] = {}
    address = get("sourceIPAddress")
    if isinstance(address, str) and address:
        _source(address, doc, related)
    agent = get("userAgent")
    if agent:
        doc["user_agent"] = {"original": agent}
    tls = get("tlsDetails")
    if isinstance(tls, dict):
        _tls(tls, doc)
    if user:
        doc["user"] = user
    if related_user:
        doc["related"] = {"user": related_user, **related}
    elif related:
        doc["related"] = related


def build_ecs(rec: dict[str, Any], timestamp: str, redact_credentials: bool = False) -> dict[str, Any]:
    """The ECS document for one CloudTrail record (does not set ids, ingest time or event.original).

    With ``redact_credentials``, credential values in requestParameters and responseElements are redacted in
    place (so in ``rec`` too) before anything reads them, using their JSON text as the hint (see
    :func:`parsers.redaction.redacted_json`); otherwise ``rec`` must already be redacted.
    Built with literals and one pass over the record's top-level keys; rare shapes are helpers.
    """
    get = rec.get
    params, response, extra, details, texts = _payloads(get, redact_credentials)
    action = get("eventName")
    ct: dict[str, Any] = {}
    event = _event(get, rec, action, ct)
    cloud: dict[str, Any] = {"provider": "aws"}
    region = get("awsRegion")
    if region or _kept(region):
        cloud["region"] = region
    doc: dict[str, Any] = {
        "@timestamp": timestamp,
        "event": event,
        "cloud": cloud,
        "aws": {"cloudtrail": ct},
        "ecs": {"version": ECS_VERSION},
    }
    for src, dst in _scalar_plan(rec):
        value = get(src)
        if value is not None and value != "":
            ct[dst] = value
    _split_resources(ct)
    # Free-form payloads: the object under ``flattened`` and the JSON text (like Elastic).
    # Only objects go under ``flattened`` (a ``flattened`` field refuses a plain string: some services send
    # serviceEventDetails/requestParameters as a string); the text form below always holds the value.
    flattened: dict[str, Any] = {}
    if type(params) is dict:
        flattened["request_parameters"] = params
    if type(response) is dict:
        flattened["response_elements"] = response
    if type(extra) is dict:
        flattened["additional_eventdata"] = extra
    if type(details) is dict:
        flattened["service_event_details"] = details
    ct.update(texts)
    ct["flattened"] = flattened
    user: dict[str, Any] = {}
    related_user: list[str] = []
    ui = get("userIdentity")
    if isinstance(ui, dict):
        _identity(ui, ct, cloud, user, related_user)
    if "name" not in user and isinstance(extra, dict):
        extra_name = extra.get("UserName")
        if isinstance(extra_name, str):
            user["name"] = extra_name
            add_unique(related_user, extra_name)
    if isinstance(params, dict) or isinstance(response, dict):
        _targets(params, response, user, doc, related_user)
    _network(get, doc, user, related_user)
    return doc
