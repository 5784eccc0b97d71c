"""Redaction of secrets before anything is indexed or matched.

What is redacted by default, and why:
- Kubernetes Secret objects in request/response bodies (``data``, ``stringData``): the audit policy often logs
  them at RequestResponse level, which would copy every secret into the SIEM.
- ``TokenReview.spec.token`` and ``TokenRequest.status.token``: live bearer tokens.
- CloudTrail credential material (``sessionToken``, ``secretAccessKey``, ...) in requestParameters and
  responseElements; access key *ids* stay, analysts need them.
Extra dotted paths from config are applied on top (lists are traversed, every element).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

MARKER = "[REDACTED]"

CREDENTIAL_KEYS = frozenset(
    {
        "sessiontoken", "secretaccesskey", "password", "newpassword", "oldpassword", "privatekey",
        "privatekeymaterial", "keymaterial", "secretstring", "secretbinary", "clientsecret", "accesstoken",
        "refreshtoken", "idtoken", "token", "authorizationtoken", "certificatepem",
    }
)


# Every credential key contains one of these; a few C-speed substring scans of the lower-cased raw bytes
# decide whether the (much slower) walk is needed at all, since most records carry no such key.
_HINTS = (b"token", b"secret", b"password", b"privatekey", b"keymaterial", b"certificatepem")
assert all(any(h.decode() in k for h in _HINTS) for k in CREDENTIAL_KEYS)


def may_hold_credentials(raw: bytes) -> bool:
    """Whether JSON text ``raw`` may spell a credential key. Also true for a JSON escape (``\\u0074oken``) and for
    non-ASCII text (``str.lower`` folds e.g. the Kelvin sign to ``k``): the byte scan cannot see those keys."""
    if not raw.isascii():
        return True
    low = raw.lower()
    return (b"token" in low or b"secret" in low or b"password" in low or b"privatekey" in low
            or b"keymaterial" in low or b"certificatepem" in low or b"\\u" in low)


_dumps = orjson.dumps

# Keys already seen that are not credential keys: a dict whose keys are all in here (one C-level superset test)
# needs no per-key check. Keys repeat across events, so this stays small; bounded (cleared when full).
_CLEAN_KEYS: set[str] = set()
_CLEAN_KEYS_MAX = 65536


def _redact_keys(node: dict[str, Any]) -> None:
    for key, value in node.items():
        if key.lower() in CREDENTIAL_KEYS:
            if value is not None and value != "":
                node[key] = MARKER
        else:
            if len(_CLEAN_KEYS) >= _CLEAN_KEYS_MAX:
                _CLEAN_KEYS.clear()
            _CLEAN_KEYS.add(key)


def _redact_iterative(node: Any) -> None:
    clean = _CLEAN_KEYS
    containers = (dict, list)
    stack = [node]
    push = stack.append
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            if not clean.issuperset(current):
                _redact_keys(current)
            for value in current.values():
                if isinstance(value, containers):
                    push(value)
        elif isinstance(current, list):
            stack.extend(v for v in current if isinstance(v, containers))


# JSON scalar types: one ``type(value) in`` test per value instead of two isinstance calls. Anything else (dicts,
# lists and any subclass of them) goes through isinstance, so nothing container-like is ever skipped.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _redact_dict(node: dict[str, Any]) -> None:
    if not _CLEAN_KEYS.issuperset(node):
        _redact_keys(node)
    for value in node.values():
        if type(value) in _SCALARS:
            continue
        if isinstance(value, dict):
            _redact_dict(value)
        elif isinstance(value, list):
            _redact_list(value)


def _redact_list(node: list[Any]) -> None:
    for value in node:
        if type(value) in _SCALARS:
            continue
        if isinstance(value, dict):
            _redact_dict(value)
        elif isinstance(value, list):
            _redact_list(value)


def redact_credentials(node: Any) -> None:
    """Replace credential-named values anywhere inside ``node`` (in place).

    Recursive (cheaper per node than an explicit stack); the input is already depth-checked, and should it
    still be too deep for Python's recursion limit, the iterative walk finishes the job (redacting is idempotent).
    """
    try:
        if isinstance(node, dict):
            _redact_dict(node)
        elif isinstance(node, list):
            _redact_list(node)
    except RecursionError:
        _redact_iterative(node)


def redacted_json(node: Any) -> str:
    """``node`` as compact JSON text after redacting credential values in it (in place).

    Walking the parsed payload's keys (each classified once, then a dict hit) is cheaper than scanning its
    text for hints, and it sees every key however it was escaped in the input.
    """
    redact_credentials(node)
    return _dumps(node).decode()


def _redact_secret(obj: dict[str, Any]) -> None:
    for key in ("data", "stringData"):
        if key in obj and obj[key] is not None:
            obj[key] = MARKER
    if obj.get("kind") == "SecretList" and isinstance(obj.get("items"), list):
        for item in obj["items"]:
            if isinstance(item, dict):
                _redact_secret(item)


def _redact_k8s_object(obj: Any, resource: str | None, subresource: str | None) -> None:
    if not isinstance(obj, dict):
        return
    kind = obj.get("kind")
    if kind in ("Secret", "SecretList") or (resource == "secrets" and subresource is None):
        _redact_secret(obj)
    for section in ("spec", "status"):
        part = obj.get(section)
        is_token_kind = kind in ("TokenReview", "TokenRequest") or subresource == "token"
        if is_token_kind and isinstance(part, dict) and part.get("token"):
            part["token"] = MARKER


def redact_k8s_event(event: dict[str, Any]) -> None:
    """Redact secrets and tokens in an audit.k8s.io Event (in place)."""
    ref = event.get("objectRef")
    resource = subresource = None
    if isinstance(ref, dict):
        resource, subresource = ref.get("resource"), ref.get("subresource")
    _redact_k8s_object(event.get("requestObject"), resource, subresource)
    _redact_k8s_object(event.get("responseObject"), resource, subresource)


def _redact_path(node: Any, parts: list[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _redact_path(item, parts)
        return
    if not isinstance(node, dict) or not parts:
        return
    head = parts[0]
    if head not in node:
        return
    if len(parts) == 1:
        node[head] = MARKER
    else:
        _redact_path(node[head], parts[1:])


class PathRedactor:
    """Configured extra redaction paths, split once at start."""

    def __init__(self, paths: Iterable[str]) -> None:
        self._paths = [p.split(".") for p in paths if p]
        self.active = bool(self._paths)  # a plain attribute: checked twice per event, cheaper than __bool__

    def __bool__(self) -> bool:
        return self.active

    def apply(self, doc: dict[str, Any]) -> None:
        for parts in self._paths:
            _redact_path(doc, parts)
