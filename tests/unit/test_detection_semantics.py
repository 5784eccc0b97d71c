"""Sigma semantics of the detection engine, mostly with the specification's own examples."""

from __future__ import annotations

from typing import Any

import pytest
from sigma.rule import SigmaRule

from correlation.detection.fields import EventView
from correlation.detection.loader import compile_rule
from siem.errors import RuleError


def rule_from(detection: str, placeholders: dict[str, list[str]] | None = None):
    text = (
        "title: t\nid: 5d8d7a1e-8a4b-4c53-9d8e-1f0b1f2c3d4e\nstatus: test\n"
        "logsource:\n    product: aws\n    service: cloudtrail\ndetection:\n" + detection
    )
    return compile_rule(SigmaRule.from_yaml(text), placeholders or {}, ["aws.cloudtrail"])


def matches(detection: str, event: dict[str, Any], ecs: dict[str, Any] | None = None, **kw: Any) -> bool:
    return bool(rule_from(detection, **kw).predicate(EventView(event, ecs or {})))


def sel(body: str, condition: str = "selection") -> str:
    lines = "".join(f"        {line}\n" for line in body.strip("\n").splitlines())
    return f"    selection:\n{lines}    condition: {condition}\n"


# --- strings, case, wildcards, escaping -------------------------------------------------------------------


def test_plain_string_is_case_insensitive_exact_match():
    d = sel("Image: 'C:\\Windows\\System32\\cmd.exe'")
    assert matches(d, {"Image": "c:\\windows\\system32\\CMD.EXE"})
    assert not matches(d, {"Image": "C:\\Windows\\System32\\cmd.exe.bak"})


def test_wildcards_star_and_question_mark():
    d = sel("Image: '*\\cmd.e?e'")
    assert matches(d, {"Image": "C:\\x\\cmd.exe"})
    assert matches(d, {"Image": "\\cmd.eXe"})
    assert not matches(d, {"Image": "C:\\x\\cmd.exxe"})


def test_escaped_wildcard_is_literal():
    d = sel("Field: 'a\\*b'")
    assert matches(d, {"Field": "a*b"})
    assert not matches(d, {"Field": "aXb"})


def test_backslash_before_wildcard_escapes_it():
    # spec: "\\*" is a literal star, so this value has no wildcard at all
    d = sel("Field: 'C:\\Windows\\*'")
    assert matches(d, {"Field": "c:\\windows*"})
    assert not matches(d, {"Field": "c:\\windows\\system32"})


def test_double_backslash_then_wildcard():
    # spec: '\\*' is a literal backslash followed by a wildcard
    d = sel("Field: 'a\\\\*'")
    assert matches(d, {"Field": "a\\anything"})
    assert not matches(d, {"Field": "aXanything"})


def test_contains_startswith_endswith():
    assert matches(sel("F|contains: 'mid'"), {"F": "xxMIDxx"})
    assert matches(sel("F|startswith: 'pre'"), {"F": "prefix"})
    assert not matches(sel("F|startswith: 'pre'"), {"F": "xprefix"})
    assert matches(sel("F|endswith: 'fix'"), {"F": "prefix"})
    assert not matches(sel("F|endswith: 'fix'"), {"F": "fixed"})


def test_cased_modifier():
    d = sel("F|cased: 'CaseSensitive'")
    assert matches(d, {"F": "CaseSensitive"})
    assert not matches(d, {"F": "casesensitive"})


def test_list_values_or_and_all_modifier():
    d = sel("F|contains:\n    - 'a1'\n    - 'b2'")
    assert matches(d, {"F": "xxb2"})
    d_all = sel("F|contains|all:\n    - 'a1'\n    - 'b2'")
    assert not matches(d_all, {"F": "xxb2"})
    assert matches(d_all, {"F": "b2 a1"})


def test_map_is_and():
    d = sel("A: 1\nB: 'x'")
    assert matches(d, {"A": 1, "B": "x"})
    assert not matches(d, {"A": 1, "B": "y"})


def test_list_of_maps_is_or():
    d = "    selection:\n        - A: 'x'\n        - B: 'y'\n    condition: selection\n"
    assert matches(d, {"B": "y"})
    assert not matches(d, {"A": "y"})


# --- numbers, null, empty, exists ---------------------------------------------------------------------------


def test_numbers_match_numeric_strings_and_back():
    assert matches(sel("Code: 404"), {"Code": "404"})
    assert matches(sel("Code: 404"), {"Code": 404})
    assert matches(sel("Code: '404'"), {"Code": 404})
    assert not matches(sel("Code: 404"), {"Code": "4040"})


def test_null_matches_missing_or_null_but_not_empty():
    d = sel("F: null")
    assert matches(d, {})
    assert matches(d, {"F": None})
    assert not matches(d, {"F": ""})


