"""Field lookup in an event: dotted paths through dicts and lists, native names first, then ECS.

An :class:`EventView` wraps one event for the duration of matching and caches every lookup, so twenty rules
testing ``eventName`` resolve it once.
"""

from __future__ import annotations

from typing import Any

import orjson

Values = tuple[Any, ...]  # the values a field path resolves to; ``None`` (not a tuple) means "missing"

_MISSING: Any = object()


class _Path:
    """A dotted path split once: its parts and, per level, the keys that may spell the rest of it.

    ``keys[start]`` lists ``(key, end)`` for every key ``".".join(parts[start:end])``, longest first, so a lookup
    never joins strings.
    """

    __slots__ = ("parts", "keys")

    def __init__(self, path: str) -> None:
        parts = self.parts = tuple(path.split("."))
        count = len(parts)
        self.keys = tuple(
            tuple((".".join(parts[start:end]), end) for end in range(count, start, -1)) for start in range(count)
        )


_PATHS: dict[str, _Path] = {}

Dotted = dict[int, bool]  # id of a dict of the event -> whether one of its keys contains a dot (per event)


def _path(path: str) -> _Path:
    found = _PATHS.get(path)
    if found is None:
        found = _PATHS.setdefault(path, _Path(path))
    return found


def _has_dotted_key(node: dict[Any, Any], dotted: Dotted) -> bool:
    """Whether a key of ``node`` contains a dot (and so may spell several parts of a path); computed once per dict
    of the event. Keys are JSON strings: the join is one C call; other keys fall back to a loop."""
    found = dotted.get(id(node))
    if found is None:
        try:
            found = "." in "".join(node)
        except TypeError:
            found = any(isinstance(key, str) and "." in key for key in node)
        dotted[id(node)] = found
    return found


def _walk(node: Any, path: _Path, start: int, out: list[Any], dotted: Dotted) -> None:
    """Collect the values at ``path.parts[start:]`` below ``node``; lists fan out (any element may match).

    A key may itself contain dots (``"responseElements.ConsoleLogin"`` stored flat), so every split of the
    remaining path is tried, longest key first; in a dict without dotted keys only the next part can be a key.
    """
    parts = path.parts
    if start == len(parts):
        if isinstance(node, list):
            out.extend(node)
        else:
            out.append(node)
        return
    if isinstance(node, list):
        for element in node:
            _walk(element, path, start, out, dotted)
        return
    if not isinstance(node, dict):
        return
    if not _has_dotted_key(node, dotted):
        child = node.get(parts[start], _MISSING)
        if child is not _MISSING:
            _walk(child, path, start + 1, out, dotted)
        return
    for key, end in path.keys[start]:
        child = node.get(key, _MISSING)
        if child is not _MISSING:
            _walk(child, path, end, out, dotted)


def _walked(node: Any, path: _Path, start: int, dotted: Dotted) -> Values | None:
    out: list[Any] = []
    _walk(node, path, start, out, dotted)
    return tuple(out) if out else None


def _resolve(document: dict[str, Any], path: _Path, dotted: Dotted) -> Values | None:
    """The general case, once plain nested objects did not lead to a value. Going down the parts again: while no
    dict on the way has dotted keys, the route is the only one, so a missing key or a scalar means "missing" and a
    list fans out from where it stands; a dict with dotted keys on the way needs every split, from the top."""
    node: Any = document
    depth = 0
    for part in path.parts:
        if type(node) is not dict and not isinstance(node, dict):
            return _walked(node, path, depth, dotted) if isinstance(node, list) else None
        if _has_dotted_key(node, dotted):
            return _walked(document, path, 0, dotted)
        node = node.get(part, _MISSING)
        if node is _MISSING:
            return None
        depth += 1
    return _walked(node, path, depth, dotted)


