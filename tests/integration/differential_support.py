"""Helpers of the differential test: our Sigma engine vs pySigma's Lucene conversion run on real Elasticsearch.

Records are the raw third-party records (source-native field names, no parsing or unwrapping): the same dict is
the engine's ``ParsedEvent.native`` (with an empty ECS document) and the Elasticsearch document, so any
difference comes from matching semantics, not from normalization.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch, helpers
from sigma.backends.elasticsearch.elasticsearch_lucene import LuceneBackend
from sigma.collection import SigmaCollection
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from correlation.detection.engine import RuleSet
from correlation.detection.loader import load_rules
from correlation.detection.pipelines import ROUTES, datasets_for, load_pipelines
from parsers.base import ParsedEvent

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / ".." / "shared" / "data"
PANTHER = DATA / "panther"
FALCO_TRACES = DATA / "falco_k8s_audit" / "trace_files"
SIGMAHQ_RULES = DATA / "sigmahq" / "rules"
RULE_DIRS = [SIGMAHQ_RULES / "cloud" / "aws" / "cloudtrail", SIGMAHQ_RULES / "application" / "kubernetes" / "audit"]
PROJECT_PIPELINES = ROOT / "sigma_rules"  # the engine applies sigma_rules/pipelines/*.yaml; so does the backend

CLOUDTRAIL = "aws.cloudtrail"
K8S = "kubernetes.audit_logs"
MALFORMED_TRACE = "fal_01_003.json"

# Every string, number and boolean becomes a keyword: one term per value, nothing analyzed. Case-insensitive
# variant: a lowercase normalizer folds both the indexed terms and the query terms (term, prefix and wildcard),
# the closest Lucene gets to Sigma's case-insensitive default.
LONG_KEYWORD = 8191  # Lucene's term limit is 32766 bytes: 8191 characters fit in any UTF-8 encoding


def index_body(case_insensitive: bool) -> dict[str, Any]:
    keyword: dict[str, Any] = {"type": "keyword", "ignore_above": LONG_KEYWORD}
    if case_insensitive:
        keyword["normalizer"] = "fold"
    templates = [
        {f"{kind}_as_keyword": {"match_mapping_type": kind, "mapping": dict(keyword)}}
        for kind in ("string", "long", "double", "boolean")
    ]
    return {
        "settings": {
            "number_of_shards": 1,
            "number_of_replicas": 0,
            "index.mapping.total_fields.limit": 20000,
            "index.mapping.depth.limit": 100,
            "analysis": {"normalizer": {"fold": {"type": "custom", "filter": ["lowercase"]}}},
        },
        "mappings": {"date_detection": False, "numeric_detection": False, "dynamic_templates": templates},
    }


# ---------------------------------------------------------------------------------------------------- records


def _panther(name: str, prefix: str) -> Iterable[tuple[str, dict[str, Any]]]:
    for number, line in enumerate((PANTHER / name).read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            record = json.loads(line)["log"]
            if isinstance(record, dict):
                yield f"{prefix}-{number:04d}", record


def _falco_events(path: Path) -> list[dict[str, Any]]:
    """A trace file holds one event, a JSON list of events, or one event per line."""
    text = path.read_text(encoding="utf-8")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = [json.loads(line) for line in text.splitlines() if line.strip()]
    items = whole if isinstance(whole, list) else [whole]
    return [item for item in items if isinstance(item, dict)]


def load_records() -> dict[str, dict[str, dict[str, Any]]]:
    """dataset -> stable record id -> raw record."""
    cloudtrail = dict(_panther("cloudtrail_tests.jsonl", "panther-ct"))
    k8s = dict(_panther("k8s_tests.jsonl", "panther-k8s"))
    for path in sorted(FALCO_TRACES.glob("*.json")):
        if path.name == MALFORMED_TRACE:
            continue
        for number, event in enumerate(_falco_events(path), 1):
            k8s[f"falco-{path.stem}-{number}"] = event
    return {CLOUDTRAIL: cloudtrail, K8S: k8s}


# ---------------------------------------------------------------------------------------------------- indexing


OBJECT = "object"
KEYWORD = "keyword"


def _shape(node: Any, path: tuple[str, ...], out: dict[tuple[str, ...], str]) -> bool:
    """Record path -> object/keyword as Elasticsearch would map it (dotted keys expand into objects, lists
    flatten); False if the record conflicts with itself (a path that is both an object and a value)."""
    if isinstance(node, list):
        return all(_shape(element, path, out) for element in node)
    if node is None:
        return True
    kind = OBJECT if isinstance(node, dict) else KEYWORD
    if path and out.setdefault(path, kind) != kind:
        return False
    if isinstance(node, dict):
        for key, child in node.items():
            parts = tuple(str(key).split("."))
            for end in range(1, len(parts)):  # "a.b": "a" is an object
                if out.setdefault(path + parts[:end], OBJECT) != OBJECT:
                    return False
            if not _shape(child, path + parts, out):
                return False
    return True


def _properties(shape: dict[tuple[str, ...], str]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(shape, key=len):
        node = root
        for part in path[:-1]:
            node = node[part].setdefault("properties", {})
        if shape[path] == OBJECT:
            node.setdefault(path[-1], {"type": "object"})
        else:
            node[path[-1]] = {"type": "keyword"}  # completed with the keyword options by the caller
    return root


def _complete(properties: dict[str, Any], keyword: dict[str, Any]) -> dict[str, Any]:
    for spec in properties.values():
        if spec["type"] == "keyword":
            spec.update(keyword)
        else:
            _complete(spec.get("properties", {}), keyword)
    return properties


@dataclass
class IndexedDataset:
    """One dataset in Elasticsearch, in as few indices as the records' mappings allow: a record whose field is
    an object where another's is a value (or the reverse) goes to the next index of the dataset."""

    indices: list[str] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # record id -> why Elasticsearch refused it

    @property
    def pattern(self) -> str:
        return ",".join(self.indices)


