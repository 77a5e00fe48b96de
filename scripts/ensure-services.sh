#!/usr/bin/env bash
# Make sure the brokers and tools the notify tests use are there:
#   * Redis at 127.0.0.1:6379 (redis-server, redis-cli: the Cluster and fault
#     tests start their own servers on spare ports too),
#   * NATS with JetStream at 127.0.0.1:4222 (nats-server),
#   * pgbouncer (the tests start their own instance on a spare port).
# Installs what is missing with apt and starts a server that does not answer.
# Never restarts or reconfigures a server that is up (they are shared).
set -euo pipefail

HOST=127.0.0.1
REDIS_PORT=${QUEUERT_REDIS_PORT:-6379}
NATS_PORT=${QUEUERT_NATS_PORT:-4222}
STATE_DIR=${QUEUERT_SERVICES_DIR:-/tmp/queuert-services}

answers() {  # host port
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

updated=""
apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z "$updated" ]]; then
        apt-get update -qq
        updated=1
    fi
    echo "ensure-services: installing $* with apt"
    apt-get install -y -qq "$@" >/dev/null
}

wait_for() {  # name port
    for _ in $(seq 1 100); do
        if answers "$HOST" "$2"; then
            echo "ensure-services: $1 is accepting connections on $HOST:$2"
            return 0
        fi
        sleep 0.1
    done
    echo "ensure-services: $1 did not start on $HOST:$2" >&2
    return 1
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
command -v pgbouncer >/dev/null 2>&1 || missing+=(pgbouncer)
if ((${#missing[@]})); then
    # pgbouncer's package would start its own service on 6432, unwanted
    # (the tests start theirs): a policy-rc.d that refuses service starts,
    # only for this install and only when none is there.
    own_policy=""
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        own_policy=1
    fi
    apt_install "${missing[@]}"
    if [[ -n "$own_policy" ]]; then rm -f /usr/sbin/policy-rc.d; fi
fi

mkdir -p "$STATE_DIR"

if answers "$HOST" "$REDIS_PORT"; then
    echo "ensure-services: Redis is accepting connections on $HOST:$REDIS_PORT"
else
    echo "ensure-services: starting Redis on $HOST:$REDIS_PORT"
    redis-server --daemonize yes --bind "$HOST" --port "$REDIS_PORT" \
        --dir "$STATE_DIR" --save "" --appendonly no \
        --logfile "$STATE_DIR/redis.log" --pidfile "$STATE_DIR/redis.pid"
    wait_for Redis "$REDIS_PORT"
fi

if answers "$HOST" "$NATS_PORT"; then
    echo "ensure-services: NATS is accepting connections on $HOST:$NATS_PORT"
else
    echo "ensure-services: starting NATS (JetStream) on $HOST:$NATS_PORT"
    setsid nats-server -js -a "$HOST" -p "$NATS_PORT" -sd "$STATE_DIR/jetstream" \
        -l "$STATE_DIR/nats.log" -P "$STATE_DIR/nats.pid" </dev/null >/dev/null 2>&1 &
    wait_for NATS "$NATS_PORT"
fi
