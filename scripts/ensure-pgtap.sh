#!/usr/bin/env bash
# Make sure pg_prove and the pgtap extension are available, installing the
# Debian packages for the running server's major version when they are not.
set -euo pipefail

DSN="${QUEUERT_TEST_DSN:-postgresql://postgres@127.0.0.1:5432/postgres}"

major=$(psql "$DSN" -Atqc "SELECT current_setting('server_version_num')::int / 10000" 2>/dev/null || true)
if [[ -z "$major" ]]; then
    major=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -1)
fi
if [[ -z "$major" ]]; then
    echo "ensure-pgtap: cannot tell the PostgreSQL version (is the server up? run scripts/ensure-postgres.sh)" >&2
    exit 1
fi

have_ext=$(psql "$DSN" -Atqc "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgtap'" 2>/dev/null || echo 0)
if command -v pg_prove >/dev/null 2>&1 && [[ "$have_ext" == "1" ]]; then
    echo "ensure-pgtap: pg_prove and pgtap are available (PostgreSQL $major)"
    exit 0
fi

echo "ensure-pgtap: installing pgTAP for PostgreSQL $major with apt"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "postgresql-$major-pgtap" libtap-parser-sourcehandler-pgtap-perl >/dev/null
command -v pg_prove >/dev/null
have_ext=$(psql "$DSN" -Atqc "SELECT count(*) FROM pg_available_extensions WHERE name = 'pgtap'")
if [[ "$have_ext" != "1" ]]; then
    echo "ensure-pgtap: pgtap extension still not available to the server at $DSN" >&2
    exit 1
fi
echo "ensure-pgtap: installed"