def test_empty_string_matches_only_empty():
    d = sel("F: ''")
    assert matches(d, {"F": ""})
    assert not matches(d, {})
    assert not matches(d, {"F": None})


def test_exists():
    assert matches(sel("F|exists: true"), {"F": ""})
    assert not matches(sel("F|exists: true"), {})
    assert matches(sel("F|exists: false"), {})
    assert not matches(sel("F|exists: false"), {"F": "x"})


def test_neq():
    d = sel("F|neq: 'x'")
    assert matches(d, {"F": "y"})
    assert not matches(d, {"F": "X"})


def test_booleans():
    assert matches(sel("F: true"), {"F": True})
    assert matches(sel("F: true"), {"F": "true"})
    assert not matches(sel("F: true"), {"F": False})


# --- encodings ---------------------------------------------------------------------------------------------


def test_base64_and_base64offset():
    import base64

    assert matches(sel("F|base64: 'http://'"), {"F": base64.b64encode(b"http://").decode()})
    d = sel("F|base64offset|contains: 'http://'")
    for prefix in (b"", b"a", b"ab"):
        encoded = base64.b64encode(prefix + b"http://evil").decode()
        assert matches(d, {"F": "xx" + encoded}), prefix


def test_utf16_wide():
    import base64

    wide = "cmd".encode("utf-16le").decode("latin-1")
    assert matches(sel("F|wide: 'cmd'"), {"F": wide})
    d = sel("F|wide|base64offset|contains: 'ping'")
    encoded = base64.b64encode("ping 1.1.1.1".encode("utf-16le")).decode()
    assert matches(d, {"F": encoded})
    assert matches(sel("F|utf16be: 'a'"), {"F": "\x00a"})
    assert matches(sel("F|utf16le: 'a'"), {"F": "a\x00"})
    assert matches(sel("F|utf16: 'a'"), {"F": "\ufeffa\x00"})  # pySigma writes the BOM as U+FEFF


def test_windash():
    d = sel("CommandLine|windash|contains: ' -param'")
    assert matches(d, {"CommandLine": "tool /param"})
    assert matches(d, {"CommandLine": "tool \u2013param"})
    assert matches(d, {"CommandLine": "tool -param"})
    assert not matches(d, {"CommandLine": "tool +param"})


# --- regex, numbers, time, cidr -----------------------------------------------------------------------------


def test_regex_default_case_sensitive_and_flags():
    assert matches(sel("F|re: 'ab+c'"), {"F": "xxabbbcxx"})
    assert not matches(sel("F|re: 'ABC'"), {"F": "abc"})
    assert matches(sel("F|re|i: 'ABC'"), {"F": "abc"})
    assert matches(sel("F|re|m: '^b$'"), {"F": "a\nb\nc"})
    assert not matches(sel("F|re: '^b$'"), {"F": "a\nb\nc"})
    assert matches(sel("F|re|s: 'a.b'"), {"F": "a\nb"})
    assert not matches(sel("F|re: 'a.b'"), {"F": "a\nb"})


def test_regex_backtracking_construct_rejected_not_hung():
    with pytest.raises(RuleError):
        rule_from(sel("F|re: '(?=a)b'"))
    d = sel("F|re: '(a+)+$'")
    assert matches(d, {"F": "a" * 5000 + "!"}) is not None


def test_numeric_comparisons():
    assert matches(sel("F|gt: 5"), {"F": 6})
    assert matches(sel("F|gte: 5"), {"F": "5"})
    assert not matches(sel("F|lt: 5"), {"F": 5})
    assert matches(sel("F|lte: 5"), {"F": 4.5})
    assert not matches(sel("F|gt: 5"), {"F": "abc"})


def test_timestamp_parts():
    event = {"T": "2024-03-05T14:37:00Z"}
    assert matches(sel("T|minute: 37"), event)
    assert matches(sel("T|hour: 14"), event)
    assert matches(sel("T|day: 5"), event)
    assert matches(sel("T|week: 10"), event)
    assert matches(sel("T|month: 3"), event)
    assert matches(sel("T|year: 2024"), event)
    assert not matches(sel("T|hour: 15"), event)


def test_cidr_v4_and_v6():
    assert matches(sel("ip|cidr: '10.0.0.0/8'"), {"ip": "10.1.2.3"})
    assert not matches(sel("ip|cidr: '10.0.0.0/8'"), {"ip": "11.1.2.3"})
    assert matches(sel("ip|cidr: '2001:db8::/32'"), {"ip": "2001:db8::1"})
    assert not matches(sel("ip|cidr: '2001:db8::/32'"), {"ip": "not an ip"})


