"""Sigma detections -> predicates over an :class:`EventView`.

A detection item tests one field (or, without a field, every string of the event) against its values: OR by
default, AND with ``|all``, negated with ``|neq``. A detection map ANDs its items, a list of maps ORs them.
Case-insensitive plain strings of one OR item are merged into a single :class:`StringMatcher`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, cast
from weakref import WeakKeyDictionary

from sigma.conditions import ConditionAND
from sigma.rule import SigmaDetection, SigmaDetectionItem
from sigma.types import (
    Placeholder,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaExpansion,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SigmaType,
    SpecialChars,
)

from correlation.detection.fields import EventView, Values, as_text
from correlation.detection.modifiers import (
    RuleStats,
    ValuesTest,
    as_number,
    cidr_test,
    compile_value,
    regex_tester,
    string_test,
)
from correlation.detection.values import StringMatcher, plain_value
from siem.errors import RuleError

Predicate = Callable[[EventView], bool]


def resolve_placeholders(values: list[SigmaType], placeholders: dict[str, list[str]]) -> list[SigmaType]:
    """``|expand``: replace ``%name%`` with the configured values (OR); an unknown name rejects the rule."""

    def callback(placeholder: Placeholder) -> Iterator[SigmaString]:
        try:
            replacements = placeholders[placeholder.name]
        except KeyError:
            raise RuleError(f"unresolved placeholder %{placeholder.name}% (set rules.placeholders)") from None
        for text in replacements:
            yield SigmaString(text)

    out: list[SigmaType] = []
    for value in values:
        if isinstance(value, (SigmaString, SigmaRegularExpression)) and value.contains_placeholder():
            out.extend(value.replace_placeholders(callback))
        else:
            out.append(value)
    return out


def _flatten(values: list[SigmaType]) -> list[SigmaType]:
    out: list[SigmaType] = []
    for value in values:
        if isinstance(value, SigmaExpansion):
            out.extend(_flatten(list(value.values)))
        else:
            out.append(value)
    return out


def _or_matchers(values: list[SigmaType], stats: RuleStats) -> tuple[StringMatcher, StringMatcher, list[ValuesTest]]:
    """OR-linked values: plain case-insensitive strings share one matcher, cased ones another, networks one test
    (an address is parsed once, not once per network), the rest compile one by one."""
    merged = StringMatcher()
    cased = StringMatcher(cased=True)
    tests: list[ValuesTest] = []
    networks: list[Any] = []
    for value in _flatten(values):
        if isinstance(value, SigmaCasedString):
            cased.add(value)
        elif type(value) is SigmaString:
            merged.add(value)
        elif isinstance(value, SigmaCIDRExpression):
            networks.append(value.network)
        else:
            tests.append(compile_value(value, stats))
    if networks:
        tests.append(cidr_test(tuple(networks)))
    return merged, cased, tests


def _or_tests(values: list[SigmaType], stats: RuleStats) -> list[ValuesTest]:
    merged, cased, tests = _or_matchers(values, stats)
    for matcher in (merged, cased):
        if not matcher.empty:
            tests.insert(0, string_test(matcher))
    return tests


def number_of(value: object) -> float | None:
    """The number a value compares as (see ``as_number``)."""
    kind = type(value)  # exactly int / float: bool is not a number here
    return float(value) if kind is int else value if kind is float else as_number(value)  # type: ignore[arg-type,return-value]


def _number_item(path: str, wanted: frozenset[float], negated: bool) -> Predicate:
    """OR of numbers: a value matches when it is (or its text parses as) one of them, as ``NumberCompiler``."""

    def evaluate(view: EventView) -> bool:
        values = view.values(path)
        if values is not None:
            for value in values:
                number = number_of(value)
                if number is not None and number in wanted:
                    return not negated
        return negated

    return evaluate


def _regex_item(path: str, testers: list[Callable[[str], bool]], negated: bool, stats: RuleStats) -> Predicate:
    """OR of regular expressions on one field (as ``RegexCompiler``, without its per-value layers)."""

    def evaluate(view: EventView) -> bool:
        values = view.values(path)
        if values is None:
            return negated
        for value in values:
            text = value if type(value) is str else as_text(value)
            if text is None:
                continue
            for test in testers:
                try:
                    if test(text):
                        return not negated
                except Exception:  # noqa: BLE001 - a broken regex must not stop the stream
                    stats.failures += 1
        return negated

    return evaluate


_CHEAP_SUBSTRINGS = 3  # up to this many ``contains`` needles, testing again costs less than a shared result


def _lowered_item(path: str, matcher: StringMatcher, negated: bool) -> tuple[Predicate, bool]:
    """An item of case-insensitive strings only, tested on the event's cached lower-cased texts of ``path``.

    Returns (predicate, cheap): exact literals become a set test, prefixes, suffixes and a few substrings a few
    string operations, cheaper than caching their result; regular expressions (inner wildcards) are not.
    """
    if matcher.exact and not (
        matcher.match_all or matcher.prefixes or matcher.suffixes or matcher.substrings or matcher.patterns
    ):
        # ``view.lower.get(path) or view.lowered(path)``: the cached texts without a call when present.
        exact = frozenset(matcher.exact)
        if negated:
            if len(exact) == 1:
                (literal,) = exact
                return (lambda view: literal not in (view.lower.get(path) or view.lowered(path))), True
            return (lambda view: exact.isdisjoint(view.lower.get(path) or view.lowered(path))), True
        predicate: Predicate
        if len(exact) == 1:
            (literal,) = exact
            predicate = lambda view: literal in (view.lower.get(path) or view.lowered(path))  # noqa: E731
        else:
            predicate = lambda view: not exact.isdisjoint(view.lower.get(path) or view.lowered(path))  # noqa: E731
        LITERAL_ITEMS[predicate] = (path, exact)
        return predicate, True
    test = matcher.build()

    def evaluate(view: EventView) -> bool:
        for text in view.lower.get(path) or view.lowered(path):
            if test(text):
                return not negated
        return negated

    return evaluate, not matcher.patterns and len(matcher.substrings) <= _CHEAP_SUBSTRINGS


def _keyword_values(view: EventView) -> Values | None:
    return view.keyword_values() or None


def _item_values(item: SigmaDetectionItem, placeholders: dict[str, list[str]]) -> list[SigmaType]:
    values = resolve_placeholders(list(item.value), placeholders)
    if item.field is None:
        # Field-less values are full-text searches: a plain string matches anywhere inside a string value.
        values = [_as_keyword(v) for v in values]
    return values


def compile_item(item: SigmaDetectionItem, stats: RuleStats, placeholders: dict[str, list[str]]) -> Predicate:
    values = _item_values(item, placeholders)
    field = item.field
    linking_all = item.value_linking is ConditionAND
    negated = bool(item.negated)
    slot = _item_slot(field, linking_all, negated, values)
    if field is not None and not linking_all:
        fast = _fast_item(field, values, negated, slot, stats)
        if fast is not None:
            return fast
    if linking_all:
        tests = [compile_value(v, stats) for v in values]
    else:
        tests = _or_tests(values, stats)
    if not tests:
        raise RuleError(f"detection item {field or '(keywords)'} has no values")
    get: Callable[[EventView], Values | None]
    if field is None:
        get = _keyword_values
    else:
        path = field

        def get(view: EventView) -> Values | None:
            return view.values(path)

    combine = all if linking_all else any
    if len(tests) == 1:
        only = tests[0]

        def evaluate(view: EventView) -> bool:
            return only(view, get(view)) != negated

    else:

        def evaluate(view: EventView) -> bool:
            found = get(view)
            return combine(t(view, found) for t in tests) != negated

    return _shared(slot, evaluate)


def _fast_item(field: str, values: list[SigmaType], negated: bool, slot: int, stats: RuleStats) -> Predicate | None:
    """OR items of one kind of value (numbers, regular expressions, case-insensitive strings), evaluated with
    fewer layers; ``None`` for anything else."""
    flat = _flatten(values)
    if flat and all(type(v) is SigmaNumber for v in flat):
        numbers = frozenset(float(cast(SigmaNumber, v).number) for v in flat)
        evaluate = _number_item(field, numbers, negated)
        GATES.setdefault(slot, evaluate)
        if not negated:
            NUMBER_GATES.setdefault(slot, (field, numbers))
        return evaluate
    if flat and all(type(v) is SigmaRegularExpression for v in flat):
        testers = [regex_tester(cast(SigmaRegularExpression, v)) for v in flat]
        return _shared(slot, _regex_item(field, testers, negated, stats))
    merged, cased, others = _or_matchers(values, stats)
    if not merged.empty and cased.empty and not others:
        evaluate, cheap = _lowered_item(field, merged, negated)
        if cheap:
            GATES.setdefault(slot, evaluate)
            return evaluate
        return _shared(slot, evaluate)
    return None


def _shared(slot: int, evaluate: Predicate) -> Predicate:
    def shared(view: EventView) -> bool:
        # Rules often repeat an item (same field, same values): evaluate it once per event.
        cache = view.items
        result = cache.get(slot)
        if result is None:
            result = cache[slot] = evaluate(view)
        return result

    GATES.setdefault(slot, shared)
    return shared


# slot -> shared predicate of a detection item; the index uses them as gates for rules without literals.
GATES: dict[int, Predicate] = {}
# slot -> (field, numbers) of gates that are "field equals one of these numbers": the index files them by number.
NUMBER_GATES: dict[int, tuple[str, frozenset[float]]] = {}


def required_slots(detection: SigmaDetection | SigmaDetectionItem, placeholders: dict[str, list[str]]) -> list[int]:
    """Slots of detection items that must hold for ``detection`` to hold (AND-linked, positive)."""
    if isinstance(detection, SigmaDetectionItem):
        values = _item_values(detection, placeholders)
        linking_all = detection.value_linking is ConditionAND
        return [_item_slot(detection.field, linking_all, bool(detection.negated), values)]
    if len(detection.detection_items) == 1 or detection.item_linking is ConditionAND:
        return [s for d in detection.detection_items for s in required_slots(d, placeholders)]
    return []


_SLOTS: dict[str, int] = {}


def _item_slot(field: str | None, linking_all: bool, negated: bool, values: list[SigmaType]) -> int:
    described = [(type(v).__name__, repr(v), repr(getattr(v, "timestamp_part", None))) for v in values]
    key = repr((field, linking_all, negated, described))
    slot = _SLOTS.get(key)
    if slot is None:
        slot = _SLOTS.setdefault(key, len(_SLOTS))
    return slot


def _as_keyword(value: SigmaType) -> SigmaType:
    if isinstance(value, SigmaString) and not value.contains_placeholder():
        star = SpecialChars.WILDCARD_MULTI
        if not value.startswith(star):
            value = star + value
        if not value.endswith(star):
            value = value + star
    return value


def compile_detection(
    detection: SigmaDetection | SigmaDetectionItem, stats: RuleStats, placeholders: dict[str, list[str]]
) -> Predicate:
    if isinstance(detection, SigmaDetectionItem):
        return compile_item(detection, stats, placeholders)
    parts = [compile_detection(d, stats, placeholders) for d in detection.detection_items]
    return combine(parts, detection.item_linking is ConditionAND)


_COMBINERS: dict[tuple[int, bool], Callable[..., Predicate]] = {}
_INLINE_LIMIT = 16  # up to this many parts, one generated ``p0(v) and p1(v) ...`` function


# Structure the index may use to drop tests it has already made (see :func:`residual`): predicates of items
# "field (lower-cased) equals one of these literals", and the parts of AND combinations.
LITERAL_ITEMS: WeakKeyDictionary[Predicate, tuple[str, frozenset[str]]] = WeakKeyDictionary()
CONJUNCTIONS: WeakKeyDictionary[Predicate, tuple[Predicate, ...]] = WeakKeyDictionary()


def always(view: EventView) -> bool:
    """The residual of a predicate whose every test the index has already made."""
    return True


def residual(predicate: Predicate, known: dict[str, frozenset[str]]) -> Predicate:
    """``predicate`` without the AND-linked literal items that hold whenever, for each ``field -> literals`` of
    ``known``, one of the event's lower-cased values of the field is one of ``literals`` (what an index bucket
    guarantees). An item is dropped only when its own literals include all of ``known[field]``; everything else
    (OR, NOT, other items) is kept as compiled. Returns :func:`always` if nothing is left to test."""
    item = LITERAL_ITEMS.get(predicate)
    if item is not None:
        field, literals = item
        wanted = known.get(field)
        return always if wanted is not None and wanted <= literals else predicate
    parts = CONJUNCTIONS.get(predicate)
    if parts is None:
        return predicate
    left = [r for r in (residual(p, known) for p in parts) if r is not always]
    if len(left) == len(parts) and all(a is b for a, b in zip(left, parts, strict=True)):
        return predicate
    return combine(left, conjunction=True) if left else always


def combine(parts: list[Predicate], conjunction: bool) -> Predicate:
    """AND / OR of predicates (see :func:`_combine`); AND combinations remember their parts for :func:`residual`."""
    combined = _combine(parts, conjunction)
    if conjunction and len(parts) > 1:
        CONJUNCTIONS[combined] = tuple(parts)
    return combined


def _combine(parts: list[Predicate], conjunction: bool) -> Predicate:
    """AND / OR of predicates as one flat function (short-circuit, no generator per call).

    The function's source is generated from the number of parts only (``p0(v) and p1(v) ...``): no rule text
    ever goes into generated code.
    """
    if len(parts) == 1:
        return parts[0]
    if len(parts) > _INLINE_LIMIT:
        if conjunction:
            return lambda view: all(p(view) for p in parts)
        return lambda view: any(p(view) for p in parts)
    key = (len(parts), conjunction)
    factory = _COMBINERS.get(key)
    if factory is None:
        names = [f"p{i}" for i in range(len(parts))]
        joiner = " and " if conjunction else " or "
        source = (
            f"def make({', '.join(names)}):\n"
            f"    def predicate(v):\n"
            f"        return {joiner.join(f'{n}(v)' for n in names)}\n"
            f"    return predicate\n"
        )
        namespace: dict[str, Any] = {}
        exec(compile(source, f"<sigma combine {key}>", "exec"), namespace)  # noqa: S102 - generated from counts
        factory = _COMBINERS.setdefault(key, namespace["make"])
    return factory(*parts)


def required_literals(detection: SigmaDetection | SigmaDetectionItem) -> dict[str, frozenset[str]]:
    """Field -> lower-cased literals of which one must equal the field for any match of ``detection``.

    Only plain, wildcard-free, non-negated OR-linked strings count; anything else yields no constraint.
    """
    if isinstance(detection, SigmaDetectionItem):
        if detection.field is None or detection.negated or detection.value_linking is ConditionAND:
            return {}
        literals: set[str] = set()
        for value in detection.value:
            if not isinstance(value, SigmaString) or value.contains_placeholder():
                return {}
            text = plain_value(value)
            if text is None:
                return {}
            literals.add(text.lower())
        return {detection.field: frozenset(literals)} if literals else {}
    children = [required_literals(d) for d in detection.detection_items]
    return merge_constraints(children, detection.item_linking is ConditionAND)


def merge_constraints(children: list[dict[str, frozenset[str]]], conjunction: bool) -> dict[str, frozenset[str]]:
    if not children:
        return {}
    if conjunction:
        out: dict[str, frozenset[str]] = {}
        for child in children:
            for field, literals in child.items():
                # Same field twice under AND: keep the first (a list-valued field may hold both literals).
                out.setdefault(field, literals)
        return out
    common = set(children[0])
    for child in children[1:]:
        common &= set(child)
    return {field: frozenset().union(*(c[field] for c in children)) for field in common}
