"""Size, compression, encoding and nesting limits applied before any source-specific parsing.

Everything here raises :class:`InputRejected`, which the parsers turn into a :class:`ParseFailure`: a bad record
must reach the DLQ with a precise reason, never crash the consumer.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from parsers.base import ErrorType

GZIP_MAGIC = b"\x1f\x8b"
# As an int: ``int in bytes`` is a plain memchr, while ``bytes in bytes`` first tries (and fails, raising and
# clearing a TypeError internally) to read its argument as an int.
_SQUARE_BRACKET = ord("[")
_loads = orjson.loads


class InputRejected(Exception):  # noqa: N818 - a signal inside parsers, never leaves them
    """Raised inside a parser for bad input; caught at the parser boundary and turned into a DLQ entry."""

    def __init__(self, error_type: ErrorType, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def check_size(data: bytes, max_bytes: int, what: str = "record") -> None:
    if len(data) > max_bytes:
        raise InputRejected(ErrorType.OVERSIZE, f"{what} is {len(data)} bytes, limit is {max_bytes}")


def gunzip_limited(data: bytes, max_bytes: int) -> bytes:
    """Decompress gzip without ever holding more than ``max_bytes`` (a small bomb must not exhaust memory)."""
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise InputRejected(ErrorType.DECODE, f"invalid gzip data: {exc}") from None
    if len(out) > max_bytes or decompressor.unconsumed_tail:
        raise InputRejected(ErrorType.OVERSIZE, f"gzip payload decompresses to more than {max_bytes} bytes")
    if not decompressor.eof:
        raise InputRejected(ErrorType.DECODE, "truncated gzip data")
    return out


def unwrap_payload(data: bytes, max_bytes: int) -> bytes:
    """Apply the size limit and transparently decompress gzip (S3 objects, CloudWatch Logs subscriptions)."""
    check_size(data, max_bytes)
    if data[:2] == GZIP_MAGIC:
        return gunzip_limited(data, max_bytes)
    return data


_CONTAINERS = (dict, list)


def _depth_exceeds(obj: Any, max_depth: int) -> bool:
    # Level by level, iteratively (a recursive walk would itself hit Python's recursion limit on hostile input):
    # one comprehension per level costs far less than a stack entry per container.
    level = [obj] if isinstance(obj, _CONTAINERS) else []
    for _ in range(max_depth):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, _CONTAINERS)
        ]
        if not level:
            return False
    return True


def check_depth(obj: Any, raw: bytes | str, max_depth: int) -> None:
    """Reject JSON nested deeper than ``max_depth`` containers.

    Counting brackets in the raw text is a cheap upper bound on depth: when it is within the limit (almost
    always) the exact walk is skipped, which keeps the hot path fast.
    """
    if isinstance(raw, str):
        brackets = raw.count("{") + (raw.count("[") if "[" in raw else 0)
    else:
        brackets = raw.count(b"{") + (raw.count(b"[") if _SQUARE_BRACKET in raw else 0)
    if brackets <= max_depth:
        return
    if _depth_exceeds(obj, max_depth):
        raise InputRejected(ErrorType.TOO_DEEP, f"JSON nesting deeper than {max_depth} levels")


def _rejected(data: bytes | str, exc: orjson.JSONDecodeError, max_depth: int) -> InputRejected:
    """Why orjson refused ``data``: undecodable bytes, nesting beyond orjson's own limit (1024), or invalid JSON."""
    if isinstance(data, bytes):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as uexc:
            return InputRejected(ErrorType.DECODE, f"not valid UTF-8: {uexc}")
    message = str(exc)
    lowered = message.lower()
    if "depth limit exceeded" in lowered or "recursion" in lowered:
        return InputRejected(ErrorType.TOO_DEEP, f"JSON nesting deeper than {max_depth} levels")
    return InputRejected(ErrorType.JSON, f"invalid JSON: {message}")


def loads_json(data: bytes | str, max_depth: int) -> Any:
    """Parse JSON with orjson, classifying failures as undecodable bytes, invalid JSON or too deep."""
    try:
        obj = _loads(data)
    except orjson.JSONDecodeError as exc:
        raise _rejected(data, exc, max_depth) from None
    # check_depth, inlined: this runs once per record. Only containers can nest, so scalars need no check, and
    # JSON nested deeper than ``max_depth`` takes at least two bytes per level.
    # Counting is a full pass per character while membership is a vectorized scan (memchr): skip counting "[" when
    # there is none (most records hold no array).
    if (type(obj) is dict or type(obj) is list) and len(data) > 2 * max_depth:
        if isinstance(data, str):
            brackets = data.count("{") + (data.count("[") if "[" in data else 0)
        else:
            brackets = data.count(b"{") + (data.count(b"[") if _SQUARE_BRACKET in data else 0)
        if brackets > max_depth and _depth_exceeds(obj, max_depth):
            raise InputRejected(ErrorType.TOO_DEEP, f"JSON nesting deeper than {max_depth} levels")
    return obj


def decode_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputRejected(ErrorType.DECODE, f"not valid UTF-8: {exc}") from None
