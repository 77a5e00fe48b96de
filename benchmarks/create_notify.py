"""Workload 1b, create-notify: creation throughput with a broker notifier.

The Python client's ``start_chain``, one per transaction (autocommit), in
alternating blocks of 250 in one database (so the machine's drift hits both
sides alike; median of the per-block ratios, like the create-single ladder):

* today's path: the engine's NOTIFY on (``queuert.notify`` unset), no hooks;
* the broker path: a second connection with ``queuert.notify = 'none'``
  (no NOTIFY, so no commit serialisation), every start inside
  ``transaction_hooks(RedisNotifier(...))``, which publishes its job_ready
  after commit (buffered: ``publish_nowait``).

Reported as the broker path's rate over today's (target: >= 1, the broker
path must not cost creation throughput). Needs the Redis of
``scripts/ensure-services.sh``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from typing import Any

import psycopg

import queuert
from queuert.notify.redis import RedisNotifier

from .common import Databases, Results, Sizes

BLOCK = 250
REDIS_URL = os.environ.get("QUEUERT_TEST_REDIS", "redis://127.0.0.1:6379/0")


def paired(dsn: str, n: int) -> tuple[float, int]:
    notifier = RedisNotifier(REDIS_URL, prefix=f"benchcreate{os.getpid()}")
    block = max(1, min(BLOCK, n))
    try:
        with psycopg.connect(dsn, autocommit=True) as today, psycopg.connect(dsn, autocommit=True) as broker:
            broker.execute("SET queuert.notify = 'none'")

            def timed(conn: psycopg.Connection[Any], hooks: bool) -> float:
                t = time.perf_counter()
                for i in range(block):
                    if hooks:
                        with queuert.transaction_hooks(notifier):
                            queuert.start_chain(conn, "bench", {"n": i})
                    else:
                        queuert.start_chain(conn, "bench", {"n": i})
                return time.perf_counter() - t

            timed(today, False)  # warm-up blocks: statements prepared, caches loaded
            timed(broker, True)
            ratios = []
            for _ in range(max(1, n // block)):
                ratios.append(timed(today, False) / timed(broker, True))
        asyncio.run(notifier.flush(30))
        return statistics.median(ratios), notifier.dropped
    finally:
        asyncio.run(notifier.close())


def run(dbs: Databases, sizes: Sizes, results: Results) -> None:
    with dbs.fresh("create-notify") as dsn:
        ratio, dropped = paired(dsn, sizes.ladder_n)
    results.add("create-notify", "client.start_chain + Redis hooks, NOTIFY off", ratio, "x today, paired")
    results.note(
        "create-notify",
        f"{sizes.ladder_n:,} starts per side in alternating blocks of {BLOCK}; "
        f"today's path = engine NOTIFY on, no hooks; {dropped} hint(s) dropped",
    )
