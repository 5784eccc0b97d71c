"""Structured application log lines -> ECS: JSON (ECS logging, structlog, pino/bunyan, logrus/zap, Python
logging JSON) and logfmt. The well-known keys for time, level, message, logger and error are mapped to ECS;
everything else stays in ``native`` for Sigma and under ``app`` in the document.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from parsers.common import put

# pino / bunyan numeric levels.
_NUMERIC_LEVELS = {10: "trace", 20: "debug", 30: "info", 40: "warn", 50: "error", 60: "fatal"}
_TIME_KEYS = ("@timestamp", "timestamp", "time", "ts", "asctime", "datetime", "date")
_LEVEL_KEYS = ("log.level", "level", "severity", "levelname", "lvl", "loglevel")
_MESSAGE_KEYS = ("message", "msg", "event", "@message")
_LOGGER_KEYS = ("log.logger", "logger", "logger_name", "name")
_ERROR_KEYS = ("error", "err", "exc_info", "exception", "stack_trace")
# Where apps put the client address; the first valid IP becomes ECS source.ip (rules and incidents key on it).
_CLIENT_IP_KEYS = (
    "source.ip",
    "client_ip",
    "clientIp",
    "client.ip",
    "remote_addr",
    "remoteAddress",
    "remote_ip",
    "src_ip",
    "ip",
)
_MAPPED = frozenset(_TIME_KEYS + _LEVEL_KEYS + _MESSAGE_KEYS + _LOGGER_KEYS + _ERROR_KEYS)

_LOGFMT_PAIR = re.compile(r'([\w.\-/@]+)=("(?:[^"\\]|\\.)*"|\S*)')
_LOGFMT_LINE = re.compile(r'\s*[\w.\-/@]+=(?:"(?:[^"\\]|\\.)*"|\S*)(?:\s+[\w.\-/@]+=(?:"(?:[^"\\]|\\.)*"|\S*))*\s*')


def first(obj: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for key in keys:
        value = obj.get(key)
        if value is not None and value != "":
            return key, value
    return None, None


def nested_get(obj: dict[str, Any], dotted: str) -> Any:
    node: Any = obj
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def timestamp_value(obj: dict[str, Any]) -> Any:
    """The raw time value, or None. ECS logging nests nothing here; Python's asctime uses a comma."""
    key, value = first(obj, _TIME_KEYS)
    if key == "asctime" and isinstance(value, str):
        return value.replace(",", ".", 1)
    return value


def _level(obj: dict[str, Any]) -> str | None:
    _, value = first(obj, _LEVEL_KEYS)
    if value is None:
        value = nested_get(obj, "log.level")
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return _NUMERIC_LEVELS.get(value, str(value))
    return value.lower() if isinstance(value, str) else None


def _error(value: Any, doc: dict[str, Any]) -> None:
    if isinstance(value, dict):
        err: dict[str, Any] = {}
        put(err, "message", value.get("message") or value.get("msg"))
        put(err, "type", value.get("type") or value.get("name"))
        put(err, "stack_trace", value.get("stack") or value.get("stack_trace"))
        put(doc, "error", err)
    elif isinstance(value, str) and value:
        key = "stack_trace" if "\n" in value else "message"
        doc["error"] = {key: value}


def _client_ip(obj: dict[str, Any]) -> str | None:
    for key in _CLIENT_IP_KEYS:
        value = obj.get(key)
        if value is None and "." in key:
            value = nested_get(obj, key)
        if isinstance(value, str) and value:
            try:
                return str(ipaddress.ip_address(value))
            except ValueError:
                continue
    return None


def json_to_ecs(obj: dict[str, Any], doc: dict[str, Any]) -> None:
    """Map a JSON (or logfmt) log object into ``doc`` (which already has @timestamp and event)."""
    message = next((obj[k] for k in _MESSAGE_KEYS if isinstance(obj.get(k), str)), None)
    if message is not None:
        doc["message"] = message
    log: dict[str, Any] = {}
    put(log, "level", _level(obj))
    logger_key, logger = first(obj, _LOGGER_KEYS)
    if isinstance(logger, str) and (logger_key != "name" or "levelname" in obj):
        log["logger"] = logger  # "name" is the logger only for Python logging (bunyan uses it for the app)
    put(doc, "log", log)
    _, err = first(obj, _ERROR_KEYS)
    _error(err, doc)
    service = obj.get("service.name") or nested_get(obj, "service.name")
    if not service and isinstance(obj.get("service"), str):
        service = obj["service"]
    if service:
        doc["service"] = {"name": service}
    if isinstance(obj.get("hostname"), str):
        doc["host"] = {"hostname": obj["hostname"]}
    if isinstance(obj.get("pid"), int):
        doc["process"] = {"pid": obj["pid"]}
    trace_id = obj.get("trace.id") or obj.get("trace_id") or nested_get(obj, "trace.id")
    if isinstance(trace_id, str):
        doc["trace"] = {"id": trace_id}
    client_ip = _client_ip(obj)
    if client_ip is not None:
        doc["source"] = {"ip": client_ip, "address": client_ip}
        doc["related"] = {"ip": [client_ip]}
    extra = {k: v for k, v in obj.items() if k not in _MAPPED}
    if extra:
        doc["app"] = extra


def is_logfmt(line: str) -> bool:
    return "=" in line and _LOGFMT_LINE.fullmatch(line) is not None


def parse_logfmt(line: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in _LOGFMT_PAIR.findall(line):
        if raw.startswith('"'):
            raw = raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[key] = raw
    return out
