"""Small builders for Lens visualizations embedded by value in dashboard panels (Kibana 8.x shapes).

Every visualization has one form-based layer named ``layer1`` and readable column ids, so the generated NDJSON
is stable and diffable. A column is a ``(column_id, column_spec)`` pair.
"""

from __future__ import annotations

from typing import Any

LAYER = "layer1"
RECORDS = "___records___"  # Lens' pseudo-field for "count of documents"
PANEL_VERSION = "8.11.0"

Column = tuple[str, dict[str, Any]]


def kql(query: str) -> dict[str, str]:
    return {"query": query, "language": "kuery"}


def count(label: str = "Count", column_id: str = "count") -> Column:
    return column_id, {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": "count",
        "isBucketed": False,
        "scale": "ratio",
        "sourceField": RECORDS,
        "params": {"emptyAsNull": True},
    }


def metric(operation: str, field: str, label: str, column_id: str, decimals: int = 1) -> Column:
    """A numeric aggregation: ``average``, ``median``, ``max``, ``min``, ``sum`` or ``unique_count``."""
    return column_id, {
        "label": label,
        "customLabel": True,
        "dataType": "number",
        "operationType": operation,
        "sourceField": field,
        "isBucketed": False,
        "scale": "ratio",
        "params": {"emptyAsNull": True, "format": {"id": "number", "params": {"decimals": decimals}}},
    }


def terms(field: str, label: str, order_by: str = "count", size: int = 10, column_id: str | None = None) -> Column:
    return column_id or f"by-{field}", {
        "label": label,
        "customLabel": True,
        "dataType": "string",
        "operationType": "terms",
        "sourceField": field,
        "isBucketed": True,
        "scale": "ordinal",
        "params": {
            "size": size,
            "orderBy": {"type": "column", "columnId": order_by},
            "orderDirection": "desc",
            "otherBucket": True,
            "missingBucket": False,
            "parentFormat": {"id": "terms"},
        },
    }


def date_histogram(field: str = "@timestamp", column_id: str = "time") -> Column:
    return column_id, {
        "label": field,
        "dataType": "date",
        "operationType": "date_histogram",
        "sourceField": field,
        "isBucketed": True,
        "scale": "interval",
        "params": {"interval": "auto", "includeEmptyRows": True, "dropPartials": False},
    }


def filters(buckets: list[tuple[str, str]], label: str, column_id: str = "buckets") -> Column:
    """One bucket per ``(label, KQL query)``."""
    return column_id, {
        "label": label,
        "customLabel": True,
        "dataType": "string",
        "operationType": "filters",
        "isBucketed": True,
        "scale": "ordinal",
        "params": {"filters": [{"label": name, "input": kql(query)} for name, query in buckets]},
    }


def _attributes(
    title: str, data_view_id: str, vis_type: str, visualization: dict[str, Any], columns: list[Column], query: str
) -> dict[str, Any]:
    return {
        "title": title,
        "description": "",
        "visualizationType": vis_type,
        "type": "lens",
        "references": [
            {"type": "index-pattern", "id": data_view_id, "name": f"indexpattern-datasource-layer-{LAYER}"}
        ],
        "state": {
            "visualization": visualization,
            "query": kql(query),
            "filters": [],
            "datasourceStates": {
                "formBased": {
                    "layers": {
                        LAYER: {
                            "columns": dict(columns),
                            "columnOrder": [column_id for column_id, _ in columns],
                            "incompleteColumns": {},
                        }
                    }
                },
                "textBased": {"layers": {}},
            },
            "internalReferences": [],
            "adHocDataViews": {},
        },
    }


def bar(
    title: str,
    data_view_id: str,
    x: Column,
    y: Column,
    split: Column | None = None,
    query: str = "",
    series: str = "bar_stacked",
) -> dict[str, Any]:
    """Bars (or ``line``/``area``/``bar_horizontal``) of ``y`` over ``x``, optionally split by ``split``."""
    layer: dict[str, Any] = {
        "layerId": LAYER,
        "layerType": "data",
        "seriesType": series,
        "xAccessor": x[0],
        "accessors": [y[0]],
    }
    if split is not None:
        layer["splitAccessor"] = split[0]
    visualization = {
        "legend": {"isVisible": True, "position": "right"},
        "valueLabels": "hide",
        "preferredSeriesType": series,
        "layers": [layer],
    }
    columns = [x, *([split] if split else []), y]
    return _attributes(title, data_view_id, "lnsXY", visualization, columns, query)


def donut(title: str, data_view_id: str, groups: list[Column], value: Column, query: str = "") -> dict[str, Any]:
    visualization = {
        "shape": "donut",
        "layers": [
            {
                "layerId": LAYER,
                "layerType": "data",
                "primaryGroups": [column_id for column_id, _ in groups],
                "metrics": [value[0]],
                "numberDisplay": "percent",
                "categoryDisplay": "default",
                "legendDisplay": "default",
                "nestedLegend": False,
            }
        ],
    }
    return _attributes(title, data_view_id, "lnsPie", visualization, [*groups, value], query)


def table(title: str, data_view_id: str, columns: list[Column], query: str = "") -> dict[str, Any]:
    visualization = {
        "layerId": LAYER,
        "layerType": "data",
        "columns": [{"columnId": column_id} for column_id, _ in columns],
    }
    return _attributes(title, data_view_id, "lnsDatatable", visualization, columns, query)


def single_metric(title: str, data_view_id: str, value: Column, query: str = "") -> dict[str, Any]:
    visualization = {"layerId": LAYER, "layerType": "data", "metricAccessor": value[0]}
    return _attributes(title, data_view_id, "lnsMetric", visualization, [value], query)