def lookup(document: dict[str, Any], path: str, dotted: Dotted | None = None) -> Values | None:
    """Values of ``path`` in ``document``, lists flattened; ``None`` if the field is absent or empty.

    ``dotted`` caches, for the lifetime of the event, which of its dicts have keys with dots (see
    :func:`_has_dotted_key`); the documents must not change while it is in use.
    """
    node = document.get(path, _MISSING)
    if node is _MISSING:
        if "." not in path:
            return None
        plan = _PATHS.get(path) or _path(path)
        if dotted is None:
            dotted = {}
        node = document
        for part in plan.parts:  # fast path: plain nested objects
            if type(node) is not dict:
                break
            child = node.get(part, _MISSING)
            if child is _MISSING:
                # "a.b" and "a" -> "b" are the only ways to spell a two-part path through objects; the first was
                # tried above, the second just now. A first part missing from a document known to have no dotted
                # keys (an ECS document asked for a native field) needs no second look either.
                if len(plan.parts) == 2 or (node is document and dotted.get(id(node)) is False):
                    return None
                break
            node = child
        else:
            return (node,) if type(node) is not list else tuple(node) if node else None
        # Lists on the way, keys with dots in them, or a missing field.
        return _resolve(document, plan, dotted)
    if type(node) is list:
        return tuple(node) if node else None
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


def _lowered_texts(values: Values | None) -> tuple[str, ...]:
    if values is None:
        return ()
    if len(values) == 1:
        text = as_text(values[0])
        return () if text is None else (text.lower(),)
    return tuple(t.lower() for t in map(as_text, values) if t is not None)


class EventView:
    """One event as rules see it: ``native`` fields, then ``ecs`` fields, with per-event caching.

    ``lowered`` keeps each field's values as lower-cased texts, computed once per event: the index probes and
    every case-insensitive string test of the same field share them. Hot callers read the cache ``lower``
    directly and call ``lowered`` only on a miss (``lower.get(path) or lowered(path)``). ``multivalued`` tells
    whether a field resolved so far had several values (only then can the index find a rule twice).
    """

    __slots__ = ("native", "ecs", "_cache", "lower", "_keywords", "items", "memo", "_dotted", "multivalued")

    def __init__(self, native: dict[str, Any], ecs: dict[str, Any]) -> None:
        self.native = native
        self.ecs = ecs
        self._cache: dict[str, Values | None] = {}
        self.lower: dict[str, tuple[str, ...]] = {}
        self._keywords: Values | None = None
        self.items: dict[int, bool] = {}  # results of detection items shared by several rules
        self.memo: dict[Any, Any] | None = None  # other per-event results (e.g. matched fields per field list)
        self._dotted: Dotted = {}
        self.multivalued = False

    def values(self, path: str) -> Values | None:
        found = self._cache.get(path, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[no-any-return]
        found = lookup(self.native, path, self._dotted)
        if found is None:
            found = lookup(self.ecs, path, self._dotted)
        if found is not None and len(found) > 1:
            self.multivalued = True
        self._cache[path] = found
        return found  # type: ignore[no-any-return]

    def lowered(self, path: str) -> tuple[str, ...]:
        """The field's values as lower-cased texts (see :func:`as_text`; nulls dropped, ``()`` if missing)."""
        texts = self.lower.get(path)
        if texts is not None:
            return texts
        value = self.native.get(path, _MISSING)
        if value is _MISSING and "." in path:
            value = self.native
            for part in (_PATHS.get(path) or _path(path)).parts:  # plain nested objects, as in lookup()
                if type(value) is not dict:
                    value = _MISSING
                    break
                value = value.get(part, _MISSING)
        if type(value) is str:  # the common case: one native string
            texts = (value.lower(),)
        elif value is _MISSING or type(value) is list:
            texts = _lowered_texts(self.values(path))
        else:  # one native number, boolean, null or object: what ``values(path)`` resolves to
            text = as_text(value)
            texts = () if text is None else (text.lower(),)
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
