"""Sigma strings: ``*`` and ``?`` wildcards, backslash escaping (already resolved by pySigma), case folding.

pySigma parses a rule string into parts: plain text and ``SpecialChars`` wildcards (``\\*`` is a literal star,
``\\\\`` a literal backslash, a backslash before anything else stays a backslash). A group of OR-linked strings
compiles into one :class:`StringMatcher` that checks a value with set lookups and ``str.startswith`` tuples,
falling back to a single RE2 expression only for patterns with inner wildcards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import re2
from sigma.types import Placeholder, SigmaString, SpecialChars

from siem.errors import RuleError

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


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
        contains = contains_tester(tuple(self.substrings))
        regex = compile_re2("(?s)(?:" + "|".join(self.patterns) + ")") if self.patterns else None
        fullmatch = re2_tester(regex, anchored=True) if regex is not None else None
        kinds = [kind for kind in (exact, prefixes, suffixes, contains, fullmatch) if kind]
        if len(kinds) == 1:  # one kind of test (a ``contains`` or ``startswith`` item): no dispatch per text
            if prefixes:
                return lambda text: text.startswith(prefixes)
            if suffixes:
                return lambda text: text.endswith(suffixes)
            return exact.__contains__ if exact else contains or fullmatch

        def test(text: str) -> bool:
            if text in exact:
                return True
            if prefixes and text.startswith(prefixes):
                return True
            if suffixes and text.endswith(suffixes):
                return True
            if contains is not None and contains(text):
                return True
            return fullmatch is not None and fullmatch(text)

        return test

    @property
    def empty(self) -> bool:
        return not (self.match_all or self.exact or self.prefixes or self.suffixes or self.substrings or self.patterns)


ScalarTest = Any  # Callable[[str], bool]; Any keeps mypy quiet about lambdas vs closures


def loop_limit(needles: int) -> float:
    """Up to which text length ``needles`` ``in`` tests cost less than one RE2 search for all of them.

    Measured (CPython 3.11, google-re2 1.1): one ``needle in text`` costs about 45 ns + 0.53 ns per character,
    one RE2 call about 1050 ns + 1.7 ns per character. So a loop always wins for up to 3 needles, never for 24 or
    more, and in between on texts shorter than the break-even length (10 needles: 167 characters).
    """
    fixed = 1050 - 45 * needles
    per_char = 0.53 * needles - 1.7
    if per_char <= 0:
        return math.inf
    return max(fixed, 0) / per_char


def contains_tester(needles: tuple[str, ...]) -> ScalarTest | None:
    """``text -> bool``: does the text contain one of ``needles``? (``None`` without needles.)"""
    if not needles:
        return None
    limit = loop_limit(len(needles))
    search = None
    if limit != math.inf:
        search = re2_tester(compile_re2("|".join(re2_escape(n) for n in needles)), anchored=False)

    def test(text: str) -> bool:
        if search is not None and len(text) > limit:
            try:
                return search(text)
            except UnicodeEncodeError:  # a lone surrogate has no UTF-8 for RE2: the loop still answers
                pass
        for needle in needles:
            if needle in text:
                return True
        return False

    return test


def plain_value(value: SigmaString) -> str | None:
    """The literal text of a wildcard-free string (used for index keys), else ``None``."""
    parts = value.s
    if len(parts) == 1 and isinstance(parts[0], str):
        return parts[0]
    if not parts:
        return ""
    return None
