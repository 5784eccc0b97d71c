"""Hot-path shortcuts in ids, limits, common and the CloudTrail builder agree with their plain definitions."""

from __future__ import annotations

from hashlib import blake2b
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parsers.base import ErrorType, SourceRecord
from parsers.cloudtrail import CloudTrailParser
from parsers.common import put
from parsers.ids import coordinate_id
from parsers.limits import InputRejected, _depth_exceeds, loads_json

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=30,
)


def _depth(node: Any) -> int:
    """Nesting depth as loads_json counts it: a container is one level, scalars none."""
    if isinstance(node, dict):
        return 1 + max((_depth(v) for v in node.values()), default=0)
    if isinstance(node, list):
        return 1 + max((_depth(v) for v in node), default=0)
    return 0


@given(
    topic=st.text(max_size=20),
    partition=st.integers(-1, 2**31),
    offset=st.integers(0, 2**63),
    index=st.integers(0, 10_000),
)
def test_coordinate_id_is_the_hash_of_the_coordinates(topic: str, partition: int, offset: int, index: int) -> None:
    expected = blake2b(f"{topic}\x00{partition}\x00{offset}\x00{index}".encode(), digest_size=16).hexdigest()
    assert coordinate_id(topic, partition, offset, index) == expected
    assert coordinate_id(topic, partition, offset, index) == expected  # second call: from the per-partition state


@settings(max_examples=300)
@given(node=JSON, max_depth=st.integers(1, 6))
def test_depth_walk_matches_the_recursive_definition(node: Any, max_depth: int) -> None:
    assert _depth_exceeds(node, max_depth) == (_depth(node) > max_depth)


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
@pytest.mark.parametrize("levels", [8, 9])
def test_depth_limit_with_and_without_square_brackets(opener: bytes, levels: int) -> None:
    closer = b"]" if opener == b"[" else b"}"
    raw = (
        b'{"eventName": "x", "pad": "'
        + b" " * 40
        + b'", "a": '
        + opener * (levels - 1)
        + b"1"
        + closer * (levels - 1)
        + b"}"
    )
    if levels > 8:
        with pytest.raises(InputRejected) as info:
            loads_json(raw, 8)
        assert info.value.error_type == ErrorType.TOO_DEEP
    else:
        assert loads_json(raw, 8)["eventName"] == "x"


@pytest.mark.parametrize("value", [None, "", [], {}, 0, 0.0, False, True, "x", [0], {"a": None}])
def test_put_drops_exactly_nulls_and_empties(value: Any) -> None:
    target: dict[str, Any] = {}
    put(target, "k", value)
    kept = value is not None and value != "" and value != [] and value != {}
    assert ("k" in target) == kept


def test_targets_are_still_found_behind_the_key_precheck() -> None:
    rec = {
        "eventName": "AddUserToGroup",
        "eventSource": "iam.amazonaws.com",
        "eventTime": "2024-05-01T10:00:00Z",
        "requestParameters": {"userName": "bob", "groupName": "admins"},
        "responseElements": {"user": {"userId": "AIDA1"}},
    }
    (event,) = CloudTrailParser().parse(SourceRecord("t", 0, 0, orjson.dumps(rec))).events
    assert event.ecs["user"]["target"] == {"name": "bob", "id": "AIDA1"}
    assert event.ecs["group"] == {"name": "admins"}
    rec["requestParameters"] = {"roleName": "r"}
    (event,) = CloudTrailParser().parse(SourceRecord("t", 0, 0, orjson.dumps(rec))).events
    assert event.ecs["user"]["target"] == {"id": "AIDA1"} and "group" not in event.ecs
