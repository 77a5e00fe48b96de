# queuert: the front door.
#
#   make demo     the signup story end to end: transactional enqueue, a worker, fan-in
#                 (on $(DATABASE_URL); when no server answers, on the embedded PostgreSQL 16)
#   make demo-sql the same signup flow in plain psql
#   make test     lint + pgTAP + pytest against a fresh local PostgreSQL
#   make pytest-pg16  the pytest suite again, on the embedded PostgreSQL 16 (CI runs it)
#   make dev      create .venv and install the package with its dev extra
#   make migrate  install/upgrade queuert in $(DATABASE_URL)
#   make dashboard  serve the web dashboard for $(DATABASE_URL) on 127.0.0.1:8787
#   make schema-dump  regenerate schema/queuert.sql (commit it with schema changes)
#
# `make test` works on a fresh Debian machine: it starts (or installs)
# PostgreSQL, Redis and NATS, installs pgTAP, pgbouncer and Chromium when
# missing and creates the virtualenv. `make demo` needs neither root nor
# apt: without a server it uses the embedded one.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
SCHEMA ?= queuert
export PY

.PHONY: help dev migrate lint test pgtap pytest pytest-pg16 demo demo-sql ensure-postgres ensure-postgres-binaries ensure-pgtap ensure-chromium ensure-services schema-dump dashboard

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

ensure-postgres-binaries:
	@scripts/ensure-postgres-binaries.sh

ensure-pgtap: ensure-postgres
	@scripts/ensure-pgtap.sh

# Debian's Chromium, for the dashboard's browser test (Playwright drives it).
ensure-chromium:
	@scripts/ensure-chromium.sh

# Redis and NATS (JetStream) for the notify tests, pgbouncer installed.
ensure-services:
	@scripts/ensure-services.sh

pgtap: ensure-postgres ensure-pgtap dev
	@scripts/pgtap.sh

pytest: ensure-postgres ensure-postgres-binaries ensure-chromium ensure-services dev
	$(VENV)/bin/pytest

# The same suite on PostgreSQL 16 (the embedded server, a throwaway data
# directory on a spare port), so that 15 and 16 are both proven.
pytest-pg16: ensure-postgres-binaries ensure-chromium ensure-services dev
	@VENV="$(VENV)" scripts/pytest-embedded.sh

# Runs every suite even when an earlier one fails, then fails if any did.
test: ensure-postgres ensure-postgres-binaries ensure-pgtap ensure-chromium ensure-services dev
	@failed=""; \
	$(MAKE) --no-print-directory lint   || failed="$$failed lint"; \
	$(MAKE) --no-print-directory pgtap  || failed="$$failed pgtap"; \
	$(MAKE) --no-print-directory pytest || failed="$$failed pytest"; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; \
	echo "make test: lint, pgtap and pytest passed"

dashboard: ensure-postgres dev
	$(VENV)/bin/queuert dashboard --dsn "$(DATABASE_URL)" --schema "$(SCHEMA)"

# No ensure-postgres: a server that answers at $(DATABASE_URL) is used as is;
# otherwise `queuert demo` starts the embedded one in .queuert/pgdata.
demo: dev
	$(VENV)/bin/queuert demo --dsn "$(DATABASE_URL)"

demo-sql: ensure-postgres dev
	@scripts/demo.sh

# The torture run (RELIABILITY.md): 20,000 chains, worker kill -9s, connection
# kills and a PostgreSQL crash-restart, on a temporary cluster the run starts
# for itself (never the shared server); `make test` runs a short form via
# pytest. TORTURE_ARGS passes options, e.g. TORTURE_ARGS="--seed 42" or, for
# a server of yours, TORTURE_ARGS="--dsn URL --restart yes" (pg_ctlcluster).
.PHONY: torture
torture: ensure-postgres-binaries dev
	$(PY) tests_py/torture/run.py $(TORTURE_ARGS)

# The torture run on SQLite (docs/sqlite.md "The worker"): 6,000 chains,
# worker processes of both modes on one WAL file, kill -9s; `make test` runs
# a short form via pytest (tests_py/test_torture_sqlite.py).
.PHONY: torture-sqlite
torture-sqlite: dev
	$(PY) tests_py/torture/sqlite_run.py $(TORTURE_ARGS)

schema-dump: ensure-postgres dev
	DATABASE_URL="$(DATABASE_URL)" $(PY) scripts/schema_dump.py

# Benchmarks (benchmarks/README.md): server from QUEUERT_BENCH_DSN or $(DATABASE_URL).
#   make bench        full benchmark suite vs raw-SQL floors (< 15 min)
#   make bench-quick  one-minute smoke run of the benchmark harness
.PHONY: bench bench-quick
bench: ensure-postgres ensure-services dev
	$(PY) -m benchmarks.run --dsn "$${QUEUERT_BENCH_DSN:-$(DATABASE_URL)}"

bench-quick: ensure-postgres ensure-services dev
	$(PY) -m benchmarks.run --quick --dsn "$${QUEUERT_BENCH_DSN:-$(DATABASE_URL)}"
