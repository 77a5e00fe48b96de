#!/usr/bin/env bash
# The pytest suite on the embedded PostgreSQL 16 (queuert[embedded]): a
# throwaway data directory, a spare port, stopped and deleted afterwards.
# Its client tools (pg_dump 16) come first on PATH, so tests that shell out
# to them match the server. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
dir=$(mktemp -d "${TMPDIR:-/tmp}/queuert-pg16.XXXXXX")
stop() {
    "$VENV/bin/queuert" dev --pgdata "$dir/pgdata" --stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT
dsn=$("$VENV/bin/queuert" dev --embedded --no-migrate --pgdata "$dir/pgdata")
bin=$("$VENV/bin/python" -c 'from queuert.embedded import binaries; print(binaries())')
echo "pytest-pg16: $("$bin/postgres" --version) at $dsn"
PATH="$bin:$PATH" QUEUERT_TEST_DSN="$dsn" "$VENV/bin/pytest" "$@"
