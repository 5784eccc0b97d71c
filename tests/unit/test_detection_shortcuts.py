"""Evaluation shortcuts give exactly what the plain tests give: regex literal pre-filters, ``contains`` needles
tested in a loop or by RE2, single-kind string matchers, one address parse for several networks, and index
positions from fields with several values."""

from __future__ import annotations

import random

import pytest
from sigma.types import SigmaRegularExpression, SigmaString

from correlation.detection.engine import RuleSet
from correlation.detection.fields import EventView
from correlation.detection.modifiers import regex_tester, required_substrings
from correlation.detection.values import StringMatcher, compile_re2, contains_tester, loop_limit
from parsers.base import ParsedEvent
from tests.unit.test_detection_index import _rule
from tests.unit.test_detection_semantics import matches, sel

ARN_PATTERN = ":assumed-role/[^/]+/i-[0-9a-f]{8,17}$"


@pytest.mark.parametrize(
    ("pattern", "needles"),
    [
        (ARN_PATTERN, (":assumed-role/", "/i-")),
        ("^\\*$", ("*",)),
        ("ab?cd", ("cd", "a")),
        ("x(y|z)x", ("x",)),  # one run twice: one needle
        ("(?i)abc", ()),
        ("a|b", ()),
    ],
)
def test_required_substrings(pattern, needles):
    assert required_substrings(pattern) == needles


def _random_text(rng: random.Random, alphabet: list[str]) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


@pytest.mark.parametrize(
    ("pattern", "example"),
    [
        (ARN_PATTERN, "arn:aws:sts::1:assumed-role/r/i-0123456789abcdef"),
        ("ab?cd", "xacd"),
        ("a.b/c", "a-b/c"),
        ("^x-[0-9]+y$", "x-12y"),
        ('"(P|A)"\\s*:\\s*"\\*"', '{"A": "*"}'),
        ("é+x/y", "ééx/y"),
        ("(?s)a.b", "a\nb"),
    ],
)
def test_regex_prefilter_never_rejects_a_match(pattern, example):
    rng = random.Random(3)
    regex = compile_re2(pattern)
    test = regex_tester(SigmaRegularExpression(pattern))
    fragments = [":assumed-role/", "/i-", "0123456789abcdef", "a", "b", "x", "y", "-", "/", "é", "\n", '"', ":", "*"]
    found = 0
    for _ in range(3000):
        # Random texts, the example in them, and the example with one character dropped (near misses).
        cut = rng.randrange(len(example))
        inserted = rng.choice([example, example[:cut] + example[cut + 1 :], ""])
        text = _random_text(rng, fragments)
        at = rng.randint(0, len(text))
        text = text[:at] + inserted + text[at:] if rng.random() < 0.5 else inserted
        expected = regex.search(text) is not None
        assert test(text) == expected, (pattern, text)
        found += expected
    assert 100 < found < 2900  # both outcomes are exercised


def test_contains_loop_and_re2_agree_on_short_and_long_texts():
    rng = random.Random(4)
    letters = list("abcdé.*?\\|()") + ["\n"]
    for count in (1, 3, 5, 10, 16, 30):
        needles = tuple({_random_text(rng, letters) or "a" for _ in range(count)})
        test = contains_tester(needles)
        limit = loop_limit(len(needles))
        for _ in range(300):
            # Texts on both sides of the length where the loop hands over to RE2.
            text = "".join(rng.choice(letters) for _ in range(rng.randint(0, 2 * int(min(limit, 300)) + 20)))
            assert test is not None and test(text) == any(n in text for n in needles), (needles, text)
    assert contains_tester(()) is None


def _matcher(values: list[str]) -> StringMatcher:
    matcher = StringMatcher()
    for value in values:
        matcher.add(SigmaString(value))
    return matcher


def test_single_kind_matchers_equal_the_general_one():
    rng = random.Random(5)
    kinds = [["abc"], ["ab*", "b*"], ["*bc", "*c"], ["*b*"], ["*a*", "*b*", "*c*", "*d*", "*e*", "*f*", "*g*"], ["*"]]
    for values in kinds:
        test = _matcher(values).build()
        # "n?v*" (never matched: no "n" in the texts) adds an RE2 pattern, so the general test is built.
        general = _matcher([*values, "n?v*"]).build()
        for _ in range(200):
            text = _random_text(rng, list("abcdefg"))
            assert bool(test(text)) == bool(general(text)), (values, text)


def test_several_networks_parse_the_address_once_and_match_like_one_each():
    d = sel("ip|cidr:\n    - '10.0.0.0/8'\n    - '192.168.0.0/16'\n    - '2001:db8::/32'")
    for ip, expected in [
        ("10.1.2.3", True),
        ("192.168.1.1", True),
        ("2001:db8::1", True),
        ("11.1.2.3", False),
        (" 10.0.0.1 ", True),
        ("not an ip", False),
        ("::1", False),
    ]:
        assert matches(d, {"ip": ip}) is expected, ip
    assert matches(d, {"ip": ["8.8.8.8", "192.168.0.7"]})
    assert not matches(d, {"ip": 10})  # not a text


def test_positions_from_a_field_with_several_values_are_unique():
    either = _rule(1, "    sel:\n        eventName: [CreateUser, DeleteUser]\n    condition: sel\n")
    both = _rule(
        2, "    sel:\n        eventName: [CreateUser, DeleteUser]\n        eventSource: [a, b]\n    condition: sel\n"
    )
    rule_set = RuleSet([either, both])
    native = {"eventName": ["CreateUser", "DeleteUser", "createuser"], "eventSource": ["a", "b"]}
    view = EventView(native, {})
    assert list(rule_set._indexes["aws.cloudtrail"].positions(view)) == [0, 1]
    assert view.multivalued
    found = rule_set.match(ParsedEvent("e", "aws.cloudtrail", {}, native))
    assert [m.rule.rule_id for m in found] == [either.rule_id, both.rule_id]
    assert found[1].matched_fields == {"eventName": native["eventName"], "eventSource": ["a", "b"]}
