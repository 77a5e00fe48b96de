# queuert: the front door.
#
#   make demo     the signup story end to end: transactional enqueue, a worker, fan-in
#   make demo-sql the same signup flow in plain psql
#   make test     lint + pgTAP + pytest against a fresh local PostgreSQL
#   make dev      create .venv and install the package with its dev extra
#   make migrate  install/upgrade queuert in $(DATABASE_URL)
#   make schema-dump  regenerate schema/queuert.sql (commit it with schema changes)
#
# `make test` and `make demo` work on a fresh Debian machine: they start (or
# install) PostgreSQL, install pgTAP when missing and create the virtualenv.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
SCHEMA ?= queuert
export PY

.PHONY: help dev migrate lint test pgtap pytest demo demo-sql ensure-postgres ensure-pgtap schema-dump

help:
	@sed -n 's/^#   //p' Makefile

# The stamp is refreshed whenever the package metadata changes.
dev: $(VENV)/.installed

$(VENV)/.installed: python_client/pyproject.toml python_client/hatch_build.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
		echo "python venv module missing: installing python3-venv with apt"; rm -rf $(VENV); \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && \
		$(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --disable-pip-version-check -e 'python_client[dev]'
	@touch $@

migrate: dev
	$(VENV)/bin/queuert migrate --dsn "$(DATABASE_URL)" --schema "$(SCHEMA)"

lint: dev
	$(VENV)/bin/sqlfluff lint sql/ migrations/ sqlite/

ensure-postgres:
	@scripts/ensure-postgres.sh

ensure-pgtap: ensure-postgres
	@scripts/ensure-pgtap.sh

pgtap: ensure-postgres ensure-pgtap dev
	@scripts/pgtap.sh

pytest: ensure-postgres dev
	$(VENV)/bin/pytest

# Runs every suite even when an earlier one fails, then fails if any did.
test: ensure-postgres ensure-pgtap dev
	@failed=""; \
	$(MAKE) --no-print-directory lint   || failed="$$failed lint"; \
	$(MAKE) --no-print-directory pgtap  || failed="$$failed pgtap"; \
	$(MAKE) --no-print-directory pytest || failed="$$failed pytest"; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; \
	echo "make test: lint, pgtap and pytest passed"

demo: ensure-postgres dev
	DATABASE_URL="$(DATABASE_URL)" $(PY) demo/signup.py

demo-sql: ensure-postgres dev
	@scripts/demo.sh

# The torture run (RELIABILITY.md): 20,000 chains, worker kill -9s, connection
# kills and one PostgreSQL restart; `make test` runs a short form via pytest.
.PHONY: torture
torture: ensure-postgres dev
	$(PY) tests_py/torture/run.py --dsn "$${QUEUERT_TEST_DSN:-$(DATABASE_URL)}"

schema-dump: ensure-postgres dev
	DATABASE_URL="$(DATABASE_URL)" $(PY) scripts/schema_dump.py

# Benchmarks (benchmarks/README.md): server from QUEUERT_BENCH_DSN or $(DATABASE_URL).
#   make bench        full benchmark suite vs raw-SQL floors (< 15 min)
#   make bench-quick  one-minute smoke run of the benchmark harness
.PHONY: bench bench-quick
bench: ensure-postgres dev
	$(PY) -m benchmarks.run --dsn "$${QUEUERT_BENCH_DSN:-$(DATABASE_URL)}"

bench-quick: ensure-postgres dev
	$(PY) -m benchmarks.run --quick --dsn "$${QUEUERT_BENCH_DSN:-$(DATABASE_URL)}"
