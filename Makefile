# Two commands for a fresh machine (see README): `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint typecheck bench clean

# The parsers and the Sigma engine are compiled to C extensions at install (setup.py, mypyc): reinstall when one
# changes, so nothing runs a stale build (the test suite also refuses to start on one).
$(STAMP): pyproject.toml setup.py $(wildcard parsers/*.py) $(wildcard correlation/detection/*.py)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start local Kafka + Elasticsearch, create topics/templates, run the pipeline, feed the demo samples,
## show the live status line until Ctrl-C.
run: install
	$(BIN)/siem run --embedded --demo

## Lint, types, dependency check, Sigma rule checks, unit + integration tests on the real local stack.
test: install
	bash scripts/test.sh

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy .

bench: install
	bash scripts/bench.sh

clean:
	-$(BIN)/siem stack down
	rm -rf $(VENV) .stack .mypy_cache .ruff_cache .pytest_cache build
	find . -name '*.so' -not -path './.venv/*' -not -path './.stack/*' -delete
