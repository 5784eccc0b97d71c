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
from parsers.common import DROPPED, ECS_VERSION, add_unique, as_ip, put
from parsers.redaction import redact_credentials as _redact
from parsers.timestamps import UTC_TEXT, parse_iso_or_none

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
_SCALAR_MAP = dict(_SCALARS)
# C-level membership test, used with filter(): the record's scalar keys in the record's key order (the document
# keeps that order) without a Python-level test per key.
_IS_SCALAR = _SCALAR_MAP.__contains__
_dumps = orjson.dumps
# event name -> (event.category, event.type) as lists, copied per document (documents must not share lists).
_CATEGORY_LISTS = {name: (list(cat), list(types)) for name, (cat, types) in CATEGORIES.items()}
# The only keys _targets reads in requestParameters / responseElements.
_TARGET_PARAMS = frozenset({"userName", "newUserName", "groupName"})
_TARGET_RESPONSE = frozenset({"group", "user"})
_ONLY_DICT = frozenset({dict})  # ``_ONLY_DICT.issuperset(map(type, items))``: every item is a dict, tested in C


def _scalars(rec: dict[str, Any], ct: dict[str, Any]) -> None:
    for src in filter(_IS_SCALAR, rec):
        value = rec[src]
        if value is not None and value != "":
            ct[_SCALAR_MAP[src]] = value


def _split_resources(ct: dict[str, Any]) -> None:
    """``resources`` is a list of objects (ARN, accountId, type); a few producers send strings instead. Mixed
    shapes cannot share one mapping, so anything that is not an object moves to ``resources_text``."""
    resources = ct.get("resources")
    if resources is None or (type(resources) is list and _ONLY_DICT.issuperset(map(type, resources))):
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


def _attributes(attrs: dict[str, Any], out: dict[str, Any]) -> None:
    value = attrs.get("mfaAuthenticated")
    if value or value not in DROPPED:
        out["mfa_authenticated"] = value
    created = attrs.get("creationDate")
    # The cache hit inline: session creation dates repeat (one per session), and this runs for most events.
    created = (type(created) is str and UTC_TEXT.get(created)) or parse_iso_or_none(created)
    if created:
        out["creation_date"] = created


def _issuer(issuer: dict[str, Any], out: dict[str, Any], user: dict[str, Any]) -> None:
    get = issuer.get
    iss: dict[str, Any] = {}
    # Unrolled (no loop over a key table): this runs for most events (every assumed role).
    value = get("type")
    if value or value not in DROPPED:
        iss["type"] = value
    value = get("principalId")
    if value or value not in DROPPED:
        iss["principal_id"] = value
    value = get("arn")
    if value or value not in DROPPED:
        iss["arn"] = value
    value = get("accountId")
    if value or value not in DROPPED:
        iss["account_id"] = value
    if iss:
        out["session_issuer"] = iss
    # For assumed roles the role name is the most useful "user name" (Elastic does the same).
    value = get("userName")
    if value or value not in DROPPED:
        user["name"] = value


def _session_context(sc: dict[str, Any], ct_ui: dict[str, Any], user: dict[str, Any]) -> None:
    out: dict[str, Any] = {}
    attrs = sc.get("attributes")
    if isinstance(attrs, dict):
        _attributes(attrs, out)
    value = sc.get("ec2RoleDelivery")
    if value or value not in DROPPED:
        out["ec2_role_delivery"] = value
    issuer = sc.get("sessionIssuer")
    if isinstance(issuer, dict):
        _issuer(issuer, out, user)
    if out:
        ct_ui["session_context"] = out


def _sign_in_outcome(response: Any, details: Any, action: str) -> str:
    # Sign-in events report their result in the payload instead of an error code.
    for payload in (response, details):
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
    if cipher or cipher not in DROPPED:
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


def _payload(ct: dict[str, Any], flattened: dict[str, Any], name: str, value: Any) -> None:
    """One free-form payload, kept as a string (for full-text search) and as an object (for queries), like Elastic.

    The string is the JSON text (a string payload as is; an empty one is dropped). Only objects go under
    ``flattened``: a ``flattened`` field refuses a plain string, and some services send serviceEventDetails or
    requestParameters as a string.
    """
    if isinstance(value, str):
        if value:
            ct[name] = value
        return
    ct[name] = _dumps(value).decode()
    if type(value) is dict:
        flattened[name] = value


