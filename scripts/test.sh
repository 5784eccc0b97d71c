#!/usr/bin/env bash
# The whole test suite, as `make test` and CI run it. Fails on the first failing step.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
started=$(date +%s)

step() { echo; echo "==> $*"; }

step "ruff";          $BIN/ruff check .
step "mypy --strict"; $BIN/mypy .
step "pip check";     $BIN/pip check
step "sigma check (sigma-cli, offline validators)"
$BIN/sigma check -x attacktag -x d3_fendtag sigma_rules/rules
step "siem rules test (each rule's must-match / must-not-match events)"
$BIN/siem rules test

step "local stack (Kafka KRaft + Elasticsearch from Maven Central)"
$BIN/siem stack up
if [[ "${CI:-}" == "true" ]]; then
  # CI leaves nothing running behind it.
  trap '$BIN/siem stack down || true' EXIT
fi

step "pytest (unit + integration)"
$BIN/pytest -q -p no:cacheprovider "$@"

echo; echo "test suite finished in $(( $(date +%s) - started )) s"
