"""Workload 1b, create-notify: creation throughput with a broker notifier.

The Python client's ``start_chain``, one per transaction (autocommit), in
alternating blocks of 250 in one database (so the machine's drift hits every
side alike; median of the per-block ratios, like the create-single ladder):

* today's path: the engine's NOTIFY on (``queuert.notify`` unset), no hooks;
* the broker paths, Redis and NATS: a connection with
  ``queuert.notify = 'none'`` (no NOTIFY, so no commit serialisation), every
  start inside ``transaction_hooks(notifier)``, which publishes its
  job_ready after commit (buffered: ``publish_nowait``).

Each pair's two blocks swap places every other round, and so do the two
brokers (round one ``today Redis today NATS``, round two ``NATS today Redis
today``): neither side always runs second. A broker's figure is
:func:`benchmarks.create_client.abba_ratio` of its pairs: the median over
two consecutive rounds (one pair each way) of the geometric mean of their
two ratios, so a block's place in its pair cancels within each term (the
second block of a pair reads a few per cent slower, whichever side; a
median of single-pair ratios picked from two humps). The garbage collector
runs before each block, outside the clock.

Reported as each broker path's rate over today's (target: >= 1, the broker
path must not cost creation throughput). Needs the Redis and NATS of
``scripts/ensure-services.sh``. One producer and no listener is where the
engine's NOTIFY is cheapest; ``create_notify_deploy`` adds the same
comparison with concurrent producers and idle listeners, as separate rows.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from typing import Any

import psycopg

import queuert
from queuert.notify.broker import BrokerNotifier
from queuert.notify.nats import NatsNotifier
from queuert.notify.redis import RedisNotifier

from . import create_notify_deploy
from .brokers import NATS_URL, REDIS_URL, drop_nats_bucket
from .common import Databases, Results, Sizes
from .create_client import abba_ratio

BLOCK = 250


def _metric(broker: str) -> str:
    return f"client.start_chain + {broker} hooks, NOTIFY off"


METRICS = [_metric("Redis"), _metric("NATS")]


def paired(dsn: str, n: int) -> tuple[dict[str, float], int]:
    """Each broker path's rate over today's (:func:`abba_ratio` of its
    pairs), and the hints dropped."""
    prefix = f"benchcreate{os.getpid()}"
    notifiers: dict[str, BrokerNotifier] = {
        "Redis": RedisNotifier(REDIS_URL, prefix=prefix),
        "NATS": NatsNotifier(NATS_URL, prefix=prefix),
    }
    block = max(1, min(BLOCK, n))
    try:
        with psycopg.connect(dsn, autocommit=True) as today, psycopg.connect(
            dsn, autocommit=True, options="-c queuert.notify=none"
        ) as broker:

            def timed(conn: psycopg.Connection[Any], notifier: BrokerNotifier | None) -> float:
                gc.collect()  # outside the clock: no block pays for another's garbage
                t = time.perf_counter()
                for i in range(block):
                    if notifier is not None:
                        with queuert.transaction_hooks(notifier):
                            queuert.start_chain(conn, "bench", {"n": i})
                    else:
                        queuert.start_chain(conn, "bench", {"n": i})
                return time.perf_counter() - t

            # warm-up blocks: statements prepared, caches loaded, brokers connected
            timed(today, None)
            for notifier in notifiers.values():
                timed(broker, notifier)
            today_times: dict[str, list[float]] = {name: [] for name in notifiers}
            broker_times: dict[str, list[float]] = {name: [] for name in notifiers}
            names = list(notifiers)
            for r in range(max(1, n // block)):
                # every other round reversed (brokers' order, and which side
                # of a pair runs first): neither side always runs second
                # (client_forms showed a bias by position); a round is
                # T R T N, the next N T R T
                first = r % 2 == 0
                for name in names if first else names[::-1]:
                    if first:
                        t_today = timed(today, None)
                        t_broker = timed(broker, notifiers[name])
                    else:
                        t_broker = timed(broker, notifiers[name])
                        t_today = timed(today, None)
                    today_times[name].append(t_today)
                    broker_times[name].append(t_broker)
        for notifier in notifiers.values():
            asyncio.run(notifier.flush(30))
        return {name: abba_ratio(today_times[name], broker_times[name]) for name in notifiers}, sum(
            n.dropped for n in notifiers.values()
        )
    finally:
        for notifier in notifiers.values():
            asyncio.run(notifier.close())
        asyncio.run(drop_nats_bucket(f"{prefix}-wake-hints"))  # ours: leave the shared NATS as found


def run(dbs: Databases, sizes: Sizes, results: Results) -> None:
    with dbs.fresh("create-notify") as dsn:
        ratios, dropped = paired(dsn, sizes.create_notify_n)
    for name, ratio in ratios.items():
        results.add("create-notify", _metric(name), ratio, "x today, paired")
    results.note(
        "create-notify",
        f"{sizes.create_notify_n:,} starts per broker side in blocks of {BLOCK}, each paired with a block of "
        f"today's path (engine NOTIFY on, no hooks), the pairs' order alternating, read as ABBA "
        f"(abba_ratio); {dropped} hint(s) dropped",
    )
    # the same comparison as deployments run it: listeners up, producers concurrent
    create_notify_deploy.run(dbs, sizes, results)