def _payloads(ct: dict[str, Any], params: Any, response: Any, extra: Any, details: Any) -> None:
    """The payloads the record holds, straight into ``ct`` (no intermediate list): texts, then ``flattened``."""
    flattened: dict[str, Any] = {}
    if params is not None:
        _payload(ct, flattened, "request_parameters", params)
    if response is not None:
        _payload(ct, flattened, "response_elements", response)
    if extra is not None:
        _payload(ct, flattened, "additional_eventdata", extra)
    if details is not None:
        _payload(ct, flattened, "service_event_details", details)
    ct["flattened"] = flattened


def _event(get: Callable[[str], Any], action: Any, response: Any, details: Any) -> dict[str, Any]:
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
    elif isinstance(action, str) and (isinstance(response, dict) or isinstance(details, dict)):
        event["outcome"] = _sign_in_outcome(response, details, action)
    else:
        event["outcome"] = "success"
    mapped = _CATEGORY_LISTS.get(action) if isinstance(action, str) else None
    if mapped is not None:
        event["category"] = mapped[0].copy()
        event["type"] = mapped[1].copy()
    else:
        event["type"] = ["info"]
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


def _network(get: Callable[[str], Any], doc: dict[str, Any], user: dict[str, Any], related_user: list[str]) -> None:
    """source, user_agent, tls, then the user and related objects collected so far."""
    address = get("sourceIPAddress")
    ip = None
    if isinstance(address, str) and address:
        ip = as_ip(address)
        if ip is not None:
            doc["source"] = {"address": address, "ip": ip}
        elif "." in address and " " not in address:
            doc["source"] = {"address": address, "domain": address}  # a service principal such as ec2.amazonaws.com
        else:
            doc["source"] = {"address": address}
    agent = get("userAgent")
    if agent:
        doc["user_agent"] = {"original": agent}
    tls = get("tlsDetails")
    if isinstance(tls, dict):
        _tls(tls, doc)
    if user:
        doc["user"] = user
    if related_user:
        doc["related"] = {"user": related_user, "ip": [ip]} if ip is not None else {"user": related_user}
    elif ip is not None:
        doc["related"] = {"ip": [ip]}


def build_ecs(rec: dict[str, Any], timestamp: str, redact_credentials: bool = False) -> dict[str, Any]:
    """The ECS document for one CloudTrail record (does not set ids, ingest time or event.original).

    With ``redact_credentials``, credential values in requestParameters and responseElements are redacted in
    place (so in ``rec`` too) before anything reads them; otherwise ``rec`` must already be redacted.
    Built with literals, writing each value where it belongs (no intermediate containers); rare shapes are helpers.
    """
    get = rec.get
    params, response = get("requestParameters"), get("responseElements")
    extra, details = get("additionalEventData"), get("serviceEventDetails")
    if redact_credentials:  # first: everything below reads the payloads redacted
        if params:
            _redact(params)
        if response:
            _redact(response)
    action = get("eventName")
    ct: dict[str, Any] = {}
    if action == "ConsoleLogin":
        _console_login(extra, ct)
    cloud: dict[str, Any] = {"provider": "aws"}
    region = get("awsRegion")
    if region or region not in DROPPED:
        cloud["region"] = region
    doc: dict[str, Any] = {
        "@timestamp": timestamp,
        "event": _event(get, action, response, details),
        "cloud": cloud,
        "aws": {"cloudtrail": ct},
        "ecs": {"version": ECS_VERSION},
    }
    _scalars(rec, ct)
    if "resources" in ct:
        _split_resources(ct)
    _payloads(ct, params, response, extra, details)
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
    # Most payloads name no target: a C-level key test skips the lookups.
    if (isinstance(params, dict) and not _TARGET_PARAMS.isdisjoint(params)) or (
        isinstance(response, dict) and not _TARGET_RESPONSE.isdisjoint(response)
    ):
        _targets(params, response, user, doc, related_user)
    _network(get, doc, user, related_user)
    return doc
