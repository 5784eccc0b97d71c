"""docs/coverage.md is generated from the rules: the committed file must equal a fresh generation."""

from __future__ import annotations

from correlation.coverage import DOC_PATH, build_rows, render


def test_committed_coverage_doc_is_up_to_date() -> None:
    expected = render(build_rows())
    assert DOC_PATH.read_text(encoding="utf-8") == expected, "run `python -m correlation.coverage`"


def test_every_rule_has_a_technique_and_a_data_source() -> None:
    rows = build_rows()
    assert len(rows) >= 50
    missing = [r.name for r in rows if not r.techniques or not r.data_sources]
    assert missing == []
