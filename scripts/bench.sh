#!/usr/bin/env bash
# Every benchmark; each script prints its own figures. The per-core ones (parsers, detection, correlation) are
# pinned to one core. The ones against the local stack (end to end, incidents, CPU budget) are not: their figures
# are about the pipeline and Elasticsearch sharing the whole machine.
set -uo pipefail
cd "$(dirname "$0")/.."
for script in bench/bench_*.py; do
  echo; echo "==> $script"
  case "$script" in
    bench/bench_e2e.py | bench/bench_incidents.py | bench/bench_cpu_budget.py) pin=() ;;
    *) pin=(taskset -c 1) ;;
  esac
  "${pin[@]}" .venv/bin/python "$script" || echo "(exit $?: target missed or failed, see above)"
done
