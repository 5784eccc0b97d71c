"""The shipped Kibana saved objects: well-formed NDJSON, resolvable references, only fields our mappings have.

Kibana does not run on the test machines, so these checks stand in for an import: they read the committed
NDJSON (what users import) and the field catalog derived from indexing/templates.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from kibana import fields
from kibana.build import NDJSON_PATH, generate, render_ndjson
from kibana.lens import RECORDS
from kibana.objects import build_objects

CATALOG = fields.catalog()
# `field :`, `field >= 73`, `not field : *` in KQL; quoted values are removed before matching.
KQL_FIELD = re.compile(r"([A-Za-z@_][\w.@/-]*)\s*(?::|<=|>=|<|>)")
KQL_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
NUMERIC_OPS = {"average", "median", "max", "min", "sum", "percentile", "standard_deviation"}


def _lines() -> list[str]:
    return NDJSON_PATH.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return [json.loads(line) for line in _lines()]


@pytest.fixture(scope="module")
def by_id(objects) -> dict[str, dict[str, Any]]:
    return {obj["id"]: obj for obj in objects}


def _kind_of(data_view: dict[str, Any]) -> str:
    """events / alerts / incidents / dlq from the pattern ``siem-<kind>-*`` or ``siem-<kind>*``."""
    return str(data_view["attributes"]["title"]).split("-", 1)[1].rstrip("*").rstrip("-")


def _fields_of(data_view: dict[str, Any]) -> dict[str, str]:
    known = dict(CATALOG[_kind_of(data_view)])
    for name, spec in json.loads(data_view["attributes"].get("runtimeFieldMap") or "{}").items():
        known[name] = spec["type"]
    return known


def kql_fields(query: str) -> set[str]:
    return set(KQL_FIELD.findall(KQL_STRING.sub('""', query)))


def _lens_panels(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for panel in json.loads(dashboard["attributes"]["panelsJSON"]):
        if panel["type"] == "lens":
            yield panel, panel["embeddableConfig"]["attributes"]


def _lens_queries(attributes: dict[str, Any]) -> Iterator[str]:
    yield attributes["state"]["query"]["query"]
    for layer in attributes["state"]["datasourceStates"]["formBased"]["layers"].values():
        for column in layer["columns"].values():
            for bucket in column.get("params", {}).get("filters", []):
                yield bucket["input"]["query"]


def _saved_search_source(search: dict[str, Any]) -> dict[str, Any]:
    source: dict[str, Any] = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    return source


def test_committed_ndjson_is_generated_from_code():
    assert NDJSON_PATH.read_text(encoding="utf-8") == generate(), "run: python -m kibana.build"


def test_generation_is_deterministic():
    assert render_ndjson(build_objects()) == render_ndjson(build_objects())


def test_each_line_is_a_saved_object_with_a_unique_id(objects):
    assert len(objects) == len(_lines())
    for obj in objects:
        assert isinstance(obj, dict)
        assert obj["type"] in {"index-pattern", "search", "dashboard"}
        assert isinstance(obj["id"], str) and obj["id"].startswith("siem-")
        assert isinstance(obj["attributes"], dict) and obj["attributes"]["title"]
    ids = [obj["id"] for obj in objects]
    assert len(ids) == len(set(ids))


def test_expected_objects_are_shipped(by_id):
    patterns = {obj["attributes"]["title"] for obj in by_id.values() if obj["type"] == "index-pattern"}
    assert patterns == {"siem-events-*", "siem-alerts-*", "siem-incidents*", "siem-dlq*"}
    assert {"siem-dash-overview", "siem-dash-cloudtrail", "siem-dash-kubernetes", "siem-dash-incidents"} <= set(by_id)
    assert sum(obj["type"] == "search" for obj in by_id.values()) >= 5


def test_every_reference_resolves(objects, by_id):
    for obj in objects:
        for ref in obj.get("references", []):
            assert ref["id"] in by_id, f"{obj['id']} -> {ref}"
            assert by_id[ref["id"]]["type"] == ref["type"], f"{obj['id']} -> {ref}"


def test_saved_searches_reference_their_data_view(objects):
    for search in (obj for obj in objects if obj["type"] == "search"):
        ref_name = _saved_search_source(search)["indexRefName"]
        names = [ref["name"] for ref in search["references"]]
        assert names == [ref_name]


def test_dashboard_panels_reference_objects_in_the_file(objects, by_id):
    for dash in (obj for obj in objects if obj["type"] == "dashboard"):
        refs = {ref["name"]: ref for ref in dash["references"]}
        panels = json.loads(dash["attributes"]["panelsJSON"])
        assert len({panel["panelIndex"] for panel in panels}) == len(panels)
        for panel in panels:
            assert panel["gridData"]["i"] == panel["panelIndex"]
            assert panel["gridData"]["x"] + panel["gridData"]["w"] <= 48
            if panel["type"] == "search":
                assert refs[f"{panel['panelIndex']}:{panel['panelRefName']}"]["type"] == "search"
                continue
            attributes = panel["embeddableConfig"]["attributes"]
            layers = attributes["state"]["datasourceStates"]["formBased"]["layers"]
            for layer_id in layers:
                inner = {ref["name"]: ref for ref in attributes["references"]}
                ref = inner[f"indexpattern-datasource-layer-{layer_id}"]
                assert by_id[ref["id"]]["type"] == "index-pattern"
                assert refs[f"{panel['panelIndex']}:indexpattern-datasource-layer-{layer_id}"]["id"] == ref["id"]


def test_data_view_time_fields_are_dates_in_the_templates(objects):
    for dv in (obj for obj in objects if obj["type"] == "index-pattern"):
        time_field = dv["attributes"]["timeFieldName"]
        assert fields.field_type(CATALOG[_kind_of(dv)], time_field) in fields.DATE_TYPES, dv["id"]


def test_saved_search_fields_exist(objects, by_id):
    for search in (obj for obj in objects if obj["type"] == "search"):
        known = _fields_of(by_id[search["references"][0]["id"]])
        used = set(search["attributes"]["columns"]) | {field for field, _ in search["attributes"]["sort"]}
        used |= kql_fields(_saved_search_source(search)["query"]["query"])
        missing = {field for field in used if fields.field_type(known, field) is None}
        assert not missing, f"{search['id']}: {sorted(missing)}"


def _check_column(known: dict[str, str], column: dict[str, Any], where: str) -> None:
    source = column.get("sourceField")
    if column["operationType"] == "count":
        assert source == RECORDS, where
        return
    if source is None:  # filters buckets: their queries are checked separately
        assert column["operationType"] == "filters", where
        return
    kind = fields.field_type(known, source)
    assert kind is not None, f"{where}: {source} is not mapped"
    if column["operationType"] == "date_histogram":
        assert kind in fields.DATE_TYPES, f"{where}: {source} is {kind}"
    elif column["operationType"] in NUMERIC_OPS:
        assert kind in fields.NUMBER_TYPES, f"{where}: {source} is {kind}"
    else:
        assert fields.aggregatable(kind), f"{where}: {source} ({kind}) cannot be aggregated"


def test_lens_fields_exist_with_a_usable_type(objects, by_id):
    checked = 0
    for dash in (obj for obj in objects if obj["type"] == "dashboard"):
        for panel, attributes in _lens_panels(dash):
            where = f"{dash['id']}/{panel['panelIndex']} {attributes['title']}"
            known = _fields_of(by_id[attributes["references"][0]["id"]])
            for layer in attributes["state"]["datasourceStates"]["formBased"]["layers"].values():
                assert layer["columnOrder"] == list(layer["columns"]), where
                for column in layer["columns"].values():
                    _check_column(known, column, where)
                    order = column.get("params", {}).get("orderBy", {})
                    if order.get("type") == "column":
                        assert order["columnId"] in layer["columns"], where
                    checked += 1
            for query in _lens_queries(attributes):
                missing = {field for field in kql_fields(query) if fields.field_type(known, field) is None}
                assert not missing, f"{where}: {sorted(missing)}"
    assert checked > 50


def test_lens_visualization_accessors_point_at_columns(objects):
    for dash in (obj for obj in objects if obj["type"] == "dashboard"):
        for _, attributes in _lens_panels(dash):
            columns = set(attributes["state"]["datasourceStates"]["formBased"]["layers"]["layer1"]["columns"])
            vis = attributes["state"]["visualization"]
            accessors: list[str] = []
            for layer in vis.get("layers", [vis]):
                accessors += [layer[key] for key in ("xAccessor", "splitAccessor", "metricAccessor") if key in layer]
                accessors += layer.get("accessors", []) + layer.get("primaryGroups", []) + layer.get("metrics", [])
                accessors += [column["columnId"] for column in layer.get("columns", [])]
            assert accessors and set(accessors) <= columns, attributes["title"]
            assert set(accessors) == columns, attributes["title"]


def test_kql_field_extraction():
    assert kql_fields('event.dataset : "a : b" and not assignee : * and event.severity >= 73') == {
        "event.dataset", "assignee", "event.severity"}


def test_field_catalog_follows_multi_fields_and_flattened():
    events = CATALOG["events"]
    assert fields.field_type(events, "url.original.text") == "text"
    assert fields.field_type(events, "aws.cloudtrail.flattened.request_parameters.bucketName") == "keyword"
    assert fields.field_type(events, "aws.cloudtrail.nope") is None
    assert fields.field_type(CATALOG["alerts"], "rule.name") == "keyword"
    assert fields.field_type(CATALOG["incidents"], "entities.users") == "keyword"
    assert fields.field_type(CATALOG["incidents"], "first_seen") == "date"
    assert fields.field_type(CATALOG["dlq"], "dlq.error_type") == "keyword"
