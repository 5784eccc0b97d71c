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
    # A JSON escape (``\\u0074oken``) could spell a credential key the byte scan cannot see: walk then too.
    low = raw.lower()
    return (b"token" in low or b"secret" in low or b"password" in low or b"privatekey" in low
            or b"keymaterial" in low or b"certificatepem" in low or b"\\u" in low)


# key -> is it a credential key; keys repeat across events (and orjson reuses the key objects), so a dict hit
# replaces a lower() and a set lookup. Bounded: cleared when full.
_KEY_IS_CREDENTIAL: dict[str, bool] = {}
_KEY_CACHE_MAX = 65536


def _classify(key: str) -> bool:
    hit = key.lower() in CREDENTIAL_KEYS
    if len(_KEY_IS_CREDENTIAL) >= _KEY_CACHE_MAX:
        _KEY_IS_CREDENTIAL.clear()
    _KEY_IS_CREDENTIAL[key] = hit
    return hit


def redact_credentials(node: Any) -> None:
    """Replace credential-named values anywhere inside ``node`` (in place)."""
    known = _KEY_IS_CREDENTIAL.get
    stack = [node]
    pop, push = stack.pop, stack.append
    while stack:
        current = pop()
        if isinstance(current, dict):
            for key, value in current.items():
                hit = known(key)
                if hit is None:
                    hit = _classify(key)
                if hit and value is not None and value != "":
                    current[key] = MARKER
                elif isinstance(value, dict | list):
                    push(value)
        elif isinstance(current, list):
            stack.extend(v for v in current if isinstance(v, dict | list))


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

    def __bool__(self) -> bool:
        return bool(self._paths)

    def apply(self, doc: dict[str, Any]) -> None:
        for parts in self._paths:
            _redact_path(doc, parts)
