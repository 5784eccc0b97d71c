"""Kubernetes audit parser: audit.k8s.io/v1 Event / EventList (one JSON per message or JSON lines), and the
GKE and AKS wrappers, -> one ECS event per audit event.

Only the configured stages are indexed (default ResponseComplete and Panic: one event per request, with the
response code), plus ResponseStarted of streaming subresources (exec/attach/portforward); other stages are
counted as skipped. Events that carry no stage (some exporters drop it) are indexed rather than lost.
"""

from __future__ import annotations

from typing import Any

import orjson

from parsers.base import ErrorType, ParsedEvent, ParseResult, SourceRecord
from parsers.common import (
    ECS_VERSION,
    ParserOptions,
    add_unique,
    as_ip,
    fallback_timestamp,
    item_failure,
    now_iso,
    put,
    run_guarded,
)
from parsers.ids import coordinate_id, k8s_audit_id
from parsers.k8s_unwrap import is_aks, is_native, unwrap_aks, unwrap_gke
from parsers.limits import InputRejected, loads_json, unwrap_payload
from parsers.redaction import redact_k8s_event
from parsers.timestamps import parse_timestamp

DATASET = "kubernetes.audit_logs"


def _outcome(status: Any) -> str | None:
    if not isinstance(status, dict):
        return None
    code = status.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        return None
    # 0 is google.rpc OK (GKE); HTTP codes below 400 are successes.
    return "success" if code == 0 or 100 <= code < 400 else "failure"


def _ecs_audit(event: dict[str, Any], meta_key: str | None, meta: dict[str, Any] | None) -> dict[str, Any]:
    """The ``kubernetes.audit`` object: the event itself, with dotted annotation keys made safe for ES
    (a key like ``authorization.k8s.io/decision`` would otherwise be expanded into nested objects)."""
    audit = dict(event)
    annotations = event.get("annotations")
    if isinstance(annotations, dict):
        audit["annotations"] = {k.replace(".", "_"): v for k, v in annotations.items() if v != ""}
    if meta_key and meta:
        audit[meta_key] = meta
    return audit


def _user(event: dict[str, Any], doc: dict[str, Any], related: dict[str, Any]) -> None:
    user = event.get("user")
    if not isinstance(user, dict):
        return
    ecs_user: dict[str, Any] = {}
    related_user: list[str] = []
    add_unique(related_user, user.get("uid"))
    add_unique(related_user, user.get("username"))
    put(ecs_user, "id", user.get("uid"))
    put(ecs_user, "name", user.get("username"))
    put(doc, "user", ecs_user)
    put(related, "user", related_user)


def _orchestrator(event: dict[str, Any], gke: dict[str, Any] | None) -> dict[str, Any]:
    orch: dict[str, Any] = {"type": "kubernetes"}
    put(orch, "api_version", event.get("apiVersion"))
    ref = event.get("objectRef")
    if isinstance(ref, dict):
        put(orch, "namespace", ref.get("namespace"))
        resource: dict[str, Any] = {}
        put(resource, "name", ref.get("name"))
        put(resource, "type", ref.get("resource"))
        put(resource, "parent", {"type": ref["subresource"]} if ref.get("subresource") else None)
        put(orch, "resource", resource)
    if gke:
        if "resource" not in orch and gke.get("resource_name"):
            orch["resource"] = {"name": gke["resource_name"]}
        cluster: dict[str, Any] = {}
        put(cluster, "id", gke.get("project_id"))
        put(cluster, "name", gke.get("cluster_name"))
        put(orch, "cluster", cluster)
    return orch


def build_ecs(event: dict[str, Any], timestamp: str, meta_key: str | None,
              meta: dict[str, Any] | None) -> dict[str, Any]:
    ecs_event: dict[str, Any] = {"kind": "event", "module": "kubernetes", "dataset": DATASET}
    put(ecs_event, "action", event.get("verb"))
    put(ecs_event, "outcome", _outcome(event.get("responseStatus")))
    put(ecs_event, "id", event.get("auditID"))
    doc: dict[str, Any] = {"@timestamp": timestamp, "event": ecs_event, "ecs": {"version": ECS_VERSION}}
    related: dict[str, Any] = {}
    ips = event.get("sourceIPs")
    if isinstance(ips, list) and ips:
        valid = [ip for ip in ips if isinstance(ip, str) and as_ip(ip)]
        if valid:
            # Lists, like Elastic: the first is the client, the rest the proxies it came through.
            doc["source"] = {"ip": valid}
            doc["client"] = {"ip": valid}
            related["ip"] = valid
    _user(event, doc, related)
    put(doc, "related", related)
    if event.get("userAgent"):
        doc["user_agent"] = {"original": event["userAgent"]}
    doc["orchestrator"] = _orchestrator(event, meta if meta_key == "gke_metadata" else None)
    doc["kubernetes"] = {"audit": _ecs_audit(event, meta_key, meta)}
    return doc


