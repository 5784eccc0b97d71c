#!/usr/bin/env bash
# Every benchmark, pinned to one core where the figure is "per core". Each script prints its own figures.
set -uo pipefail
cd "$(dirname "$0")/.."
for script in bench/bench_*.py; do
  echo; echo "==> $script"
  taskset -c 1 .venv/bin/python "$script" || echo "(exit $?: target missed or failed, see above)"
done
