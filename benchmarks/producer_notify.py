"""What the engine's NOTIFY costs a producer that publishes through a broker
(issue 11, gap 5): should ``transaction_hooks(broker)`` turn it off for the
caller's transaction?

The caller's transaction is ``BEGIN``, ``start_chain``, ``COMMIT`` (three
round trips, psycopg's ``conn.transaction()``), by ``producers`` threads at
once, each on its own connection. Sides, in alternating blocks in one
database (median of per-block ratios to ``notify``):

* ``notify``: the engine's NOTIFY on (today's producer without a role setting);
* ``role none``: ``queuert.notify = 'none'`` for the session, as the role or
  database setting docs/notify.md recommends gives it (no round trip);
* ``SET LOCAL``: a ``SET LOCAL queuert.notify = 'none'`` statement of its
  own in each transaction (one more round trip: what the hooks would cost
  if the setting could not ride along with the first call);
* ``ride-along``: the setting inside the call's own statement
  (``set_config(..., true)`` evaluated as an argument of ``start_chain``):
  the best a client-side switch could do;
* ``pipelined``: ``SELECT set_config(...)`` and the call sent together in
  psycopg's pipeline mode (one round trip, any statement);
* ``hooks``: the Python client as a user runs it,
  ``transaction_hooks(RedisNotifier)`` around ``conn.transaction()`` around
  ``queuert.start_chain``, which pipelines the setting with the call
  (queuert._engine_quiet); ``hooks, NOTIFY kept``: the same with the engine's
  NOTIFY left on (the client before this change).

Run: ``python -m benchmarks.producer_notify [--producers 1,4] [--blocks 8]``
(needs PostgreSQL at QUEUERT_BENCH_DSN, default 127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

import queuert
from queuert.notify.redis import RedisNotifier

from .common import Databases

BLOCK = 200
REDIS_URL = os.environ.get("QUEUERT_TEST_REDIS", "redis://127.0.0.1:6379/0")
SIDES = ("notify", "role none", "SET LOCAL", "ride-along", "pipelined", "hooks, NOTIFY kept", "hooks")

_PLAIN = "SELECT id FROM queuert.start_chain(type_name => %s, input => %s::jsonb)"
_RIDE = (
    "SELECT id FROM queuert.start_chain(type_name => CASE WHEN "
    "set_config('queuert.notify', 'none', true) IS NOT NULL THEN %s END, input => %s::jsonb)"
)


def _one(side: str, notifiers: dict[str, Any]) -> Callable[[psycopg.Connection[Any], int], None]:
    if side.startswith("hooks"):
        notifier = notifiers[side]

        def client(conn: psycopg.Connection[Any], i: int) -> None:
            with queuert.transaction_hooks(notifier):
                with conn.transaction():
                    queuert.start_chain(conn, "bench", {"n": i})

        return client

    def run(conn: psycopg.Connection[Any], i: int) -> None:
        with conn.transaction():
            if side == "SET LOCAL":
                conn.execute("SET LOCAL queuert.notify = 'none'")
            if side == "pipelined":
                with conn.pipeline():
                    conn.execute("SELECT set_config('queuert.notify', 'none', true)")
                    conn.execute(_PLAIN, ("bench", f'{{"n": {i}}}')).fetchall()
                return
            conn.execute(_RIDE if side == "ride-along" else _PLAIN, ("bench", f'{{"n": {i}}}'))

    return run


def _block(conns: list[psycopg.Connection[Any]], side: str, notifiers: dict[str, Any]) -> float:
    """Seconds for every producer to run BLOCK transactions of ``side``."""
    one = _one(side, notifiers)
    start = threading.Barrier(len(conns) + 1)

    def producer(conn: psycopg.Connection[Any]) -> None:
        start.wait()
        for i in range(BLOCK):
            one(conn, i)

    threads = [threading.Thread(target=producer, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def measure(dsn: str, producers: int, blocks: int) -> dict[str, list[float]]:
    """Per-block rate ratios of each side to ``notify``."""
    plain = [psycopg.connect(dsn) for _ in range(producers)]
    quiet = [psycopg.connect(dsn, options="-c queuert.notify=none") for _ in range(producers)]
    prefix = f"benchquiet{os.getpid()}"
    kept = RedisNotifier(REDIS_URL, prefix=prefix)
    kept.database_notify = True  # the client before: NOTIFY left on
    notifiers: dict[str, Any] = {"hooks, NOTIFY kept": kept, "hooks": RedisNotifier(REDIS_URL, prefix=prefix)}
    try:
        conns = {side: plain for side in SIDES}
        conns["role none"] = quiet
        for side in SIDES:  # warm-up: plans cached, pages loaded, broker connected
            _block(conns[side], side, notifiers)
        ratios: dict[str, list[float]] = {side: [] for side in SIDES[1:]}
        for b in range(blocks):
            order = SIDES[1:] if b % 2 == 0 else tuple(reversed(SIDES[1:]))
            for side in order:
                ratios[side].append(
                    _block(conns["notify"], "notify", notifiers) / _block(conns[side], side, notifiers)
                )
        return ratios
    finally:
        for c in plain + quiet:
            c.close()
        for n in notifiers.values():
            asyncio.run(n.close())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--producers", default="1,4")
    parser.add_argument("--blocks", type=int, default=8)
    args = parser.parse_args()
    base = os.environ.get("QUEUERT_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
    dbs = Databases(base)
    try:
        with dbs.fresh("producer_notify") as dsn:
            load = os.getloadavg()[0]
            for n in (int(x) for x in args.producers.split(",")):
                ratios = measure(dsn, n, args.blocks)
                cells = ", ".join(
                    f"{side} {statistics.median(r):.2f}x ({min(r):.2f}-{max(r):.2f})" for side, r in ratios.items()
                )
                print(f"producers {n} (load {load:.1f}), rate over notify: {cells}")
    finally:
        dbs.close()


if __name__ == "__main__":
    main()
