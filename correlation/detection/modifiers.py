"""One small compiler per kind of Sigma value, registered in :data:`VALUE_COMPILERS`.

pySigma applies a rule's modifiers while parsing: ``contains``/``startswith``/``endswith`` become wildcards,
``base64``/``utf16*``/``wide`` re-encode the string, ``base64offset``/``windash`` produce an expansion, ``re``,
``cidr``, ``lt``..``gte``, ``minute``..``year``, ``exists``, ``fieldref`` and ``cased`` produce their own value
types, ``all`` and ``neq`` change how the item combines its values. Each class below turns one of those value
types into a test of the values a field resolved to (``None`` = field missing).
"""

from __future__ import annotations

import math
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import import_module
from ipaddress import ip_address
from typing import Any, ClassVar

from sigma.types import (
    CompareOperators,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SigmaType,
    TimestampPart,
)

from correlation.detection.fields import EventView, Values, as_text
from correlation.detection.values import StringMatcher, compile_re2, re2_tester
from siem.errors import RuleError

ValuesTest = Callable[[EventView, Values | None], bool]


@dataclass(slots=True)
class RuleStats:
    """Per-rule counters kept across events (matching never raises; failures are counted here). Slotted: updated
    at every evaluation."""

    evaluations: int = 0
    matches: int = 0
    failures: int = 0


