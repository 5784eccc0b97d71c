"""Differential test: our Sigma engine vs pySigma's Elasticsearch (Lucene) conversion on a real Elasticsearch.

Every SigmaHQ CloudTrail and Kubernetes audit rule is converted to a Lucene query string with pySigma's
``LuceneBackend`` (with the engine's own field-mapping pipeline, ``sigma_rules/pipelines/*.yaml``), run with
``query_string`` over the raw Panther and Falco records, and its hit set is compared with the records our
engine matches. The records are indexed as they are (source-native field names): the same dict is the engine's
``ParsedEvent.native`` (ECS document empty), so differences come from matching semantics only.

Mapping, chosen to give Lucene the best chance of Sigma semantics: every string, number and boolean is one
``keyword`` term (never analyzed ``text``: a tokenized field would turn ``field:value`` into a token match and
``*value*`` wildcards would run per token), with a ``lowercase`` normalizer, which folds indexed and query terms
alike (term, prefix, wildcard) as Sigma's case-insensitive default does. ``date_detection``/``numeric_detection``
are off. The same records also go to a second index with plain (case-sensitive) keywords, to quantify what the
usual keyword mapping would change: ``CASE_SENSITIVE_KEYWORD_DIFFERENCES``.

Rules that agree must agree exactly; every disagreement is listed with its cause in ``EXPECTED_DIFFERENCES`` and
every listed rule must really disagree, so the list cannot rot. Run with ``-s`` to see the report.
"""

from __future__ import annotations

import time
import uuid

import pytest
from elasticsearch import Elasticsearch

from stack.services import LocalStack
from tests.integration.differential_support import (
    CLOUDTRAIL,
    K8S,
    IndexedDataset,
    RuleResult,
    convert_rules,
    engine_matches,
    index_dataset,
    load_records,
    lucene_hits,
)

# Rule id -> why Lucene's hit set legitimately differs from the engine's (lowercase-normalized keyword index).
EXPECTED_DIFFERENCES: dict[str, str] = {
    # AWS S3 Bucket Versioning Disable: `requestParameters|contains: Suspended`. requestParameters is an object
    # ({"VersioningConfiguration": {"Status": "Suspended"}}); Sigma (and our engine) match an object against its
    # JSON text, Lucene cannot query an object field as text: `requestParameters:*Suspended*` matches nothing.
    "a136ac98-b2bc-4189-a14d-f0d0388e57a7": "object field matched as its JSON text (Lucene has no such field)",
}

# Rule id -> why it agrees with the lowercase normalizer but not with plain (case-sensitive) keyword fields.
CASE_SENSITIVE_KEYWORD_DIFFERENCES: dict[str, str] = {
    # AWS STS GetCallerIdentity Enumeration Via TruffleHog: `userAgent|contains: TruffleHog`; a record's user
    # agent is "trufflehog/3.63.0".
    "9b1b8e9b-0a5d-4af1-9d2f-4c4b6e7c2c9d": "case: rule says 'TruffleHog', a record has 'trufflehog/3.63.0'",
    # AWS Successful Console Login Without MFA: `additionalEventData.MFAUsed: 'NO'`; CloudTrail writes "No".
    "77caf516-34e5-4df9-b4db-20744fea0a60": "case: rule says 'NO', CloudTrail records say 'No'",
}

# Rule id -> why pySigma's Lucene backend cannot convert it (not compared).
EXPECTED_NOT_CONVERTED: dict[str, str] = {
    # AWS User Login Profile Was Modified: `userIdentity.arn|fieldref: requestParameters.userName`.
    "055fb148-60f8-462d-ad16-26926ce050f1": "fieldref: Lucene cannot compare two fields",
}

INDEX_PREFIX = "siem-test-differential"
RUNTIME_BUDGET_S = 90.0


