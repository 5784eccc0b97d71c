"""Syslog lines (RFC 5424 and RFC 3164 / BSD) -> ECS ``log.syslog.*``, ``host``, ``process`` and message."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from parsers.timestamps import parse_rfc3164, parse_timestamp

_SEVERITIES = ("emergency", "alert", "critical", "error", "warning", "notice", "informational", "debug")
_RFC5424 = re.compile(
    r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (.*))?", re.DOTALL
)
_RFC3164 = re.compile(
    r"(?:<(\d{1,3})>)?([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (\S+) ([^\s:\[]+)(?:\[([^\]]*)\])?: ?(.*)",
    re.DOTALL,
)
_SD_ELEMENT = re.compile(r"\[([^\s\]]+)((?:\s+[^\s=\]]+=\"(?:[^\"\\]|\\.)*\")*)\s*\]")
_SD_PARAM = re.compile(r"([^\s=\]]+)=\"((?:[^\"\\]|\\.)*)\"")


def _nil(value: str) -> str | None:
    return None if value == "-" else value


def _priority(pri: str | None, syslog: dict[str, Any], log: dict[str, Any]) -> None:
    if pri is None:
        return
    value = int(pri)
    if value > 191:
        return
    severity = value & 7
    syslog["priority"] = value
    syslog["facility"] = {"code": value >> 3}
    syslog["severity"] = {"code": severity, "name": _SEVERITIES[severity]}
    log["level"] = _SEVERITIES[severity]


def _structured_data(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sd_id, params in _SD_ELEMENT.findall(text):
        out[sd_id] = {k: v.replace('\\"', '"') for k, v in _SD_PARAM.findall(params)}
    return out


def _process(doc: dict[str, Any], name: str | None, pid: str | None) -> None:
    process: dict[str, Any] = {}
    if name:
        process["name"] = name
    if pid:
        if pid.isdigit():
            process["pid"] = int(pid)
        else:
            process["entity_id"] = pid
    if process:
        doc["process"] = process


def parse_syslog(line: str, reference: datetime) -> tuple[str | None, dict[str, Any], dict[str, Any]] | None:
    """(timestamp or None, ECS fields, native fields) for a syslog line, or None if it is not syslog."""
    m = _RFC5424.fullmatch(line)
    if m is not None:
        pri, ts, host, app, procid, msgid, sd, msg = m.groups()
        timestamp = parse_timestamp(ts) if ts != "-" else None
        native = {"priority": int(pri), "timestamp": _nil(ts), "hostname": _nil(host), "appname": _nil(app),
                  "procid": _nil(procid), "msgid": _nil(msgid), "message": msg}
        structured = _structured_data(sd) if sd != "-" else {}
        if structured:
            native["structured_data"] = structured
    else:
        m = _RFC3164.fullmatch(line)
        if m is None:
            return None
        pri, ts, host, app, procid, msg = m.groups()
        msgid, structured = "-", {}
        timestamp = parse_rfc3164(ts, reference)
        native = {"priority": int(pri) if pri else None, "timestamp": ts, "hostname": host, "appname": app,
                  "procid": procid, "message": msg}
    syslog: dict[str, Any] = {}
    log: dict[str, Any] = {"syslog": syslog}
    _priority(pri, syslog, log)
    if msgid != "-":
        syslog["msgid"] = msgid
    if structured:
        syslog["structured_data"] = structured
    doc: dict[str, Any] = {"log": log}
    if msg:
        doc["message"] = msg
    if host and host != "-":
        doc["host"] = {"hostname": host}
    _process(doc, _nil(app), _nil(procid) if procid else None)
    return timestamp, doc, {k: v for k, v in native.items() if v is not None}