def as_number(value: Any) -> float | None:
    """Numbers and numeric strings compare numerically; booleans and other values do not."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def any_value(test: Callable[[Any], bool]) -> ValuesTest:
    def run(view: EventView, values: Values | None) -> bool:
        if values is None:
            return False
        for value in values:
            if test(value):
                return True
        return False

    return run


def string_test(matcher: StringMatcher) -> ValuesTest:
    test = matcher.build()
    cased = matcher.cased

    def scalar(value: Any) -> bool:
        text = as_text(value)
        if text is None:
            return False
        return bool(test(text if cased else text.lower()))

    return any_value(scalar)


class ValueCompiler(ABC):
    handles: ClassVar[type[SigmaType]]

    def __init__(self, stats: RuleStats) -> None:
        self.stats = stats

    @abstractmethod
    def compile(self, value: Any) -> ValuesTest: ...


class StringCompiler(ValueCompiler):
    handles = SigmaString

    def compile(self, value: Any) -> ValuesTest:
        matcher = StringMatcher(cased=isinstance(value, SigmaCasedString))
        matcher.add(value)
        return string_test(matcher)


class CasedStringCompiler(StringCompiler):
    handles = SigmaCasedString


class NumberCompiler(ValueCompiler):
    """A number matches equal numbers and numeric strings (``404`` matches ``"404"``)."""

    handles = SigmaNumber

    def compile(self, value: Any) -> ValuesTest:
        wanted = float(value.number)
        return any_value(lambda v: as_number(v) == wanted)


class BoolCompiler(ValueCompiler):
    handles = SigmaBool

    def compile(self, value: Any) -> ValuesTest:
        wanted = bool(value.boolean)
        text = "true" if wanted else "false"
        return any_value(lambda v: v is wanted or (isinstance(v, str) and v.lower() == text))


class NullCompiler(ValueCompiler):
    """``field: null`` holds when the field is missing or null; ``''`` is a value, not null."""

    handles = SigmaNull

    def compile(self, value: Any) -> ValuesTest:
        return lambda view, values: values is None or all(v is None for v in values)


class ExistsCompiler(ValueCompiler):
    handles = SigmaExists

    def compile(self, value: Any) -> ValuesTest:
        wanted = bool(value.exists)
        return lambda view, values: (values is not None and any(v is not None for v in values)) == wanted


class RegexCompiler(ValueCompiler):
    """``re`` with ``i``/``m``/``s`` flags; RE2 search (unanchored), case-sensitive unless ``i``."""

    handles = SigmaRegularExpression
    flag_letters: ClassVar[dict[SigmaRegularExpressionFlag, str]] = {
        SigmaRegularExpressionFlag.IGNORECASE: "i",
        SigmaRegularExpressionFlag.MULTILINE: "m",
        SigmaRegularExpressionFlag.DOTALL: "s",
    }

    def compile(self, value: Any) -> ValuesTest:
        search = regex_tester(value)
        stats = self.stats

        def scalar(v: Any) -> bool:
            text = as_text(v)
            if text is None:
                return False
            try:
                return search(text)
            except Exception:  # noqa: BLE001 - a broken regex must not stop the stream
                stats.failures += 1
                return False

        return any_value(scalar)


def regex_tester(value: SigmaRegularExpression) -> Callable[[str], bool]:
    """``text -> bool`` for a Sigma ``re`` value: RE2 search (unanchored) with its ``i``/``m``/``s`` flags.

    A call into RE2 costs about a microsecond however short the text: texts that lack a literal every match
    contains are rejected before it (``:assumed-role/[^/]+/i-...`` needs both ``:assumed-role/`` and ``/i-``).
    """
    flags = "".join(sorted(RegexCompiler.flag_letters[f] for f in value.flags))
    pattern = str(value.regexp)
    search = re2_tester(compile_re2(f"(?{flags}){pattern}" if flags else pattern), anchored=False)
    needles = () if "i" in flags else required_substrings(pattern)
    if not needles:
        return search
    first = needles[0]
    if len(needles) == 1:
        return lambda text: first in text and search(text)
    second = needles[1]  # two tests reject nearly all that more would
    return lambda text: first in text and second in text and search(text)


_RE_PARSER: Any = import_module("re._parser")  # Python's regex parser, only to find required literals
_LITERAL: Any = import_module("re._constants").LITERAL


def required_substrings(pattern: str) -> tuple[str, ...]:
    """Literal texts every match of a case-sensitive ``pattern`` contains, longest first (``()`` if none is known).

    Only runs of plain literals on the top level of the pattern count (a concatenation: each must appear);
    groups, alternations, repeats and classes end a run. Patterns Python's parser reads differently from RE2
    (or cannot read), and patterns with flags, yield none.
    """
    if "[:" in pattern:  # RE2's POSIX classes ([[:alpha:]]) read as something else by Python
        return ()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = _RE_PARSER.parse(pattern)
    except Exception:  # noqa: BLE001 - RE2 syntax Python does not know: no pre-filter
        return ()
    if parsed.state.flags & ~re.UNICODE:
        return ()
    runs: list[str] = []
    run: list[str] = []
    for op, argument in [*parsed, (None, None)]:
        if op is _LITERAL:
            run.append(chr(argument))
        elif run:
            runs.append("".join(run))
            run = []
    return tuple(sorted(dict.fromkeys(runs), key=len, reverse=True))


def cidr_test(networks: tuple[Any, ...]) -> ValuesTest:
    """A value matches when it is the text of an address in one of ``networks``."""

    def scalar(v: Any) -> bool:
        if not isinstance(v, str):
            return False
        try:
            address = ip_address(v.strip())
        except ValueError:
            return False
        for network in networks:
            if address in network:
                return True
        return False

    return any_value(scalar)


class CIDRCompiler(ValueCompiler):
    handles = SigmaCIDRExpression

    def compile(self, value: Any) -> ValuesTest:
        return cidr_test((value.network,))


class CompareCompiler(ValueCompiler):
    handles = SigmaCompareExpression
    ops: ClassVar[dict[CompareOperators, Callable[[float, float], bool]]] = {
        CompareOperators.LT: lambda a, b: a < b,
        CompareOperators.LTE: lambda a, b: a <= b,
        CompareOperators.GT: lambda a, b: a > b,
        CompareOperators.GTE: lambda a, b: a >= b,
        CompareOperators.NEQ: lambda a, b: a != b,
    }

    def compile(self, value: Any) -> ValuesTest:
        op = self.ops[value.op]
        limit = float(value.number.number)

        def scalar(v: Any) -> bool:
            number = as_number(v)
            return number is not None and op(number, limit)

        return any_value(scalar)


def as_datetime(value: Any) -> datetime | None:
    """ISO-8601 strings and epoch numbers (seconds, or milliseconds when large) as UTC datetimes."""
    try:
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip())
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        number = as_number(value)
        if number is None:
            return None
        if number > 1e11:
            number /= 1000.0
        return datetime.fromtimestamp(number, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


class TimestampPartCompiler(ValueCompiler):
    handles = SigmaTimestampPart
    parts: ClassVar[dict[TimestampPart, Callable[[datetime], int]]] = {
        TimestampPart.MINUTE: lambda d: d.minute,
        TimestampPart.HOUR: lambda d: d.hour,
        TimestampPart.DAY: lambda d: d.day,
        TimestampPart.WEEK: lambda d: d.isocalendar().week,
        TimestampPart.MONTH: lambda d: d.month,
        TimestampPart.YEAR: lambda d: d.year,
    }

    def compile(self, value: Any) -> ValuesTest:
        part = self.parts[value.timestamp_part]
        wanted = int(value.number)

        def scalar(v: Any) -> bool:
            moment = as_datetime(v)
            return moment is not None and part(moment) == wanted

        return any_value(scalar)


class FieldRefCompiler(ValueCompiler):
    """``fieldref``: equal to (or, with contains/startswith/endswith, containing) another field's value."""

    handles = SigmaFieldReference

    def compile(self, value: Any) -> ValuesTest:
        other = str(value.field)
        starts, ends = bool(value.starts_with), bool(value.ends_with)

        def compare(text: str, ref: str) -> bool:
            if starts and ends:
                return ref in text
            if starts:
                return text.startswith(ref)
            if ends:
                return text.endswith(ref)
            return text == ref

        def run(view: EventView, values: Values | None) -> bool:
            refs = view.values(other)
            if values is None or refs is None:
                return False
            ref_texts = [t.lower() for t in map(as_text, refs) if t is not None]
            for v in values:
                text = as_text(v)
                if text is not None and any(compare(text.lower(), r) for r in ref_texts):
                    return True
            return False

        return run


