# Patron: `make run` sets everything up and serves; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 3000

.PHONY: install run test test-fast lint clean-workspace

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)  # the dashboard's browser test
	touch $@

install: $(VENV)/.installed

## Synthesise the demo retailer, ingest, build features, train, register, promote and serve (reuses what exists).
run: install
	$(BIN)/patron demo --port $(PORT)

## The whole test suite (unit and integration: real MLflow store, real BentoML server, PostgreSQL, Redis), the
## architecture checks included (tests/test_architecture.py: import-linter's contracts, ruff's lint and format).
## pytest's exit 5 (no tests collected) counts as a failure.
test: install
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing the run"; exit 1; fi; exit $$rc

## Unit tests only.
test-fast: install
	$(BIN)/python -m pytest -m "not integration"

## The architecture checks alone, with the tools' own output: the import contracts (pyproject.toml), lint, format.
lint: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check --no-cache patron features training serving benchmarks tests
	$(BIN)/ruff format --check --no-cache patron features training serving benchmarks tests

clean-workspace:
	rm -rf workspace