class K8sAuditParser:
    def __init__(self, options: ParserOptions | None = None) -> None:
        self.name = "k8s_audit"
        self.dataset = DATASET
        self.options = options or ParserOptions()

    def parse(self, record: SourceRecord) -> ParseResult:
        return run_guarded(record, self._parse)

    def _parse(self, record: SourceRecord, result: ParseResult) -> None:
        payload = unwrap_payload(record.value, self.options.max_bytes)
        try:
            obj = loads_json(payload, self.options.max_depth)
        except InputRejected as exc:
            lines = [line for line in payload.splitlines() if line.strip()]
            if exc.error_type != ErrorType.JSON or len(lines) < 2:
                raise
            self._lines(lines, record, result)
            return
        self._top(obj, record, 0, result)

    def _lines(self, lines: list[bytes], record: SourceRecord, result: ParseResult) -> None:
        for index, line in enumerate(lines):
            try:
                self._top(loads_json(line, self.options.max_depth), record, index, result)
            except Exception as exc:  # noqa: BLE001 - one bad line must not lose the others
                result.failures.append(item_failure(exc, line, index))

    def _top(self, obj: Any, record: SourceRecord, index: int, result: ParseResult) -> None:
        if isinstance(obj, dict) and obj.get("kind") == "EventList":
            items = obj.get("items")
            if not isinstance(items, list):
                raise InputRejected(ErrorType.SHAPE, "EventList without an 'items' list")
            self._batch(items, record, result)
        elif isinstance(obj, dict) and isinstance(obj.get("records"), list):
            self._batch(obj["records"], record, result)  # Azure Event Hubs batch of diagnostic records
        elif isinstance(obj, list):
            self._batch(obj, record, result)
        else:
            self._one(obj, record, index, result)

    def _batch(self, items: list[Any], record: SourceRecord, result: ParseResult) -> None:
        for index, item in enumerate(items):
            try:
                self._one(item, record, index, result)
            except Exception as exc:  # noqa: BLE001 - one bad event must not lose the others
                result.failures.append(item_failure(exc, orjson.dumps(item), index))

    def _unwrap(self, obj: Any) -> tuple[dict[str, Any], str | None, dict[str, Any] | None]:
        if not isinstance(obj, dict):
            raise InputRejected(ErrorType.SHAPE, f"audit event is a {type(obj).__name__}, not an object")
        if "protoPayload" in obj:
            event, meta = unwrap_gke(obj)
            return event, "gke_metadata", meta
        if is_aks(obj):
            event, meta = unwrap_aks(obj, self.options.max_depth)
            return event, "aks_metadata", meta
        if is_native(obj):
            return obj, None, None
        raise InputRejected(ErrorType.SHAPE, "not a Kubernetes audit event (no auditID, verb, objectRef, ...)")

    def _indexed_stage(self, event: dict[str, Any], stage: str) -> bool:
        """Configured stages are indexed; so is the start of a streaming session (exec, attach, port-forward),
        whose ResponseComplete arrives only when the session ends: too late to detect someone in a pod."""
        if stage in self.options.k8s_stages:
            return True
        if stage != "ResponseStarted":
            return False
        ref = event.get("objectRef")
        return isinstance(ref, dict) and ref.get("subresource") in self.options.k8s_streaming_subresources

    def _one(self, obj: Any, record: SourceRecord, index: int, result: ParseResult) -> None:
        event, meta_key, meta = self._unwrap(obj)
        stage = event.get("stage")
        if stage is not None and not isinstance(stage, str):
            raise InputRejected(ErrorType.SHAPE, f"audit event stage is a {type(stage).__name__}, not a string")
        if stage is not None and not self._indexed_stage(event, stage):
            result.skipped += 1
            return
        options = self.options
        redact_k8s_event(event)
        if options.redactor:
            options.redactor.apply(event)
        raw_time = event.get("stageTimestamp") or event.get("requestReceivedTimestamp")
        if raw_time is None and meta:
            raw_time = meta.get("time")
        timestamp = parse_timestamp(raw_time) if raw_time else fallback_timestamp(record, options.clock)
        doc = build_ecs(event, timestamp, meta_key, meta)
        doc["event"]["ingested"] = now_iso(options.clock)
        if options.keep_original:
            doc["event"]["original"] = orjson.dumps(event).decode()
        if options.redactor:
            options.redactor.apply(doc)
        audit_id = event.get("auditID")
        doc_id = (k8s_audit_id(audit_id, stage)
                  if isinstance(audit_id, str) and audit_id
                  else coordinate_id(record.topic, record.partition, record.offset, index))
        result.events.append(ParsedEvent(id=doc_id, dataset=DATASET, ecs=doc, native=event))
