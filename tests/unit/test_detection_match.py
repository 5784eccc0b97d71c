"""``Match`` and the residual predicates: lazy ``matched_fields`` equal the eager ones, and the tests the index
has already made are dropped only when they are implied."""

from __future__ import annotations

import random
from typing import Any

from correlation.detection.alerts import build_alert
from correlation.detection.compiler import always
from correlation.detection.engine import Match, RuleSet
from correlation.detection.fields import EventView
from parsers.base import ParsedEvent
from tests.unit.test_detection_index import _random_event, _random_rules, _rule


def _eager(fields: tuple[str, ...], native: dict[str, Any]) -> dict[str, Any]:
    """``matched_fields`` as it was computed for every match before it became lazy."""
    view = EventView(native, {})
    out: dict[str, Any] = {}
    for name in fields:
        values = view.values(name)
        if values is not None:
            out[name] = values[0] if len(values) == 1 else list(values)
    return out


def test_lazy_matched_fields_equal_eager_ones():
    rng = random.Random(11)
    rule_set = RuleSet(_random_rules(rng, 200))
    seen = 0
    for _ in range(300):
        native = _random_event(rng)
        if rng.random() < 0.2:
            native["userIdentity.type"] = "Root"  # a flat key with a dot in it
        matches = rule_set.match(ParsedEvent("e", "aws.cloudtrail", {}, native))
        for found in matches:
            assert found.matched_fields == _eager(found.rule.fields, native)
            assert found.matched_fields is found.matched_fields  # computed once, then kept
            seen += 1
        dicts = [found.matched_fields for found in matches]
        assert len({id(d) for d in dicts}) == len(dicts)  # each match owns its dict
    assert seen > 100


def test_match_with_explicit_fields_and_alerts_read_lazy_ones():
    rule = _rule(1, "    sel:\n        eventName: CreateUser\n    condition: sel\n")
    event = ParsedEvent("e1", "aws.cloudtrail", {}, {"eventName": "CreateUser"})
    given = Match(rule, event, {"x": 1})
    assert given.matched_fields == {"x": 1}
    (found,) = RuleSet([rule]).match(event)
    assert found.rule is rule and found.event is event
    assert found == Match(rule, event, {"eventName": "CreateUser"})
    assert build_alert(found, "idx")["siem"]["matched_fields"] == {"eventName": "CreateUser"}
    assert Match(rule, event).matched_fields == {"eventName": "CreateUser"}  # no view: built on demand


def _route(rule_set: RuleSet, position: int) -> Any:
    return rule_set._routes["aws.cloudtrail"][1][position][1]


def test_index_implied_literals_are_not_tested_again():
    both = _rule(
        1,
        "    sel:\n        eventName: [CreateUser, DeleteUser]\n        eventSource: iam.amazonaws.com\n"
        "    condition: sel\n",
    )
    either = _rule(
        2, "    a:\n        eventName: CreateUser\n    b:\n        eventName: DeleteUser\n    condition: a or b\n"
    )
    narrower = _rule(
        3,
        "    a:\n        eventName: [CreateUser, DeleteUser]\n    b:\n        eventName: CreateUser\n"
        "    condition: a and b\n",
    )
    rest = _rule(4, "    sel:\n        eventName: CreateUser\n        userAgent|contains: boto\n    condition: sel\n")
    rule_set = RuleSet([both, either, narrower, rest])
    assert _route(rule_set, 0) is always
    assert _route(rule_set, 1) is either.predicate  # OR: no single item is implied
    assert _route(rule_set, 2) not in (always, narrower.predicate)  # "b" is not implied by eventName in {a, b}
    assert _route(rule_set, 3) not in (always, rest.predicate)
    for name in ("CreateUser", "deleteuser", "GetObject", None):
        for agent in ("Boto3/1.0", "console", None):
            native = {"eventName": name, "eventSource": "iam.amazonaws.com", "userAgent": agent}
            event = ParsedEvent("e", "aws.cloudtrail", {}, native)
            got = [m.rule.rule_id for m in rule_set.match(event)]
            want = [r.rule_id for r in rule_set.rules if r.predicate(EventView(native, {}))]
            assert got == want, native