def test_expand_placeholders():
    d = sel("ip|expand: '%admin_ips%'")
    assert matches(d, {"ip": "10.0.0.2"}, placeholders={"admin_ips": ["10.0.0.1", "10.0.0.2"]})
    with pytest.raises(RuleError, match="placeholder"):
        rule_from(d)


def test_fieldref():
    assert matches(sel("a|fieldref: b"), {"a": "X", "b": "x"})
    assert not matches(sel("a|fieldref: b"), {"a": "x", "b": "y"})
    assert matches(sel("a|fieldref|contains: b"), {"a": "arn:aws:iam::1:user/bob", "b": "bob"})
    assert not matches(sel("a|fieldref: b"), {"a": "x"})


# --- keywords, nested fields, objects -----------------------------------------------------------------------


def test_keywords_search_every_string_of_the_event():
    d = "    keywords:\n        - 'Cannot run program'\n        - 'ProcessBuilder'\n    condition: keywords\n"
    assert matches(d, {"message": 'java.io.IOException: cannot run program "sh"'})
    assert matches(d, {}, ecs={"error": {"stack": ["at java.lang.ProcessBuilder.start"]}})
    assert not matches(d, {"message": "all good"})


def test_keyword_all():
    d = "    keywords:\n        '|all':\n            - 'a1'\n            - 'b2'\n    condition: keywords\n"
    assert matches(d, {"x": "a1", "y": "b2"})
    assert not matches(d, {"x": "a1"})


def test_nested_paths_through_dicts_and_lists():
    event = {"requestObject": {"spec": {"volumes": [{"name": "a"}, {"name": "b", "hostPath": {"path": "/"}}]}}}
    assert matches(sel("requestObject.spec.volumes.name: 'b'"), event)
    assert matches(sel("requestObject.spec.volumes.hostPath: '*'"), event)
    assert not matches(sel("requestObject.spec.volumes.hostPath.path: '/etc'"), event)


def test_flat_dotted_key():
    assert matches(sel("responseElements.ConsoleLogin: 'Success'"), {"responseElements.ConsoleLogin": "Success"})


def test_object_matches_as_json_text():
    event = {"requestParameters": {"VersioningConfiguration": {"Status": "Suspended"}}}
    assert matches(sel("requestParameters|contains: 'Suspended'"), event)
    assert matches(sel('requestParameters|contains: \'"Status":"Suspended"\''), event)


def test_native_first_then_ecs():
    assert matches(sel("source.ip: '1.2.3.4'"), {}, ecs={"source": {"ip": "1.2.3.4"}})
    assert matches(sel("eventName: 'X'"), {"eventName": "X"}, ecs={"eventName": "Y"})


# --- conditions -----------------------------------------------------------------------------------------------


def _detections(condition: str) -> str:
    return (
        "    sel_a:\n        A: 'a'\n    sel_b:\n        B: 'b'\n    _private:\n        C: 'c'\n"
        "    filter:\n        D: 'd'\n"
        f"    condition: {condition}\n"
    )


@pytest.mark.parametrize(
    ("condition", "event", "expected"),
    [
        ("sel_a and not filter", {"A": "a"}, True),
        ("sel_a and not filter", {"A": "a", "D": "d"}, False),
        ("1 of sel_*", {"B": "b"}, True),
        ("all of sel_*", {"B": "b"}, False),
        ("all of sel_*", {"A": "a", "B": "b"}, True),
        ("all of them", {"A": "a", "B": "b", "D": "d"}, True),  # _private is skipped by "them"
        ("1 of them", {"C": "c"}, False),
        ("(sel_a or sel_b) and not filter", {"B": "b"}, True),
        ("not (sel_a or sel_b)", {"B": "b"}, False),
        ("sel_a or sel_b and filter", {"A": "a"}, True),  # and binds tighter than or
        ("any of sel_*", {"A": "a"}, True),
        ("_private", {"C": "c"}, True),
    ],
)
def test_conditions(condition, event, expected):
    assert matches(_detections(condition), event) is expected


def test_condition_list_is_or():
    d = "    a:\n        A: 'a'\n    b:\n        B: 'b'\n    condition:\n        - a\n        - b\n"
    assert matches(d, {"B": "b"})
    assert not matches(d, {"C": "c"})


def test_undefined_identifier_rejected():
    with pytest.raises(RuleError):
        rule_from(sel("A: 'a'", condition="selection and nope"))


def test_shared_item_cache_distinguishes_timestamp_parts():
    d = "    a:\n        T|minute: 5\n    b:\n        T|hour: 5\n    condition: a and b\n"
    assert not matches(d, {"T": "2024-01-01T07:05:00Z"})
    assert matches(d, {"T": "2024-01-01T05:05:00Z"})
