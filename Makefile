# Everything a newcomer needs, from a fresh machine with only Python 3.11 and pip.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# What ruff checks: the product, its tests, and the benchmark tooling beside them.
LINT_PATHS := restore_assets restore_assets_tests bench

.PHONY: demo test test-fast test-deps lint format bench dev ui clean install security-table

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

## Run the whole chain on the embedded default: demo Secrets, embedded PostgreSQL, evidence.
demo: $(STAMP)
	$(BIN)/restore-assets demo

## What the tests need beyond the venv, installed with apt-get when missing (scripts/test-deps:
## Debian's chromium, Java 17, Maven); as neither root nor a passwordless sudoer it stops at once
## with the apt-get line to run.
test-deps:
	scripts/test-deps

## Lint, format check, then the test suite (pytest exit 5 = "no tests ran" counts as failure).
test: $(STAMP) test-deps
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi; \
	exit $$rc

## The edit-run loop (under 90 s): ruff, then the tests that need no browser, Java, Docker, own
## process or whole restore, i.e. none marked below (markers: setup.cfg). It lists any test of
## a second or more (mark it slow). `make test` still runs them all.
FAST_MARKERS := not (e2e or browser or real_flyway or docker or slow)
test-fast: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/python -m pytest -q -m "$(FAST_MARKERS)" --durations=5 --durations-min=1; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing on purpose" >&2; exit 1; fi; \
	exit $$rc

## The project against raw psql, 100 and 500 MB seeds (~25 min; measures, asserts nothing):
## writes docs/benchmarks.md + docs/benchmarks.png. BENCH_QUICK=1: 2 and 10 MB seeds (~2 min),
## written to .restore_state/bench/quick/. BENCH_2GB=1 adds a 2 GB seed (about 40 min more).
## Seeds are cached under .restore_state/bench/seeds/. The tooling is bench/ (`python -m bench`), not
## part of the restore_assets package.
bench: $(STAMP)
	$(BIN)/python -m bench \
	  $(if $(BENCH_QUICK),--quick --out .restore_state/bench/quick) $(if $(BENCH_2GB),--with-2gb)

## docs/security-corpus.md from a real run of the hostile-input tests.
security-table: $(STAMP)
	SECURITY_TABLE=$(CURDIR)/docs/security-corpus.md $(BIN)/python -m pytest -q restore_assets_tests/test_hostile.py

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)

format: $(STAMP)
	$(BIN)/ruff format $(LINT_PATHS)
	$(BIN)/ruff check --fix $(LINT_PATHS)

## Dagster UI on http://127.0.0.1:3000 (daemon on: the sensors tick), on the Dagster home the CLI
## uses; with SECRETS_DIR unset and `make demo` done, it watches the demo's Secrets.
## UI_ARGS go to `dagster dev` (UI_ARGS="-p 3001"). Ctrl-C or SIGTERM stops it all within 10 s.
ui: $(STAMP)
	$(BIN)/restore-assets ui $(if $(UI_ARGS),-- $(UI_ARGS))

dev: ui

clean:
	rm -rf $(VENV) .restore_state .pytest_cache .ruff_cache
