"""Which fields each data view can use, derived from the index templates (never typed in by hand).

The saved objects are checked against this catalog so a dashboard cannot silently point at a field the
pipeline does not map. Multi-fields (``url.original.text``) are fields of their own; a ``flattened`` field
accepts any dotted subfield (``aws.cloudtrail.flattened.request_parameters.bucketName``).
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel

from correlation.incidents.es_backend import MAPPINGS as INCIDENT_INDEX_MAPPINGS
from correlation.incidents.model import ENTITY_KINDS, Incident
from indexing.templates import DLQ_PROPERTIES, ECS_PROPERTIES, RULE_PROPERTIES

FieldTypes = dict[str, str]

DATE_TYPES = frozenset({"date", "date_nanos"})
NUMBER_TYPES = frozenset({"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"})


def walk_properties(properties: dict[str, Any], prefix: str = "") -> FieldTypes:
    """``path -> type`` for every leaf of a mapping's ``properties``, including multi-fields."""
    out: FieldTypes = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            out.update(walk_properties(spec["properties"], f"{path}."))
            continue
        kind = str(spec.get("type", "object"))
        out[path] = kind
        if spec.get("index") is False and spec.get("doc_values") is False:
            out[path] = "stored_only"
        elif spec.get("doc_values") is False and kind == "keyword":
            out[path] = "keyword_no_doc_values"
        for sub, sub_spec in spec.get("fields", {}).items():
            out[f"{path}.{sub}"] = str(sub_spec.get("type", "keyword"))
    return out


def _model_string_fields(model: type[BaseModel], prefix: str = "") -> FieldTypes:
    """String fields of a pydantic model: both index mappings turn dynamic strings into ``keyword``."""
    out: FieldTypes = {}
    for name, info in model.model_fields.items():
        out.update(_annotation_fields(info.annotation, f"{prefix}{name}"))
    return out


def _annotation_fields(annotation: Any, path: str) -> FieldTypes:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        out: FieldTypes = {}
        for arg in args:
            if arg is not type(None):
                out.update(_annotation_fields(arg, path))
        return out
    if origin is list:
        return _annotation_fields(args[0], path)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _model_string_fields(annotation, f"{path}.")
    if isinstance(annotation, type) and issubclass(annotation, str):  # includes the Status enum
        return {path: "keyword"}
    return {}


def incident_fields() -> FieldTypes:
    """Fields of ``siem-incidents``: the index template (ECS + rule fields), the incident store's explicit
    mapping, and the incident model's string fields (keywords through the dynamic templates)."""
    out = walk_properties({**ECS_PROPERTIES, **RULE_PROPERTIES})
    model = _model_string_fields(Incident)
    model.pop("entities", None)
    model.update({f"entities.{kind}": "keyword" for kind in ENTITY_KINDS})
    out.update(model)
    out.update(walk_properties(INCIDENT_INDEX_MAPPINGS["properties"]))
    return out


def catalog() -> dict[str, FieldTypes]:
    """Field types per data-view kind."""
    return {
        "events": walk_properties(ECS_PROPERTIES),
        "alerts": walk_properties({**ECS_PROPERTIES, **RULE_PROPERTIES}),
        "incidents": incident_fields(),
        "dlq": walk_properties(DLQ_PROPERTIES),
    }


def field_type(fields: FieldTypes, path: str) -> str | None:
    """The type of ``path``; subfields of a ``flattened`` field are ``keyword``; unknown is ``None``."""
    if path in fields:
        return fields[path]
    parts = path.split(".")
    for end in range(len(parts) - 1, 0, -1):
        if fields.get(".".join(parts[:end])) == "flattened":
            return "keyword"
    return None


def aggregatable(kind: str) -> bool:
    return kind in NUMBER_TYPES | DATE_TYPES | {"keyword", "ip", "boolean", "flattened", "runtime"}
