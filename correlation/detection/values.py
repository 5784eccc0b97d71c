"""Sigma strings: ``*`` and ``?`` wildcards, backslash escaping (already resolved by pySigma), case folding.

pySigma parses a rule string into parts: plain text and ``SpecialChars`` wildcards (``\\*`` is a literal star,
``\\\\`` a literal backslash, a backslash before anything else stays a backslash). A group of OR-linked strings
compiles into one :class:`StringMatcher` that checks a value with set lookups and ``str.startswith`` tuples,
falling back to a single RE2 expression only for patterns with inner wildcards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import re2
from sigma.types import Placeholder, SigmaString, SpecialChars

from siem.errors import RuleError

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False
_MANY_SUBSTRINGS = 6  # above this many ``contains`` needles, one RE2 alternation beats a Python loop


def compile_re2(pattern: str) -> Any:
    """Compile with RE2 (linear time, no backtracking); unsupported syntax becomes a :class:`RuleError`."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        raise RuleError(f"regular expression {pattern!r} is not supported by RE2: {exc}") from None


def re2_tester(regex: Any, anchored: bool) -> Callable[[str], bool]:
    """``text -> bool``: does ``regex`` match (``anchored``: all of the text; else anywhere in it)?

    Calls the compiled RE2 object directly when the ``re2`` module exposes it: its ``search``/``fullmatch``
    build match objects and byte/character offset maps, several times the cost of the boolean answer.
    """
    raw = getattr(regex, "_regexp", None)
    anchors = getattr(re2, "_Anchor", None)
    if raw is None or anchors is None or not hasattr(raw, "Match") or not hasattr(anchors, "ANCHOR_BOTH"):
        method = regex.fullmatch if anchored else regex.search
        return lambda text: method(text) is not None
    anchor = anchors.ANCHOR_BOTH if anchored else anchors.UNANCHORED
    match = raw.Match
    null_span = (-1, -1)

    def test(text: str) -> bool:
        encoded = text.encode("utf-8")
        return bool(match(anchor, encoded, 0, len(encoded))[0] != null_span)

    return test


def parts_of(value: SigmaString) -> list[str | SpecialChars]:
    parts: list[str | SpecialChars] = []
    for part in value.s:
        if isinstance(part, Placeholder):
            raise RuleError(f"unresolved placeholder %{part.name}% (add it to rules.placeholders)")
        parts.append(part)
    return parts


def re2_escape(text: str) -> str:
    """Escape for RE2: ASCII punctuation gets a backslash, control characters and spaces a hex escape."""
    out: list[str] = []
    for char in text:
        code = ord(char)
        if char.isalnum() or char == "_" or code > 127:
            out.append(char)
        elif code <= 32 or code == 127:
            out.append(f"\\x{{{code:02x}}}")
        else:
            out.append("\\" + char)
    return "".join(out)


def wildcard_regex(parts: Iterable[str | SpecialChars], lower: bool) -> str:
    out: list[str] = []
    for part in parts:
        if part is SpecialChars.WILDCARD_MULTI:
            out.append(".*")
        elif part is SpecialChars.WILDCARD_SINGLE:
            out.append(".")
        else:
            text = str(part)
            out.append(re2_escape(text.lower() if lower else text))
    return "".join(out)


@dataclass
class StringMatcher:
    """OR of Sigma strings, matched case-insensitively unless ``cased``."""

    cased: bool = False
    exact: set[str] = field(default_factory=set)
    prefixes: list[str] = field(default_factory=list)
    suffixes: list[str] = field(default_factory=list)
    substrings: list[str] = field(default_factory=list)
    patterns: list[str] = field(default_factory=list)
    match_all: bool = False  # a lone ``*``: any non-null value

    def add(self, value: SigmaString) -> None:
        parts = parts_of(value)
        fold = (lambda s: s) if self.cased else str.lower
        star = SpecialChars.WILDCARD_MULTI
        inner = parts[1:-1] if len(parts) >= 2 else []
        plain_inner = all(isinstance(p, str) for p in inner)
        if not parts:
            self.exact.add("")
        elif all(p is star for p in parts):
            self.match_all = True
        elif len(parts) == 1 and isinstance(parts[0], str):
            self.exact.add(fold(parts[0]))
        elif len(parts) == 2 and isinstance(parts[0], str) and parts[1] is star:
            self.prefixes.append(fold(parts[0]))
        elif len(parts) == 2 and parts[0] is star and isinstance(parts[1], str):
            self.suffixes.append(fold(parts[1]))
        elif len(parts) == 3 and parts[0] is star and parts[2] is star and plain_inner:
            self.substrings.append(fold(str(parts[1])))
        else:
            self.patterns.append(wildcard_regex(parts, lower=not self.cased))

    def build(self) -> ScalarTest:
        """A function of one text (already folded by the caller when not cased)."""
        if self.match_all:
            return lambda text: True
        exact = frozenset(self.exact)
        prefixes = tuple(self.prefixes)
        suffixes = tuple(self.suffixes)
        substrings = tuple(self.substrings)
        alternatives = list(self.patterns)
        if len(substrings) > _MANY_SUBSTRINGS:
            alternatives.extend(".*" + re2_escape(s) + ".*" for s in substrings)
            substrings = ()
        regex = compile_re2("(?s)(?:" + "|".join(alternatives) + ")") if alternatives else None
        fullmatch = re2_tester(regex, anchored=True) if regex is not None else None

        def test(text: str) -> bool:
            if text in exact:
                return True
            if prefixes and text.startswith(prefixes):
                return True
            if suffixes and text.endswith(suffixes):
                return True
            for needle in substrings:
                if needle in text:
                    return True
            return fullmatch is not None and fullmatch(text)

        return test

    @property
    def empty(self) -> bool:
        return not (self.match_all or self.exact or self.prefixes or self.suffixes or self.substrings
                    or self.patterns)


ScalarTest = Any  # Callable[[str], bool]; Any keeps mypy quiet about lambdas vs closures


def plain_value(value: SigmaString) -> str | None:
    """The literal text of a wildcard-free string (used for index keys), else ``None``."""
    parts = value.s
    if len(parts) == 1 and isinstance(parts[0], str):
        return parts[0]
    if not parts:
        return ""
    return None
