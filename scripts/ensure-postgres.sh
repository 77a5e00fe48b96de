#!/usr/bin/env bash
# Make sure a PostgreSQL server accepts connections for the tests and the demo.
#
# * QUEUERT_TEST_DSN set: that server is used as is; we only check it answers.
# * Otherwise the local server at 127.0.0.1:5432: started with pg_ctlcluster
#   when it is down, installed with apt (and set to trust loopback
#   connections, as on the project's dev/CI machines) when absent.
set -euo pipefail

HOST=127.0.0.1
PORT=5432

can_connect() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$HOST" -p "$PORT" -t 2
    else
        (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
    fi
}

if [[ -n "${QUEUERT_TEST_DSN:-}" ]]; then
    if command -v psql >/dev/null 2>&1 && psql "$QUEUERT_TEST_DSN" -Atqc 'SELECT 1' >/dev/null; then
        echo "ensure-postgres: using QUEUERT_TEST_DSN"
        exit 0
    fi
    echo "ensure-postgres: QUEUERT_TEST_DSN is set but does not answer" >&2
    exit 1
fi

if can_connect; then
    echo "ensure-postgres: PostgreSQL is accepting connections on $HOST:$PORT"
    exit 0
fi

if ! compgen -G "/etc/postgresql/*/main" >/dev/null; then
    echo "ensure-postgres: PostgreSQL not installed; installing it with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql postgresql-contrib >/dev/null
    version=$(ls /etc/postgresql | sort -V | tail -1)
    hba="/etc/postgresql/$version/main/pg_hba.conf"
    # Dev/CI machine: the tests connect as postgres over loopback without a
    # password. Trust rules go first so they win over the packaged defaults.
    if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
        { printf 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n'; cat "$hba"; } >"$hba.new"
        mv "$hba.new" "$hba"
        chown postgres:postgres "$hba"
    fi
fi

# The cluster configured for port 5432, else the newest version's "main".
read -r version cluster < <(pg_lsclusters -h 2>/dev/null | awk -v p="$PORT" '$3 == p {print $1, $2; exit}') || true
if [[ -z "${version:-}" ]]; then
    version=$(ls /etc/postgresql | sort -V | tail -1)
    cluster=main
fi
echo "ensure-postgres: starting PostgreSQL $version/$cluster"
pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start || true

for _ in $(seq 1 60); do
    if can_connect; then
        echo "ensure-postgres: PostgreSQL $version is up"
        exit 0
    fi
    sleep 0.5
done
echo "ensure-postgres: PostgreSQL did not come up on $HOST:$PORT" >&2
exit 1