class ExpansionCompiler(ValueCompiler):
    """``base64offset``/``windash`` variants: any of them."""

    handles = SigmaExpansion

    def compile(self, value: Any) -> ValuesTest:
        tests = [compile_value(v, self.stats) for v in value.values]
        return lambda view, values: any(t(view, values) for t in tests)


VALUE_COMPILERS: dict[type[SigmaType], type[ValueCompiler]] = {
    c.handles: c
    for c in (
        StringCompiler,
        CasedStringCompiler,
        NumberCompiler,
        TimestampPartCompiler,
        BoolCompiler,
        NullCompiler,
        ExistsCompiler,
        RegexCompiler,
        CIDRCompiler,
        CompareCompiler,
        FieldRefCompiler,
        ExpansionCompiler,
    )
}


def compile_value(value: SigmaType, stats: RuleStats) -> ValuesTest:
    for cls in type(value).__mro__:
        compiler = VALUE_COMPILERS.get(cls)
        if compiler is not None:
            return compiler(stats).compile(value)
    raise RuleError(f"unsupported value type {type(value).__name__} ({value})")


def register_spec_modifiers() -> None:
    """Modifier names of Sigma spec v2.1 that pySigma 1.5 lacks, as aliases of its own classes.

    ``utf16le`` is the spec's name for ``wide`` (UTF-16 little endian without BOM).
    """
    from sigma.modifiers import SigmaWideModifier, modifier_mapping, reverse_modifier_mapping

    modifier_mapping.setdefault("utf16le", SigmaWideModifier)
    reverse_modifier_mapping.setdefault(SigmaWideModifier.__name__, "wide")


register_spec_modifiers()
