"""Where a created chain's CPU goes with a broker notifier (not in ``make
bench``): ``python -m benchmarks.create_notify_cpu [N] [--rounds R]``.

One producer, the create-notify workload's sides in alternating blocks of
``N`` starts (``start_chain``, one per transaction, autocommit): today's
path (engine NOTIFY on, no hooks), the NOTIFY off without hooks (the floor
a broker path can reach), and the NOTIFY off inside
``transaction_hooks(RedisNotifier)`` / ``(NatsNotifier)``. Per start, from
``/proc/<pid>/task/<tid>/schedstat`` (nanoseconds on a CPU): the caller's
thread, the process's other threads (notifier I/O thread, Redis writer),
the PostgreSQL backend, redis-server and nats-server (every thread), and
the wall time. Medians over the rounds. Needs the Redis and NATS of
``scripts/ensure-services.sh`` and a local PostgreSQL (root or the
postgres user, to read the backend's schedstat).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

import queuert
from queuert.notify.base import Notifier
from queuert.notify.broker import BrokerNotifier
from queuert.notify.nats import NatsNotifier
from queuert.notify.redis import RedisNotifier

from .common import Databases
from .brokers import NATS_URL, REDIS_URL, drop_nats_bucket
from .common import DEFAULT_DSN


def _cpu_ns(pid: int, tid: int | None = None) -> int:
    """CPU time of one thread, or of every thread of ``pid``."""
    tids = [tid] if tid is not None else [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    total = 0
    for t in tids:
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # a thread that ended
            pass
    return total


def _switches(pid: int, tid: int) -> int:
    """Voluntary context switches of one thread (a wait for the database's
    answer is one; a wait for the GIL another)."""
    with open(f"/proc/{pid}/task/{tid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    return 0


def _pid_of(name: str) -> int | None:
    out = subprocess.run(["pgrep", "-o", "-x", name], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def default_notifiers(prefix: str) -> dict[str, Notifier]:
    return {
        "Redis": RedisNotifier(REDIS_URL, prefix=prefix),
        "NATS": NatsNotifier(NATS_URL, prefix=prefix),
    }


def measure(
    dsn: str, n: int, rounds: int, make: Callable[[str], dict[str, Notifier]] = default_notifiers
) -> dict[str, dict[str, float]]:
    """Per side, per column, the median over ``rounds`` blocks of ``n``
    starts of the microseconds per start; ``make(prefix)`` gives the
    notifiers (one hooks side each)."""
    prefix = f"benchcpu{os.getpid()}"
    notifiers = make(prefix)
    me, caller = os.getpid(), threading.get_native_id()
    servers = {"redis": _pid_of("redis-server"), "nats": _pid_of("nats-server")}
    rows: dict[str, dict[str, list[float]]] = {}
    try:
        with psycopg.connect(dsn, autocommit=True) as today, psycopg.connect(
            dsn, autocommit=True, options="-c queuert.notify=none"
        ) as quiet:
            backends = {id(today): today.info.backend_pid, id(quiet): quiet.info.backend_pid}

            def block(conn: psycopg.Connection[Any], notifier: Notifier | None) -> Callable[[], None]:
                def go() -> None:
                    for i in range(n):
                        if notifier is not None:
                            with queuert.transaction_hooks(notifier):
                                queuert.start_chain(conn, "bench", {"n": i})
                        else:
                            queuert.start_chain(conn, "bench", {"n": i})

                return go

            sides = {
                "today (NOTIFY on)": (today, block(today, None)),
                "NOTIFY off, no hooks": (quiet, block(quiet, None)),
                **{f"{k} hooks, NOTIFY off": (quiet, block(quiet, v)) for k, v in notifiers.items()},
            }
            notifier_of: dict[str, Notifier | None] = {"today (NOTIFY on)": None, "NOTIFY off, no hooks": None}
            notifier_of.update({f"{k} hooks, NOTIFY off": v for k, v in notifiers.items()})
            for _, go in sides.values():  # warm-up
                go()
            for _ in range(rounds):
                for side, (conn, go) in sides.items():
                    backend = backends[id(conn)]
                    before = (
                        time.perf_counter(),
                        _cpu_ns(me, caller),
                        _cpu_ns(me),
                        _cpu_ns(backend),
                        *(_cpu_ns(p) if p else 0 for p in servers.values()),
                        _switches(me, caller),
                    )
                    go()
                    wall = time.perf_counter()
                    if isinstance(notifier_of[side], BrokerNotifier):  # its threads' work belongs to this block
                        asyncio.run(notifier_of[side].flush(30))  # type: ignore[union-attr]
                    after = (
                        wall,
                        _cpu_ns(me, caller),
                        _cpu_ns(me),
                        _cpu_ns(backend),
                        *(_cpu_ns(p) if p else 0 for p in servers.values()),
                        _switches(me, caller),
                    )
                    d = [a - b for a, b in zip(after, before)]
                    row = rows.setdefault(side, {})
                    for key, value in (
                        ("wall", d[0] * 1e6),
                        ("caller", d[1] / 1e3),
                        ("other threads", (d[2] - d[1]) / 1e3),
                        ("postgres", d[3] / 1e3),
                        ("redis-server", d[4] / 1e3),
                        ("nats-server", d[5] / 1e3),
                        ("caller waits", d[6]),
                    ):
                        row.setdefault(key, []).append(value / n)
    finally:
        for notifier in notifiers.values():
            if isinstance(notifier, BrokerNotifier):
                asyncio.run(notifier.close())
        asyncio.run(drop_nats_bucket(f"{prefix}-wake-hints"))
    return {side: {k: statistics.median(v) for k, v in row.items()} for side, row in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", type=int, nargs="?", default=500, help="starts per block")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    dbs = Databases(os.environ.get("QUEUERT_BENCH_DSN", DEFAULT_DSN))
    try:
        with dbs.fresh("create-notify-cpu") as dsn:
            table = measure(dsn, args.n, args.rounds)
    finally:
        dbs.close()
    print_table(table, args.n, args.rounds)


def print_table(table: dict[str, dict[str, float]], n: int, rounds: int) -> None:
    load = os.getloadavg()[0]
    print(f"us per start, median of {rounds} blocks of {n}; load {load:.1f}")
    cols = ["wall", "caller", "other threads", "postgres", "redis-server", "nats-server"]
    print(f"{'side':<28}" + "".join(f"{c:>14}" for c in cols) + f"{'CPU total':>12}{'caller waits':>14}")
    for side, row in table.items():
        total = sum(row[c] for c in cols[1:])
        cells = "".join(f"{row[c]:>14.1f}" for c in cols)
        print(f"{side:<28}" + cells + f"{total:>12.1f}{row['caller waits']:>14.2f}")


if __name__ == "__main__":
    main()
