#!/usr/bin/env bash
# Run the pgTAP suite (tests_sql/*.sql) with pg_prove against a brand-new
# database: CREATE DATABASE, CREATE EXTENSION pgtap, queuert migrate, pg_prove,
# DROP DATABASE (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE="${QUEUERT_TEST_DSN:-postgresql://postgres@127.0.0.1:5432/postgres}"
PY="${PY:-.venv/bin/python}"

shopt -s nullglob
files=(tests_sql/*.sql)
if (( ${#files[@]} == 0 )); then
    echo "pgtap: no tests_sql/*.sql files, nothing to run"
    exit 0
fi

db="queuert_pgtap_$$"
dbdsn=$("$PY" -c 'import sys; from psycopg.conninfo import make_conninfo; print(make_conninfo(sys.argv[1], dbname=sys.argv[2]))' "$BASE" "$db")

psql "$BASE" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $db"
trap 'psql "$BASE" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null' EXIT

psql "$dbdsn" -v ON_ERROR_STOP=1 -qc "CREATE EXTENSION pgtap"
"$PY" -m queuert.cli migrate --dsn "$dbdsn" >/dev/null
# pg_prove cannot take a conninfo string as --dbname: hand psql the
# connection through libpq's environment variables instead.
eval "$("$PY" - "$BASE" <<'PYEOF'
import shlex, sys
from psycopg.conninfo import conninfo_to_dict
env = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
       "sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "options": "PGOPTIONS"}
for key, value in conninfo_to_dict(sys.argv[1]).items():
    if key in env and value is not None:
        print(f"export {env[key]}={shlex.quote(str(value))}")
PYEOF
)"
pg_prove --dbname "$db" "${files[@]}"
