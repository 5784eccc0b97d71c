"""Field lookup: the pruned search for missing paths gives exactly what trying every split of the path gives."""

from __future__ import annotations

import random
from typing import Any

from correlation.detection.fields import EventView, as_text, lookup

_MISSING = object()


def _every_split(node: Any, parts: list[str], out: list[Any]) -> None:
    """The specification of the general case: every key that spells the next parts (longest first); lists fan
    out."""
    if not parts:
        out.extend(node) if isinstance(node, list) else out.append(node)
    elif isinstance(node, list):
        for element in node:
            _every_split(element, parts, out)
    elif isinstance(node, dict):
        for end in range(len(parts), 0, -1):
            child = node.get(".".join(parts[:end]), _MISSING)
            if child is not _MISSING:
                _every_split(child, parts[end:], out)


def _reference(document: dict[str, Any], path: str) -> tuple[Any, ...] | None:
    """The lookup as specified: the key itself, else plain nested objects, else every split."""
    node = document.get(path, _MISSING)
    if node is _MISSING:
        node = document
        for part in path.split("."):
            node = node.get(part, _MISSING) if type(node) is dict else _MISSING
            if node is _MISSING:
                break
    if node is _MISSING:
        out: list[Any] = []
        _every_split(document, path.split("."), out)
    else:
        out = list(node) if isinstance(node, list) else [node]
    return tuple(out) if out else None


PARTS = ["a", "b", "c", "d"]


def _random_node(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.25:
        return rng.choice(["x", "MiXed", 1, 2.5, None, True, ""])
    if roll < 0.4:
        return [_random_node(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    node: dict[str, Any] = {}
    for _ in range(rng.randint(0, 3)):
        start = rng.randrange(len(PARTS))
        # Mostly single names; sometimes a flat key with dots in it ("b.c").
        end = start + 1 if rng.random() < 0.7 else rng.randint(start + 1, len(PARTS))
        node[".".join(PARTS[start:end])] = _random_node(rng, depth + 1)
    return node


def test_lookup_equals_every_split_on_random_documents():
    rng = random.Random(5)
    paths = [".".join(PARTS[i:j]) for i in range(len(PARTS)) for j in range(i + 1, len(PARTS) + 1)]
    found = 0
    for _ in range(3000):
        document = _random_node(rng, 0)
        if not isinstance(document, dict):
            continue
        dotted: dict[int, bool] = {}
        for path in paths:
            want = _reference(document, path)
            assert lookup(document, path) == want, (document, path)
            assert lookup(document, path, dotted) == want, (document, path)  # the per-event cache is sound
            found += want is not None
    assert found > 1000


def test_flat_dotted_keys_and_lists_on_the_way():
    document = {
        "responseElements.ConsoleLogin": "Success",
        "requestParameters": {
            "policy.Statement": [{"Principal": "*"}, {"Principal": {"AWS": "arn"}}],
            "bucketPolicy": {"Statement": [{"Principal.AWS": "*"}, {"Principal": {"AWS": ["1", "2"]}}]},
        },
        "a": {"b.c": 1, "b": {"c": 2}},
    }
    assert lookup(document, "responseElements.ConsoleLogin") == ("Success",)
    assert lookup(document, "requestParameters.policy.Statement.Principal") == ("*", {"AWS": "arn"})
    assert lookup(document, "requestParameters.policy.Statement.Principal.AWS") == ("arn",)
    assert lookup(document, "requestParameters.bucketPolicy.Statement.Principal.AWS") == ("*", "1", "2")
    assert lookup(document, "a.b.c") == (2,)  # plain nested objects first, as before
    assert lookup(document, "requestParameters.AccessControlPolicy.AccessControlList.Grant") is None
    assert lookup({"a": [{"b": {"c": 1}}, {"b.c": 2}]}, "a.b.c") == (1, 2)
    assert lookup({"a": {"b": 3}}, "a.b.c") is None  # a scalar where an object is needed


def test_view_resolves_native_then_ecs_with_one_dotted_cache():
    native = {"requestParameters": {"x.y": {"z": 1}}}
    ecs = {"cloud": {"account": {"id": "1"}}, "kubernetes": [{"pod.name": "p"}]}
    view = EventView(native, ecs)
    assert view.values("requestParameters.x.y.z") == (1,)
    assert view.values("cloud.account.id") == ("1",)
    assert view.values("kubernetes.pod.name") == ("p",)
    assert view.values("requestParameters.bucketPolicy.Statement") is None
    assert view.lowered("kubernetes.pod.name") == ("p",)


def test_lowered_texts_are_the_values_as_lower_cased_texts():
    rng = random.Random(9)
    paths = [".".join(PARTS[i:j]) for i in range(len(PARTS)) for j in range(i + 1, len(PARTS) + 1)]
    for _ in range(1000):
        native, ecs = _random_node(rng, 0), _random_node(rng, 1)
        if not isinstance(native, dict) or not isinstance(ecs, dict):
            continue
        for path in paths:
            values = EventView(native, ecs).values(path) or ()
            want = tuple(t.lower() for t in map(as_text, values) if t is not None)
            assert EventView(native, ecs).lowered(path) == want, (native, ecs, path)