def _report(results: list[RuleResult], not_converted: dict[str, str], rejected: dict[str, str]) -> str:
    agreeing = [r for r in results if r.agrees]
    lines = [
        "",
        "Sigma engine vs pySigma LuceneBackend on Elasticsearch (lowercase-normalized keyword fields)",
        f"  rules loaded by the engine: {len(results) + len(not_converted)}",
        f"  rules compared:             {len(results)}"
        f" ({sum(1 for r in results if r.ours or r.theirs)} with at least one hit on either side)",
        f"  agreeing exactly:           {len(agreeing)}",
        f"  disagreeing:                {len(results) - len(agreeing)}",
        f"  not compared:               {len(not_converted)}",
        f"  records Elasticsearch refused: {len(rejected)}",
    ]
    by_cause: dict[str, int] = {}
    for result in results:
        if not result.agrees:
            cause = EXPECTED_DIFFERENCES.get(result.rule_id, "UNEXPECTED")
            by_cause[cause] = by_cause.get(cause, 0) + 1
    for cause, count in sorted(by_cause.items()):
        lines.append(f"    {count} x {cause}")
    header = f"  {'rule':<60} {'ours':>5} {'lucene':>6} {'cased':>6}  status"
    lines += ["", header, "  " + "-" * (len(header) - 2)]
    for r in sorted(results, key=lambda r: (r.agrees, r.dataset, r.title)):
        status = "agree" if r.agrees else "DIFFER: " + EXPECTED_DIFFERENCES.get(r.rule_id, "UNEXPECTED")
        if r.theirs_cased != r.theirs:
            status += " | case-sensitive keyword differs"
        lines.append(f"  {r.title[:60]:<60} {len(r.ours):>5} {len(r.theirs):>6} {len(r.theirs_cased):>6}  {status}")
        if not r.agrees:
            lines.append(f"      engine only: {sorted(r.ours - r.theirs)}  lucene only: {sorted(r.theirs - r.ours)}")
            lines.append(f"      query: {' || '.join(r.queries)}")
    for rule_id, reason in sorted(not_converted.items()):
        lines.append(f"  not compared {rule_id}: {reason}")
    for rid, reason in sorted(rejected.items()):
        lines.append(f"  record refused by Elasticsearch {rid}: {reason}")
    return "\n".join(lines)


@pytest.mark.integration
def test_engine_agrees_with_lucene_conversion_on_elasticsearch(local_stack: LocalStack) -> None:
    started = time.monotonic()
    records = load_records()
    assert len(records[CLOUDTRAIL]) == 472 and len(records[K8S]) > 282  # Panther + Falco trace events
    rule_set, ours = engine_matches(records)
    assert not rule_set.problems, [str(p) for p in rule_set.problems]
    converted, not_converted = convert_rules()

    es = Elasticsearch(local_stack.elasticsearch_url, request_timeout=60)
    run = f"{INDEX_PREFIX}-{uuid.uuid4().hex[:8]}"
    try:
        indexed: dict[tuple[str, bool], IndexedDataset] = {}
        for dataset, short in ((CLOUDTRAIL, "ct"), (K8S, "k8s")):
            for folded in (True, False):
                name = f"{run}-{short}-{'ci' if folded else 'cs'}"
                indexed[(dataset, folded)] = index_dataset(es, name, records[dataset], case_insensitive=folded)
        rejected = {rid: why for i in indexed.values() for rid, why in i.rejected.items()}

        results: list[RuleResult] = []
        for rule in rule_set.rules:
            if rule.rule_id not in converted:
                continue
            (dataset,) = rule.datasets
            _, queries = converted[rule.rule_id]
            result = RuleResult(rule.rule_id, rule.title, rule.source_file, dataset, queries)
            result.ours = ours[rule.rule_id] - set(rejected)  # a record Lucene never saw cannot be compared
            result.theirs = lucene_hits(es, indexed[(dataset, True)], queries)
            result.theirs_cased = lucene_hits(es, indexed[(dataset, False)], queries)
            results.append(result)
    finally:
        es.indices.delete(index=f"{run}-*", allow_no_indices=True, ignore_unavailable=True)
        es.close()

    print(_report(results, not_converted, rejected))

    engine_ids = {rule.rule_id for rule in rule_set.rules}
    assert set(converted) | set(not_converted) == engine_ids  # the backend saw exactly the engine's rules
    assert set(not_converted) == set(EXPECTED_NOT_CONVERTED), not_converted
    assert not rejected, rejected
    assert len(results) == len(engine_ids) - len(EXPECTED_NOT_CONVERTED)

    disagreeing = {r.rule_id: r for r in results if not r.agrees}
    unexplained = {
        rid: (r.title, sorted(r.ours ^ r.theirs)) for rid, r in disagreeing.items() if rid not in EXPECTED_DIFFERENCES
    }
    assert not unexplained, f"disagreements without a stated cause: {unexplained}"
    stale = set(EXPECTED_DIFFERENCES) - set(disagreeing)
    assert not stale, f"EXPECTED_DIFFERENCES lists rules that agree (or were not compared): {stale}"

    case_differs = {r.rule_id for r in results if r.theirs_cased != r.theirs}
    assert case_differs == set(CASE_SENSITIVE_KEYWORD_DIFFERENCES), case_differs
    # Folding can only add hits: every case-sensitive keyword hit is also a normalized one.
    assert all(r.theirs_cased <= r.theirs for r in results)
    assert sum(1 for r in results if r.ours) >= 30  # the comparison is not vacuous
    assert time.monotonic() - started < RUNTIME_BUDGET_S