def group_by_mapping(
    records: dict[str, dict[str, Any]],
) -> tuple[list[tuple[dict[tuple[str, ...], str], list[str]]], dict[str, str]]:
    groups: list[tuple[dict[tuple[str, ...], str], list[str]]] = []
    rejected: dict[str, str] = {}
    for rid, record in records.items():
        shape: dict[tuple[str, ...], str] = {}
        if not _shape(record, (), shape):
            rejected[rid] = "a field is both an object and a value inside the record"
            continue
        for merged, members in groups:
            if all(merged.get(path, kind) == kind for path, kind in shape.items()):
                merged.update(shape)
                members.append(rid)
                break
        else:
            groups.append((dict(shape), [rid]))
    return groups, rejected


def index_dataset(
    es: Elasticsearch, base: str, records: dict[str, dict[str, Any]], case_insensitive: bool
) -> IndexedDataset:
    """Explicit mappings computed up front: no dynamic mapping updates while indexing (seconds, not a minute)."""
    out = IndexedDataset()
    groups, out.rejected = group_by_mapping(records)
    for number, (shape, members) in enumerate(groups):
        name = f"{base}-{number}"
        body = index_body(case_insensitive)
        keyword = body["mappings"]["dynamic_templates"][0]["string_as_keyword"]["mapping"]
        body["mappings"]["properties"] = _complete(_properties(shape), keyword)
        es.indices.create(index=name, **body)
        out.indices.append(name)
        actions = ({"_index": name, "_id": rid, "_source": records[rid]} for rid in members)
        _, errors = helpers.bulk(es, actions, raise_on_error=False, chunk_size=1000)
        for error in errors:  # type: ignore[union-attr]
            item = error.get("index", {})
            out.rejected[str(item.get("_id"))] = str(item.get("error", {}).get("reason", item.get("error")))[:200]
    es.indices.refresh(index=out.pattern)
    return out


# ---------------------------------------------------------------------------------------------------- rules


@dataclass
class RuleResult:
    rule_id: str
    title: str
    file: str
    dataset: str
    queries: list[str]
    ours: set[str] = field(default_factory=set)
    theirs: set[str] = field(default_factory=set)
    theirs_cased: set[str] = field(default_factory=set)

    @property
    def agrees(self) -> bool:
        return self.ours == self.theirs


def engine_matches(records: dict[str, dict[str, dict[str, Any]]]) -> tuple[RuleSet, dict[str, set[str]]]:
    """Our engine on every record: rule id -> matching record ids."""
    loaded = load_rules(RULE_DIRS)
    rule_set = RuleSet.from_loaded(loaded)
    hits: dict[str, set[str]] = {rule.rule_id: set() for rule in rule_set.rules}
    for dataset, by_id in records.items():
        for rid, record in by_id.items():
            for match in rule_set.match(ParsedEvent(rid, dataset, {}, record)):
                hits[match.rule.rule_id].add(rid)
    return rule_set, hits


def convert_rules() -> tuple[dict[str, tuple[SigmaRule, list[str]]], dict[str, str]]:
    """pySigma's Lucene queries, with the engine's own field-mapping pipeline: (rule id -> (rule, queries),
    rule id -> why it was not converted)."""
    pipeline, _ = load_pipelines([PROJECT_PIPELINES])
    converted: dict[str, tuple[SigmaRule, list[str]]] = {}
    failed: dict[str, str] = {}
    collection = SigmaCollection.load_ruleset(list[str | Path](RULE_DIRS))
    for rule in collection.rules:
        if not isinstance(rule, SigmaRule) or not datasets_for(rule.logsource, ROUTES):
            continue
        rule_id = str(rule.id) if rule.id else rule.title
        backend = LuceneBackend(processing_pipeline=pipeline)
        try:
            queries = backend.convert_rule(rule)
        except SigmaError as exc:
            failed[rule_id] = f"{type(exc).__name__}: {exc}"
            continue
        converted[rule_id] = (rule, [str(q) for q in queries])
    return converted, failed


def lucene_hits(es: Elasticsearch, indexed: IndexedDataset, queries: list[str]) -> set[str]:
    found: set[str] = set()
    for query in queries:
        response = es.search(
            index=indexed.pattern,
            query={"query_string": {"query": query}},
            size=10000,
            source=False,
            track_total_hits=True,
        )
        assert response["hits"]["total"]["value"] < 10000
        found.update(hit["_id"] for hit in response["hits"]["hits"])
    return found
