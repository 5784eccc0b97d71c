"""Unwrap managed-Kubernetes audit records to the audit.k8s.io Event shape.

- GKE writes audit events as Cloud Audit Logs (``protoPayload`` of type AuditLog): method, resource name,
  principal and caller metadata are mapped back to verb, objectRef, user and sourceIPs, so Sigma rules written
  for native audit fields (``verb``, ``objectRef.resource``) match GKE clusters too.
- AKS writes Azure diagnostic records whose ``properties.log`` holds the native event as a JSON string.
The wrapper's own metadata is returned separately and indexed under ``kubernetes.audit.<aks|gke>_metadata``.
"""

from __future__ import annotations

from typing import Any

from parsers.base import ErrorType
from parsers.limits import InputRejected, loads_json

_NATIVE_KEYS = ("auditID", "verb", "objectRef", "requestURI", "stage", "stageTimestamp")


def is_native(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "Event" or any(k in obj for k in _NATIVE_KEYS)


def is_aks(obj: dict[str, Any]) -> bool:
    props = obj.get("properties")
    return isinstance(props, dict) and "log" in props


def unwrap_aks(obj: dict[str, Any], max_depth: int) -> tuple[dict[str, Any], dict[str, Any]]:
    props = obj["properties"]
    log = props.get("log")
    event = loads_json(log, max_depth) if isinstance(log, str | bytes) else log
    if not isinstance(event, dict):
        raise InputRejected(ErrorType.SHAPE, "AKS record: properties.log is not an audit event object")
    meta = {
        "category": obj.get("category"),
        "operation_name": obj.get("operationName"),
        "resource_id": obj.get("resourceId"),
        "service_build": obj.get("serviceBuild"),
        "time": obj.get("time"),
        "container_id": props.get("containerID"),
        "pod": props.get("pod"),
        "stream": props.get("stream"),
    }
    return event, {k: v for k, v in meta.items() if v not in (None, "")}


def _object_ref(resource_name: str) -> dict[str, Any]:
    """``core/v1/namespaces/ns/pods/name/exec`` or ``apps/v1/namespaces/ns/deployments/x`` -> objectRef."""
    parts = [p for p in resource_name.split("/") if p]
    ref: dict[str, Any] = {}
    if len(parts) < 3:
        return ref  # a non-resource URL such as "readyz": no objectRef in the native shape either
    group, version, rest = parts[0], parts[1], parts[2:]
    ref["apiGroup"] = "" if group == "core" else group
    ref["apiVersion"] = version
    if len(rest) >= 2 and rest[0] == "namespaces" and len(rest) > 2:
        ref["namespace"] = rest[1]
        rest = rest[2:]
    if rest:
        ref["resource"] = rest[0]
    if len(rest) > 1:
        ref["name"] = rest[1]
    if len(rest) > 2:
        ref["subresource"] = rest[2]
    return ref


def _gke_meta(obj: dict[str, Any]) -> dict[str, Any]:
    resource = obj.get("resource")
    labels = resource.get("labels") if isinstance(resource, dict) else None
    meta: dict[str, Any] = {}
    if isinstance(labels, dict):
        for key in ("project_id", "cluster_name", "location"):
            if labels.get(key):
                meta[key] = labels[key]
    proto = obj.get("protoPayload")
    if isinstance(proto, dict) and proto.get("resourceName"):
        meta["resource_name"] = proto["resourceName"]
    for src, dst in (("logName", "log_name"), ("insertId", "insert_id"), ("receiveTimestamp", "receive_time")):
        if obj.get(src):
            meta[dst] = obj[src]
    return meta


def _gke_user_and_source(proto: dict[str, Any], event: dict[str, Any]) -> None:
    auth = proto.get("authenticationInfo")
    if isinstance(auth, dict):
        principal = auth.get("principalEmail") or auth.get("authoritySelector")
        if principal:
            event["user"] = {"username": principal}
    meta = proto.get("requestMetadata")
    if isinstance(meta, dict):
        ip = meta.get("callerIp") or meta.get("callerIP")
        if ip:
            event["sourceIPs"] = [ip]
        if meta.get("callerSuppliedUserAgent"):
            event["userAgent"] = meta["callerSuppliedUserAgent"]


def unwrap_gke(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    proto = obj.get("protoPayload")
    if not isinstance(proto, dict):
        raise InputRejected(ErrorType.SHAPE, "GKE record: protoPayload is not an object")
    event: dict[str, Any] = {"kind": "Event", "apiVersion": "audit.k8s.io/v1"}
    operation = obj.get("operation")
    audit_id = (operation.get("id") if isinstance(operation, dict) else None) or obj.get("insertId")
    if audit_id:
        event["auditID"] = audit_id
    method = proto.get("methodName")
    if isinstance(method, str) and method:
        event["verb"] = method.rsplit(".", 1)[-1]
    resource_name = proto.get("resourceName")
    if isinstance(resource_name, str) and resource_name:
        ref = _object_ref(resource_name)
        if ref:
            event["objectRef"] = ref
        else:
            event["requestURI"] = "/" + resource_name.lstrip("/")
    _gke_user_and_source(proto, event)
    for src, dst in (("request", "requestObject"), ("response", "responseObject")):
        if isinstance(proto.get(src), dict):
            event[dst] = proto[src]
    status = proto.get("status")
    if isinstance(status, dict):
        # Cloud Audit Logs carry a google.rpc.Status: code 0 is OK, anything else an error.
        response_status: dict[str, Any] = {"code": status.get("code", 0)}
        if status.get("message"):
            response_status["message"] = status["message"]
        event["responseStatus"] = response_status
    timestamp = obj.get("timestamp") or proto.get("timestamp")
    if timestamp:
        event["stageTimestamp"] = timestamp
    labels = obj.get("labels")
    if isinstance(labels, dict):
        event["annotations"] = labels
    return {k: v for k, v in event.items() if v is not None}, _gke_meta(obj)
