"""Field lookup in an event: dotted paths through dicts and lists, native names first, then ECS.

An :class:`EventView` wraps one event for the duration of matching and caches every lookup, so twenty rules
testing ``eventName`` resolve it once.
"""

from __future__ import annotations

from typing import Any

import orjson

Values = tuple[Any, ...]  # the values a field path resolves to; ``None`` (not a tuple) means "missing"

_MISSING: Any = object()


def _walk(node: Any, parts: list[str], start: int, out: list[Any]) -> None:
    """Collect the values at ``parts[start:]`` below ``node``; lists fan out (any element may match).

    A key may itself contain dots (``"responseElements.ConsoleLogin"`` stored flat), so every split of the
    remaining path is tried, longest key first.
    """
    if start == len(parts):
        if isinstance(node, list):
            out.extend(node)
        else:
            out.append(node)
        return
    if isinstance(node, list):
        for element in node:
            _walk(element, parts, start, out)
        return
    if not isinstance(node, dict):
        return
    for end in range(len(parts), start, -1):
        key = parts[start] if end == start + 1 else ".".join(parts[start:end])
        child = node.get(key, _MISSING)
        if child is not _MISSING:
            _walk(child, parts, end, out)


_SPLITS: dict[str, list[str]] = {}


def lookup(document: dict[str, Any], path: str) -> Values | None:
    """Values of ``path`` in ``document``, lists flattened; ``None`` if the field is absent or empty."""
    node = document.get(path, _MISSING)
    if node is _MISSING:
        if "." not in path:
            return None
        parts = _SPLITS.get(path)
        if parts is None:
            parts = _SPLITS.setdefault(path, path.split("."))
        node = document
        for part in parts:  # fast path: plain nested objects
            if type(node) is not dict:
                node = _MISSING
                break
            node = node.get(part, _MISSING)
            if node is _MISSING:
                if len(parts) == 2:
                    # "a.b" and "a" -> "b" are the only ways to spell a two-part path through objects; the
                    # first was tried above, the second just now.
                    return None
                break
        if node is _MISSING:  # lists on the way or keys with dots in them
            out: list[Any] = []
            _walk(document, parts, 0, out)
            return tuple(out) if out else None
    if type(node) is list:
        flat: list[Any] = []
        _walk(node, [], 0, flat)
        return tuple(flat) if flat else None
    return (node,)


def _collect_scalars(node: Any, out: list[str]) -> None:
    if isinstance(node, str):
        out.append(node)
    elif isinstance(node, dict):
        for child in node.values():
            _collect_scalars(child, out)
    elif isinstance(node, list):
        for child in node:
            _collect_scalars(child, out)
    elif isinstance(node, bool):
        out.append("true" if node else "false")
    elif isinstance(node, (int, float)):
        out.append(str(node))


def as_text(value: Any) -> str | None:
    """The text a string pattern is matched against; objects match as their JSON text, null never."""
    if isinstance(value, str):
        return value
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return orjson.dumps(value).decode()


class EventView:
    """One event as rules see it: ``native`` fields, then ``ecs`` fields, with per-event caching.

    ``lowered`` keeps each field's values as lower-cased texts, computed once per event: the index probes and
    every case-insensitive string test of the same field share them. Hot callers read the cache ``lower``
    directly and call ``lowered`` only on a miss (``lower.get(path) or lowered(path)``).
    """

    __slots__ = ("native", "ecs", "_cache", "lower", "_keywords", "items", "memo")

    def __init__(self, native: dict[str, Any], ecs: dict[str, Any]) -> None:
        self.native = native
        self.ecs = ecs
        self._cache: dict[str, Values | None] = {}
        self.lower: dict[str, tuple[str, ...]] = {}
        self._keywords: Values | None = None
        self.items: dict[int, bool] = {}  # results of detection items shared by several rules
        self.memo: dict[Any, Any] | None = None  # other per-event results (e.g. matched fields per field list)

    def values(self, path: str) -> Values | None:
        found = self._cache.get(path, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[no-any-return]
        found = lookup(self.native, path)
        if found is None:
            found = lookup(self.ecs, path)
        self._cache[path] = found
        return found  # type: ignore[no-any-return]

    def lowered(self, path: str) -> tuple[str, ...]:
        """The field's values as lower-cased texts (see :func:`as_text`; nulls dropped, ``()`` if missing)."""
        texts = self.lower.get(path)
        if texts is not None:
            return texts
        value = self.native.get(path, _MISSING)
        if value is _MISSING and "." in path:
            parts = _SPLITS.get(path)
            if parts is None:
                parts = _SPLITS.setdefault(path, path.split("."))
            value = self.native
            for part in parts:  # plain nested objects, as in lookup()
                if type(value) is not dict:
                    value = _MISSING
                    break
                value = value.get(part, _MISSING)
        if type(value) is str:  # the common case: one native string
            texts = self.lower[path] = (value.lower(),)
            return texts
        values = self.values(path)
        if values is None:
            texts = ()
        elif len(values) == 1 and type(values[0]) is str:
            texts = (values[0].lower(),)
        else:
            texts = tuple(t.lower() for t in map(as_text, values) if t is not None)
        self.lower[path] = texts
        return texts

    def keyword_values(self) -> Values:
        """Every string (and number) anywhere in the event, for field-less keyword searches."""
        if self._keywords is None:
            out: list[str] = []
            _collect_scalars(self.native, out)
            _collect_scalars(self.ecs, out)
            self._keywords = tuple(out)
        return self._keywords
