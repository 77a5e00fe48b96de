"""create-notify, deployment-shaped (issue 11's reason for the broker path).

create_notify.py's row has one producer and no LISTENing backend: there the
engine's NOTIFY costs next to nothing. A deployment has idle workers
listening and several producers committing at once; then every NOTIFY is
queued in PostgreSQL's cluster-wide notify queue (a commit that notified
takes the global notify lock, serialising those commits) and each listening
backend is woken to read it. This variant runs that shape:

* ``LISTENERS`` idle workers per side, in one listener process: today's
  side, that many ``PostgresNotifier`` subscriptions (each its own LISTEN
  connection on the engine's channels), the broker sides, that many
  ``RedisNotifier`` / ``NatsNotifier`` subscriptions on the same prefix,
  each subscribed as the worker subscribes (``job_ready`` and ``job_lost``
  of its type). They count what they receive and claim nothing (a claim
  would make this a processing benchmark);
* ``PRODUCERS`` producer processes (a web tier's processes: separate
  processes, not threads sharing one GIL), each ``start_chain`` one per
  transaction (autocommit), today's path with NOTIFY on and no hooks, the
  broker paths with ``queuert.notify = 'none'`` inside
  ``transaction_hooks(notifier)``, each process with its own notifier.

The sides alternate in blocks: all producers run one side's block at once
(a barrier before and after, the parent times between them), then the
next side; each side goes first in turn from round to round. Reported per broker as the median over rounds of today's block
time over the broker's (higher is faster). Every listener process and
producer stays up through every side, so both sides pay for the same idle
processes; only who is woken differs.

4 listeners and 4 producers: a small real deployment on this 2-core
machine (four worker processes, four web processes), twice as many
committers as cores so that commits overlap, and four listening backends
for every NOTIFY.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.synchronize import Barrier, Event
from typing import Any

import psycopg

from .common import Databases, Results, Sizes

LISTENERS = 4
PRODUCERS = 4
BLOCK = 100  # starts per producer per block: 400 a side per round
SIDES = ("today", "Redis", "NATS")


def metric(broker: str) -> str:
    return f"{PRODUCERS} producers, {LISTENERS} listeners: start_chain + {broker} hooks, NOTIFY off"


METRICS = [metric("Redis"), metric("NATS")]


def rotated(round_no: int) -> tuple[str, ...]:
    """The sides' order in a round: each goes first in turn, so that no
    side always follows the same one (a broker block's last batch, sent up
    to a gap after the block, lands in the next block)."""
    k = round_no % len(SIDES)
    return SIDES[k:] + SIDES[:k]


def _broker_notifier(side: str, prefix: str) -> Any:
    from queuert.notify.nats import NatsNotifier
    from queuert.notify.redis import RedisNotifier

    from .brokers import NATS_URL, REDIS_URL

    if side == "Redis":
        return RedisNotifier(REDIS_URL, prefix=prefix)
    return NatsNotifier(NATS_URL, prefix=prefix)


def _listen(dsn: str, prefix: str, n: int, ready: Event, stop: Event, counts: Any) -> None:
    """The idle workers' subscriptions, until ``stop``; ``counts[side]`` is
    the number of job_ready events its subscribers received."""
    from queuert.notify.postgres import PostgresNotifier

    async def main() -> None:
        notifiers: dict[str, list[Any]] = {
            "today": [PostgresNotifier(dsn) for _ in range(n)],
            "Redis": [_broker_notifier("Redis", prefix) for _ in range(n)],
            "NATS": [_broker_notifier("NATS", prefix) for _ in range(n)],
        }
        received = {side: 0 for side in notifiers}

        def counter(side: str) -> Callable[[Any], None]:
            def on_event(event: Any) -> None:
                if event.kind == "job_ready":
                    received[side] += 1

            return on_event

        for side, group in notifiers.items():
            for notifier in group:
                await notifier.subscribe(counter(side), kinds=("job_ready", "job_lost"), type_names=["bench"])
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the last blocks' events still in flight
        for side, value in received.items():
            counts[side] = value
        for group in notifiers.values():
            for notifier in group:
                await notifier.close()

    asyncio.run(main())


def _produce(dsn: str, prefix: str, rounds: int, block: int, barrier: Barrier) -> None:
    """One producer: a warm-up block per side, then per round one block per
    side between two barrier waits (the parent's clock)."""
    import queuert

    brokers = {side: _broker_notifier(side, prefix) for side in SIDES[1:]}
    try:
        with psycopg.connect(dsn, autocommit=True, application_name="bench-producer") as today, psycopg.connect(
            dsn, autocommit=True, options="-c queuert.notify=none", application_name="bench-producer"
        ) as quiet:

            def run_block(side: str) -> None:
                if side == "today":
                    for i in range(block):
                        queuert.start_chain(today, "bench", {"n": i})
                    return
                notifier = brokers[side]
                for i in range(block):
                    with queuert.transaction_hooks(notifier):
                        queuert.start_chain(quiet, "bench", {"n": i})

            for side in SIDES:  # statements prepared, brokers connected
                run_block(side)
            for r in range(rounds):
                for side in rotated(r):
                    barrier.wait()
                    run_block(side)
                    barrier.wait()
            for notifier in brokers.values():
                asyncio.run(notifier.flush(30))
    except BaseException:
        barrier.abort()  # the parent and the other producers stop waiting for this one
        raise
    finally:
        for notifier in brokers.values():
            asyncio.run(notifier.close())


def _cpu_ticks(pids: list[int]) -> int:
    """utime + stime of processes (every thread), in clock ticks."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def _backends(dsn: str, application_name: str) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = %s",
            (application_name,),
        ).fetchall()
    return [r[0] for r in rows]


class WaitSampler:
    """Counts the producers' backends' wait events in pg_stat_activity,
    sampled every ``interval`` seconds into the side that is running (a
    probe only: its own backend's queries load the machine)."""

    def __init__(self, dsn: str, interval: float = 0.002) -> None:
        self.side: str | None = None
        self.counts: dict[str, Counter[str]] = {side: Counter() for side in SIDES}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(dsn, interval), daemon=True)
        self._thread.start()

    def _run(self, dsn: str, interval: float) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                side = self.side
                if side is not None:
                    rows = conn.execute(
                        "SELECT coalesce(wait_event_type || ':' || wait_event, state) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND application_name = 'bench-producer'"
                    ).fetchall()
                    self.counts[side].update(r[0] for r in rows)
                time.sleep(interval)

    def close(self) -> dict[str, dict[str, int]]:
        self._stop.set()
        self._thread.join(5)
        return {side: dict(c.most_common(6)) for side, c in self.counts.items()}


def paired(
    dsn: str,
    rounds: int,
    block: int = BLOCK,
    listeners: int = LISTENERS,
    producers: int = PRODUCERS,
    sample_waits: bool = False,
) -> dict[str, Any]:
    """Per side: block times and CPU per start (producer processes, their
    backends, the LISTEN backends); and what the listeners received."""
    ctx = mp.get_context("spawn")  # no state of the harness inherited
    prefix = f"benchdeploy{os.getpid()}"
    ready, stop = ctx.Event(), ctx.Event()
    manager = ctx.Manager()
    counts = manager.dict()
    listener = ctx.Process(target=_listen, args=(dsn, prefix, listeners, ready, stop, counts))
    listener.start()
    procs: list[Any] = []
    try:
        if not ready.wait(60):
            raise RuntimeError("listeners did not subscribe within 60 s")
        barrier = ctx.Barrier(producers + 1)
        procs = [ctx.Process(target=_produce, args=(dsn, prefix, rounds, block, barrier)) for _ in range(producers)]
        for p in procs:
            p.start()
        tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
        walls: dict[str, list[float]] = {side: [] for side in SIDES}
        cpu: dict[str, dict[str, int]] = {side: {} for side in SIDES}
        groups: dict[str, list[int]] = {}
        sampler = WaitSampler(dsn) if sample_waits else None
        for r in range(rounds):
            for side in rotated(r):
                barrier.wait(120)
                if not groups:  # every producer has connected by now (its warm-up ran)
                    groups = {
                        "producers": [p.pid for p in procs if p.pid],
                        "producer backends": _backends(dsn, "bench-producer"),
                        "LISTEN backends": _backends(dsn, "queuert-listen"),
                        "listener process": [listener.pid] if listener.pid else [],
                    }
                before = {g: _cpu_ticks(pids) for g, pids in groups.items()}
                t = time.perf_counter()
                if sampler is not None:
                    sampler.side = side
                barrier.wait(120)
                walls[side].append(time.perf_counter() - t)
                if sampler is not None:
                    sampler.side = None
                for g, pids in groups.items():
                    cpu[side][g] = cpu[side].get(g, 0) + _cpu_ticks(pids) - before[g]
        for p in procs:
            p.join(60)
        stop.set()
        listener.join(60)
        starts = rounds * block * producers
        with_warm_up = starts + block * producers
        return {
            "ratios": {
                side: statistics.median(t / b for t, b in zip(walls["today"], walls[side])) for side in SIDES[1:]
            },
            "rates": {side: block * producers / statistics.median(walls[side]) for side in SIDES},
            "cpu_us": {side: {g: v * tick_us / starts for g, v in cpu[side].items()} for side in SIDES},
            # job_ready events per start, over every subscriber (warm-up blocks included)
            "received": {side: value / with_warm_up for side, value in counts.items()},
            "starts": starts,
            "waits": sampler.close() if sampler is not None else {},
        }
    finally:
        stop.set()
        for p in [*procs, listener]:
            if p.is_alive():
                p.terminate()
            p.join(5)
        manager.shutdown()
        from .brokers import drop_nats_bucket

        asyncio.run(drop_nats_bucket(f"{prefix}-wake-hints"))


def run(dbs: Databases, sizes: Sizes, results: Results) -> None:
    started = time.perf_counter()
    with dbs.fresh("create-notify-deploy") as dsn:
        out = paired(dsn, sizes.create_notify_deploy_rounds)
    took = time.perf_counter() - started
    for side, ratio in out["ratios"].items():
        results.add("create-notify", metric(side), ratio, "x today, paired")
    received = ", ".join(f"{side} {v:.2f}" for side, v in out["received"].items())
    rates = ", ".join(f"{side} {rate:,.0f}" for side, rate in out["rates"].items())
    cpu = "; ".join(
        f"{side} " + ", ".join(f"{g} {v:.0f}" for g, v in groups.items()) for side, groups in out["cpu_us"].items()
    )
    results.note(
        "create-notify",
        f"deployment shape ({took:.1f} s): {PRODUCERS} producer processes x {BLOCK} starts per block, "
        f"{sizes.create_notify_deploy_rounds} rounds of one block per side (median block, starts/s: {rates}); "
        f"{LISTENERS} idle listeners per side received job_ready events per start (all of them together): {received}; "
        f"CPU us per start ({out['starts']:,} a side, clock ticks of 10 ms): {cpu}",
    )


if __name__ == "__main__":
    import argparse

    from .common import DEFAULT_DSN

    parser = argparse.ArgumentParser(description="create-notify's deployment shape, printed (not in make bench)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--block", type=int, default=BLOCK)
    parser.add_argument("--listeners", type=int, default=LISTENERS)
    parser.add_argument("--producers", type=int, default=PRODUCERS)
    parser.add_argument("--waits", action="store_true", help="sample the producers' wait events")
    args = parser.parse_args()
    databases = Databases(os.environ.get("QUEUERT_BENCH_DSN", DEFAULT_DSN))
    try:
        with databases.fresh("create-notify-deploy") as target:
            t0 = time.perf_counter()
            result = paired(target, args.rounds, args.block, args.listeners, args.producers, args.waits)
    finally:
        databases.close()
    print(f"load {os.getloadavg()[0]:.1f}, {time.perf_counter() - t0:.1f} s")
    for key, value in result.items():
        print(key, value)
