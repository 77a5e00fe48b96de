#!/usr/bin/env bash
# Make sure the PostgreSQL server binaries (initdb, pg_ctl) and psql exist:
# the torture run and the fault tests start throwaway clusters of their own
# (tests_py/pgcluster.py), and the guides' shell snippets call psql. Needed
# even when QUEUERT_TEST_DSN points at a remote server.
set -euo pipefail

have_server() {
    [[ -n "${QUEUERT_PG_BINDIR:-}" && -x "${QUEUERT_PG_BINDIR}/initdb" ]] && return 0
    compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && return 0
    command -v initdb >/dev/null 2>&1
}

if have_server && command -v psql >/dev/null 2>&1; then
    exit 0
fi
echo "ensure-postgres-binaries: installing postgresql (initdb, pg_ctl, psql) with apt"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq postgresql >/dev/null
