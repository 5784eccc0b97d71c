"""Web server access logs (Apache/nginx common and combined, with the usual variants) -> ECS ``http``,
``url``, ``source``, ``user_agent``; the native view uses W3C extended names (``cs-uri-query``...) because
that is what community Sigma web-server rules match on.

Malformed requests are still access events: a TLS handshake sent to an HTTP port or a scanner's garbage
request line gets no ``http.request.method``/``url.*`` (nothing trustworthy to put there) but keeps its raw
text in the native ``cs-request`` field, where rules can still match it.
"""

from __future__ import annotations

import re
from typing import Any

from parsers.common import as_ip
from parsers.timestamps import parse_timestamp

# Anchored on "[time] \"request\" status": everything before is client (possibly "vhost:port client" or an
# X-Forwarded-For style list), ident and user.
_ACCESS = re.compile(
    r"(?P<client>.+?) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    r"\"(?P<request>(?:[^\"\\]|\\.)*)\" (?P<status>\d{3}|-) (?P<bytes>\d+|-)(?P<rest>.*)",
    re.DOTALL,
)
_QUOTED = re.compile(r"\"((?:[^\"\\]|\\.)*)\"")
_REQUEST = re.compile(r"([A-Z][A-Z_\-]*) (\S+)(?: (HTTP/\d(?:\.\d)?))?")


def looks_like_access(line: str) -> bool:
    return "] \"" in line and " [" in line


def _client(raw: str) -> tuple[str, list[str]]:
    """The client address and the full list (forwarded chains, "vhost:port client")."""
    chain = [part.strip() for part in raw.split(",") if part.strip()]
    if len(chain) == 1 and " " in chain[0]:
        chain = [chain[0].split()[-1]]  # "vhost:port client": the client is last
    first_hop = chain[0] if chain else raw
    return first_hop, chain


def _strip_port(address: str) -> str:
    if as_ip(address):
        return address
    host, sep, port = address.rpartition(":")
    if sep and port.isdigit() and as_ip(host.strip("[]")):
        return host.strip("[]")
    return address


def _request(request: str, doc: dict[str, Any], native: dict[str, Any]) -> None:
    m = _REQUEST.fullmatch(request)
    if m is None:
        return  # "-", TLS bytes, scanners' junk: kept in cs-request only
    method, target, version = m.groups()
    doc["http"]["request"]["method"] = method
    if version:
        doc["http"]["version"] = version[5:]
    path, _, query = target.partition("?")
    url: dict[str, Any] = {"original": target, "path": path}
    if query:
        url["query"] = query
    if "." in path.rsplit("/", 1)[-1]:
        url["extension"] = path.rsplit(".", 1)[-1].lower()
    doc["url"] = url
    native["cs-method"] = method
    native["cs-uri-stem"] = path
    native["cs-uri-query"] = query or "-"
    native["cs-uri"] = target
    if version:
        native["cs-version"] = version


def _rest(rest: str, doc: dict[str, Any], native: dict[str, Any]) -> None:
    quoted = _QUOTED.findall(rest)
    if quoted and quoted[0] not in ("-", ""):
        doc["http"]["request"]["referrer"] = quoted[0]
        native["cs-referer"] = quoted[0]
    if len(quoted) > 1 and quoted[1] not in ("-", ""):
        doc["user_agent"] = {"original": quoted[1]}
        native["cs-user-agent"] = quoted[1]


def parse_access(line: str) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    """(timestamp, ECS fields, W3C native fields), or None if the line is not an access log line."""
    m = _ACCESS.fullmatch(line)
    if m is None:
        return None
    timestamp = parse_timestamp(m["time"])
    address, chain = _client(m["client"])
    address = _strip_port(address)
    doc: dict[str, Any] = {"http": {"request": {}}, "source": {"address": address}}
    native: dict[str, Any] = {"c-ip": address, "cs-request": m["request"], "date-time": m["time"]}
    ip = as_ip(address)
    if ip:
        doc["source"]["ip"] = ip
        doc["related"] = {"ip": [ip]}
    if len(chain) > 1:
        doc["network"] = {"forwarded_ip": chain}
    if m["user"] != "-":
        doc["user"] = {"name": m["user"]}
        native["cs-username"] = m["user"]
    _request(m["request"], doc, native)
    if m["status"] != "-":
        status = int(m["status"])
        doc["http"]["response"] = {"status_code": status}
        native["sc-status"] = status
        doc["event"] = {"outcome": "success" if status < 400 else "failure"}
    if m["bytes"] != "-":
        doc["http"].setdefault("response", {})["body"] = {"bytes": int(m["bytes"])}
        native["sc-bytes"] = int(m["bytes"])
    _rest(m["rest"], doc, native)
    if not doc["http"]["request"]:
        del doc["http"]["request"]
    return timestamp, doc, native
