"""The two-level rule index and the evaluation shortcuts give exactly what checking every rule gives."""

from __future__ import annotations

import random
from typing import Any

import pytest
import re2
from sigma.rule import SigmaRule

from correlation.detection.engine import RuleSet
from correlation.detection.fields import EventView
from correlation.detection.loader import compile_rule
from correlation.detection.modifiers import required_substrings
from correlation.detection.values import compile_re2, re2_tester
from parsers.base import ParsedEvent

NAMES = ["CreateUser", "DeleteUser", "ConsoleLogin", "PutBucketPolicy", "GetObject", "RunInstances"]
SOURCES = ["iam.amazonaws.com", "s3.amazonaws.com", "ec2.amazonaws.com", "signin.amazonaws.com"]
TYPES = ["Root", "IAMUser", "AssumedRole"]


def _rule(number: int, detection: str) -> Any:
    text = (
        f"title: r{number}\nid: 5d8d7a1e-8a4b-4c53-9d8e-{number:012d}\nstatus: test\n"
        "logsource:\n    product: aws\n    service: cloudtrail\ndetection:\n" + detection
    )
    return compile_rule(SigmaRule.from_yaml(text), {}, ["aws.cloudtrail"])


def _values(rng: random.Random, pool: list[str]) -> str:
    chosen = rng.sample(pool, rng.randint(1, 2))
    return "[" + ", ".join(f"'{v}'" for v in chosen) + "]"


def _random_rules(rng: random.Random, count: int) -> list[Any]:
    rules = []
    for number in range(count):
        kind = number % 7
        if kind == 0:  # eventName + eventSource: second level
            body = (
                f"    sel:\n        eventName: {_values(rng, NAMES)}\n"
                f"        eventSource: {_values(rng, SOURCES)}\n    condition: sel\n"
            )
        elif kind == 1:  # eventName only
            body = f"    sel:\n        eventName: {_values(rng, NAMES)}\n    condition: sel\n"
        elif kind == 2:  # two selections, OR: literals of both
            body = (
                f"    a:\n        eventName: {_values(rng, NAMES)}\n        eventSource: '{rng.choice(SOURCES)}'\n"
                f"    b:\n        eventName: '{rng.choice(NAMES)}'\n        eventSource: '{rng.choice(SOURCES)}'\n"
                "    condition: a or b\n"
            )
        elif kind == 3:  # dotted field, with a filter
            body = (
                f"    sel:\n        userIdentity.type: '{rng.choice(TYPES)}'\n"
                f"    filter:\n        eventSource: '{rng.choice(SOURCES)}'\n    condition: sel and not filter\n"
            )
        elif kind == 4:  # regular expression only: gated
            body = "    sel:\n        userIdentity.arn|re: '.+:assumed-role/[a-z]+:.+'\n    condition: sel\n"
        elif kind == 5:  # numbers only: gated
            body = "    sel:\n        errorCode: [401, 403]\n    condition: sel\n"
        else:  # nothing to index
            body = f"    sel:\n        eventName: '{rng.choice(NAMES)}'\n    condition: not sel\n"
        rules.append(_rule(number, body))
    return rules


def _random_event(rng: random.Random) -> dict[str, Any]:
    event: dict[str, Any] = {}
    if rng.random() < 0.9:
        name = rng.choice(NAMES)
        event["eventName"] = name.lower() if rng.random() < 0.2 else name
    if rng.random() < 0.1:
        event["eventName"] = [rng.choice(NAMES), rng.choice(NAMES)]
    if rng.random() < 0.9:
        event["eventSource"] = rng.choice(SOURCES)
    if rng.random() < 0.7:
        event["userIdentity"] = {
            "type": rng.choice(TYPES),
            "arn": rng.choice(["arn:aws:sts::1:assumed-role/admin:x", "arn:aws:iam::1:user/bob", 7]),
        }
    if rng.random() < 0.5:
        event["errorCode"] = rng.choice([401, "403", "403.0", 404, True, None, " 401 "])
    return event


def test_index_equals_brute_force_on_random_rules_and_events():
    rng = random.Random(7)
    rule_set = RuleSet(_random_rules(rng, 300))
    index = rule_set._indexes["aws.cloudtrail"]
    assert any(seconds for by_value in index.buckets.values() for _, seconds in by_value.values())
    assert index.numeric and index._gated and index.unindexed  # number buckets, gates, unconstrained rules
    evaluated = 0
    for _ in range(400):
        native = _random_event(rng)
        event = ParsedEvent("e", "aws.cloudtrail", {}, native)
        got = [m.rule.rule_id for m in rule_set.match(event)]
        want = [r.rule_id for r in rule_set.rules if r.predicate(EventView(native, {}))]
        assert got == want  # same rules, in load order
        evaluated += len(index.positions(EventView(native, {})))
    assert evaluated < 400 * len(rule_set.rules) / 2  # the index does skip rules


@pytest.mark.parametrize(
    ("pattern", "needle"),
    [
        (".+:assumed-role/aws:.+", ":assumed-role/aws:"),
        ("abc|abd", "ab"),
        ("ab?cd", "cd"),
        ("a(bc)d", "a"),
        ("(?i)abc", ""),
        ("[[:alpha:]]x", ""),
        ("\\Qab\\E", ""),
        ("x\\.y", "x.y"),
    ],
)
def test_regex_prefilter_literal_is_required(pattern, needle):
    assert (*required_substrings(pattern), "")[0] == needle  # the longest


@pytest.mark.parametrize("pattern", [".+:assumed-role/aws:.+", "^a$", "(?i)ab.c", "é+x", "(?s)a.b"])
def test_re2_tester_agrees_with_re2(pattern):
    regex = compile_re2(pattern)
    for text in ["arn:aws:sts::1:assumed-role/aws:x", "a", "ba", "a\n", "xxABxC", "ééx", "a\nb", ""]:
        assert re2_tester(regex, anchored=False)(text) == (regex.search(text) is not None)
        assert re2_tester(regex, anchored=True)(text) == (regex.fullmatch(text) is not None)
    assert re2.compile("x")  # the public API stays available as the fallback


def test_number_items_match_like_numbers():
    rule = _rule(1, "    sel:\n        code: [401, 403]\n    condition: sel\n")
    for value, expected in [
        (401, True),
        ("403", True),
        (" 401 ", True),
        ("401.0", True),
        (403.0, True),
        (True, False),
        (None, False),
        ("abc", False),
        ([1, 401], True),
        (2**53 + 1, False),
    ]:
        assert bool(rule.predicate(EventView({"code": value}, {}))) is expected, value
    big = _rule(2, f"    sel:\n        code: {2**53}\n    condition: sel\n")
    assert big.predicate(EventView({"code": 2**53 + 1}, {}))  # as float, like the value compiler
