"""Each correlation type, aliases and chained correlations, with exact expected outputs."""

from __future__ import annotations

import pytest

from correlation.windows.aggregate import percentile
from correlation.windows.engine import CorrelationEngine
from correlation.windows.messages import match_id
from correlation.windows.router import CorrelationRouter
from correlation.windows.rules import load_correlations_from_yaml
from siem.errors import RuleError

RULE_A = """
title: Rule A
id: 11111111-1111-1111-1111-111111111111
name: rule_a
logsource: {product: test}
detection: {sel: {x: 1}, condition: sel}
"""
RULE_B = """
title: Rule B
id: 22222222-2222-2222-2222-222222222222
name: rule_b
logsource: {product: test}
detection: {sel: {x: 2}, condition: sel}
"""
IDS = {"rule_a": "11111111-1111-1111-1111-111111111111", "rule_b": "22222222-2222-2222-2222-222222222222"}


def build(correlations: str, lateness_ms: int = 0):
    collection_text = correlations + "\n---\n" + RULE_A + "\n---\n" + RULE_B
    _, compiled = load_correlations_from_yaml(collection_text)
    router = CorrelationRouter(compiled)
    engine = CorrelationEngine(compiled, allowed_lateness_ms=lateness_ms, router=router, timer_resolution_ms=1)
    return compiled, router, engine


def corr(body: str, cid: str = "99999999-9999-9999-9999-999999999999", name: str = "c") -> str:
    return f"title: {name}\nid: {cid}\nname: {name}\nlevel: high\ncorrelation:\n{body}"


class Feeder:
    def __init__(self, router, engine):
        self.router, self.engine, self.n = router, engine, 0

    def __call__(self, rule: str, ts_s: int, **fields):
        self.n += 1
        out = []
        for inp in self.router.route(IDS[rule], rule, fields.get, ts_s * 1000, f"a{self.n}", f"e{self.n}"):
            out.extend(self.engine.process(inp))
        return out


def test_value_count_counts_distinct_values():
    compiled, router, engine = build(corr("""
    type: value_count
    rules: [rule_a]
    group-by: [host]
    timespan: 10s
    condition: {field: user, gte: 3}
"""))
    f = Feeder(router, engine)
    assert f("rule_a", 0, host="h", user="u1") + f("rule_a", 1, host="h", user="u1") == []
    assert f("rule_a", 2, host="h", user="u2") == []
    [m] = f("rule_a", 3, host="h", user="u3")
    assert (m.window_start_ms, m.aggregate, m.input_count) == (0, 3.0, 4)


def test_temporal_any_order():
    _, router, engine = build(corr("""
    type: temporal
    rules: [rule_a, rule_b]
    group-by: [host]
    timespan: 10s
"""))
    f = Feeder(router, engine)
    assert f("rule_b", 0, host="h") == []
    [m] = f("rule_a", 5, host="h")
    assert (m.window_start_ms, m.window_end_ms, m.aggregate) == (0, 5000, 2.0)
    assert m.rule_ids == (IDS["rule_b"], IDS["rule_a"])


def test_temporal_ordered_requires_order():
    _, router, engine = build(corr("""
    type: temporal_ordered
    rules: [rule_a, rule_b]
    group-by: [host]
    timespan: 10s
"""))
    f = Feeder(router, engine)
    assert f("rule_b", 0, host="h") + f("rule_a", 1, host="h") == []
    [m] = f("rule_b", 2, host="h")
    assert (m.window_start_ms, m.window_end_ms, m.input_count) == (0, 2000, 3)
    assert f("rule_a", 20, host="h") + f("rule_b", 31, host="h") == []  # 11 s apart: outside timespan


def test_extended_condition_absence_decided_on_timer():
    compiled, router, engine = build(corr("""
    type: temporal
    group-by: [host]
    timespan: 10s
    condition: rule_a and not rule_b
"""))
    f = Feeder(router, engine)
    assert f("rule_a", 0, host="h1") + f("rule_a", 0, host="h2") + f("rule_b", 3, host="h2") == []
    matches = engine.advance(10_001)
    assert [(m.group_key, m.window_start_ms, m.decided_ms) for m in matches] == [(("h1",), 0, 10_000)]
    assert matches[0].id == match_id(compiled[0].id, ("h1",), 0)


@pytest.mark.parametrize(
    ("ctype", "extra", "values", "expected"),
    [
        ("value_sum", "gt: 100", [30, 40, 50], 120.0),
        ("value_avg", "gte: 40", [30, 40, 50], 40.0),
        ("value_median", "gte: 40", [30, 40, 50], 40.0),
        ("value_percentile", "percentile: 90\n        gte: 48", [30, 40, 50], 48.0),
    ],
)
def test_numeric_value_types(ctype, extra, values, expected):
    _, router, engine = build(corr(f"""
    type: {ctype}
    rules: [rule_a]
    group-by: [host]
    timespan: 10s
    condition:
        field: bytes
        {extra}
"""))
    f = Feeder(router, engine)
    out = []
    for i, value in enumerate(values):
        out.extend(f("rule_a", i, host="h", bytes=str(value)))
    assert [(m.aggregate, m.input_count) for m in out] == [(expected, 3)]
    assert f("rule_a", 4, host="h", bytes="not a number") == []
    assert router.skipped_missing_field == 1


def test_percentile_interpolates():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([7.0], 99) == 7.0


def test_aliases_group_different_fields():
    _, router, engine = build(corr("""
    type: temporal
    rules: [rule_a, rule_b]
    group-by: [internal_ip]
    timespan: 10s
    aliases:
        internal_ip:
            rule_a: destination.ip
            rule_b: source.ip
"""))
    f = Feeder(router, engine)
    assert f("rule_a", 0, **{"destination.ip": "10.1.1.1", "source.ip": "8.8.8.8"}) == []
    [m] = f("rule_b", 1, **{"source.ip": "10.1.1.1", "destination.ip": "9.9.9.9"})
    assert m.group_fields == (("internal_ip", "10.1.1.1"),)


def test_chained_correlation_feeds_parent():
    text = corr("""
    type: temporal_ordered
    rules: [many_failed, rule_b]
    group-by: [user]
    timespan: 1m
""", cid="aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa", name="failed_then_success") + "\n---\n" + corr("""
    type: event_count
    rules: [rule_a]
    group-by: [user]
    timespan: 1m
    condition: {gte: 3}
""", cid="bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb", name="many_failed")
    compiled, router, engine = build(text)
    f = Feeder(router, engine)
    assert f("rule_b", 0, user="u") == []  # success before the failures: no order match
    out = f("rule_a", 1, user="u") + f("rule_a", 2, user="u") + f("rule_a", 3, user="u")
    assert [m.correlation_id for m in out] == ["bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"]
    [parent] = f("rule_b", 10, user="u")
    assert parent.correlation_id == "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
    # the trailing window holds the early rule_b alert, the child's match (as an input) and the new alert
    assert parent.alert_ids == ("a1", out[0].id, "a5")
    assert (parent.window_start_ms, parent.window_end_ms) == (0, 10_000)
    assert engine.stats.chained_inputs == 1


def test_invalid_correlation_is_a_rule_error():
    with pytest.raises(RuleError):
        load_correlations_from_yaml(corr("""
    type: event_count
    rules: [missing_rule]
    group-by: [user]
    timespan: 1m
    condition: {gte: 3}
"""))
