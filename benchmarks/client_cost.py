"""Where a start_chains x1,000 call's time goes, client against its raw SQL
call (not in ``make bench``): ``python -m benchmarks.client_cost [--rounds N]
[--heap N]``.

The four batch forms of create-client (``create_client.client_forms``: raw call and
``queuert.start_chains`` on a sync Connection, raw call and
``queuert.aio.start_chains`` on an AsyncConnection), blocks of 10 calls of
1,000 items, rotated per round, with per call:

- wall: the block's wall clock;
- cpu: this process's CPU (``/proc/self/schedstat``: user and kernel time,
  which callgrind does not count);
- backend: the PostgreSQL backend's CPU (its ``/proc/<pid>/schedstat``);
- gc: time in the cyclic garbage collector (``gc.callbacks``), and how many
  of its passes ran, full (generation 2) passes apart.

``--heap N`` keeps N more garbage-collected objects alive during the run,
as an application does: a full pass of the collector visits every one of
them. ``--bench-imports`` imports every workload of ``benchmarks.run`` first
(redis, nats, OpenTelemetry...), so the heap is the one create-client runs
in under ``make bench`` (about 62,000 objects against 40,000). Also prints the per-round ratio
raw / client, as create-client reports it.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg

from queuert import aio, client
from queuert.types import ChainSpec

from .common import Databases
from .create import START_MANY
from .create_client import client_forms
from .common import DEFAULT_DSN

BLOCK = 10
SIZE = 1000
FORMS = ("raw sync", "client", "raw async", "aio")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


class _GcClock:
    """Time in the collector, passes and full passes, since reset()."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.passes = 0
        self.full = 0
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def reset(self) -> None:
        self.seconds, self.passes, self.full = 0.0, 0, 0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._start
        self.passes += 1
        self.full += info["generation"] == 2


def measure(dsn: str, rounds: int) -> dict[str, list[tuple[float, ...]]]:
    counter = iter(range(10**9))

    def values() -> list[dict[str, int]]:
        return [{"n": next(counter)} for _ in range(SIZE)]

    def raw_args() -> list[str]:
        return [json.dumps([{"type_name": "bench", "input": v} for v in values()]) for _ in range(BLOCK)]

    loop = asyncio.new_event_loop()
    conn = psycopg.connect(dsn, autocommit=True)
    aconn = loop.run_until_complete(psycopg.AsyncConnection.connect(dsn, autocommit=True))

    def raw_sync() -> Callable[[], None]:
        args = raw_args()

        def body() -> None:
            for a in args:
                conn.execute(START_MANY, (a,)).fetchall()

        return body

    def sync_client() -> Callable[[], None]:
        inputs = [values() for _ in range(BLOCK)]

        def body() -> None:
            for vs in inputs:
                client.start_chains(conn, [ChainSpec("bench", v) for v in vs])

        return body

    def raw_async() -> Callable[[], None]:
        args = raw_args()

        async def body() -> None:
            for a in args:
                cur = await aconn.execute(START_MANY, (a,))
                await cur.fetchall()

        return lambda: loop.run_until_complete(body())

    def async_client() -> Callable[[], None]:
        inputs = [values() for _ in range(BLOCK)]

        async def body() -> None:
            for vs in inputs:
                await aio.start_chains(aconn, [ChainSpec("bench", v) for v in vs])

        return lambda: loop.run_until_complete(body())

    forms: dict[str, tuple[Callable[[], Callable[[], None]], int]] = {
        "raw sync": (raw_sync, conn.info.backend_pid),
        "client": (sync_client, conn.info.backend_pid),
        "raw async": (raw_async, aconn.info.backend_pid),
        "aio": (async_client, aconn.info.backend_pid),
    }
    clock = _GcClock()
    me = os.getpid()
    out: dict[str, list[tuple[float, ...]]] = {name: [] for name in FORMS}
    try:
        for make, _ in forms.values():  # warm-up: statements prepared
            make()()
        for r in range(rounds):
            for name in FORMS[r % 4:] + FORMS[:r % 4]:
                make, backend = forms[name]
                body = make()
                clock.reset()
                cpu0, be0, t0 = _cpu_seconds(me), _cpu_seconds(backend), time.perf_counter()
                body()
                wall = time.perf_counter() - t0
                cpu, be = _cpu_seconds(me) - cpu0, _cpu_seconds(backend) - be0
                out[name].append((wall, cpu, be, clock.seconds, clock.passes, clock.full))
    finally:
        loop.run_until_complete(aconn.close())
        loop.close()
        conn.close()
    return out


def report(out: dict[str, list[tuple[float, ...]]]) -> None:
    print(f"per call of {SIZE:,} items, median of {len(out['client'])} blocks of {BLOCK}; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'form':10} {'wall ms':>8} {'cpu ms':>7} {'backend':>8} {'gc ms':>6} {'passes':>7} {'full':>5}")
    for name, rows in out.items():
        cols = list(zip(*rows))
        ms = [statistics.median(c) * 1000 / BLOCK for c in cols[:4]]
        counts = [sum(c) / len(c) / BLOCK for c in cols[4:]]
        print(f"{name:10} {ms[0]:8.2f} {ms[1]:7.2f} {ms[2]:8.2f} {ms[3]:6.2f} {counts[0]:7.1f} {counts[1]:5.2f}")
    for mine, raw in (("client", "raw sync"), ("aio", "raw async")):
        ratios = [r[0] / c[0] for r, c in zip(out[raw], out[mine])]
        extra = statistics.median(c[1] - r[1] for r, c in zip(out[raw], out[mine])) * 1000 / BLOCK
        print(f"{mine} / {raw}: {statistics.median(ratios):.2f}x (per round), "
              f"client CPU over raw {extra:+.2f} ms a call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--heap", type=int, default=0, help="extra live objects (an application's heap)")
    parser.add_argument("--bench-imports", action="store_true", help="the heap of make bench's process")
    parser.add_argument("--ratios", type=int, default=0, help="create-client's batch ratios, N rounds")
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    args = parser.parse_args()
    if args.bench_imports or args.ratios:
        from . import run

        run.workloads()
    if args.ratios:
        dbs = Databases(args.dsn)
        try:
            with dbs.fresh("client-cost") as dsn:
                ratios = client_forms(dsn, args.ratios, batched=True)
        finally:
            dbs.close()
        print(" ".join(f"{k} {v:.3f}x" for k, v in ratios.items() if "/ raw" in k))
        return
    ballast = [[i] for i in range(args.heap)]  # lists: tracked by the collector
    gc.collect()
    print(f"objects tracked by the collector at start: {len(gc.get_objects()):,}")
    dbs = Databases(args.dsn)
    try:
        with dbs.fresh("client-cost") as dsn:
            report(measure(dsn, args.rounds))
    finally:
        dbs.close()
    del ballast


if __name__ == "__main__":
    main()
