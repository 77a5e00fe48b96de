"""Is the client's single start slower than its raw call, or is it the
harness? (issue 16 item 2; not in ``make bench``):
``python -m benchmarks.client_pairs [--rounds N] [--block N] [--batch] [--order abab|abba|rotate] [--collect]``.

Two forms on one sync ``psycopg.Connection`` in one database, their blocks
back to back and nothing else between them: the raw
``SELECT * FROM queuert.start_chain(...)`` (its JSON serialised before the
clock, as create-client's raw form) and ``queuert.start_chain`` (from
Python values); with ``--batch``, the raw ``start_chains`` call and
``queuert.start_chains`` with its ChainSpecs built in the block. Per block:
wall clock, this process's CPU and the backend's (``/proc/<pid>/schedstat``:
user and kernel time), and time in the cyclic garbage collector. Orders:
``abab`` (raw first every round), ``abba`` (raw first in even rounds, the
client in odd ones), ``rotate`` (create-client's old order: each block after
a floor block, the four forms' turns rotated per round, so a pair's two
blocks are one to three blocks apart). ``--collect``: ``gc.collect()``
before every block, outside its clock (as create-client does since the
client16c pass).

Prints, per form, the median wall / CPU / backend / collector per call, and
raw / client as the median of per-pair ratios, split by which form went
first: a harness bias shows as the two orders disagreeing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
from collections.abc import Callable

import psycopg

from queuert import client
from queuert.types import ChainSpec

from .client_cost import _cpu_seconds, _GcClock
from .common import Databases
from .create import START_MANY, START_ONE
from .create_client import abba_ratio
from .floors import FLOOR_DDL, INSERT_ONE, INSERT_UNNEST
from .common import DEFAULT_DSN

Sample = tuple[float, float, float, float]  # wall, cpu, backend, gc (seconds)


def measure(
    dsn: str, rounds: int, block: int, batched: bool, order: str, collect: bool = False
) -> list[tuple[bool, Sample, Sample]]:
    """[(raw went first, raw sample, client sample)] per round."""
    size = 1000 if batched else 1
    counter = iter(range(10**9))

    def values() -> list[dict[str, int]]:
        return [{"n": next(counter)} for _ in range(size)]

    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute(FLOOR_DDL)
    pid, me = conn.info.backend_pid, os.getpid()

    def raw() -> Callable[[], None]:
        if batched:
            args = [json.dumps([{"type_name": "bench", "input": v} for v in values()]) for _ in range(block)]

            def body() -> None:
                for a in args:
                    conn.execute(START_MANY, (a,)).fetchall()
        else:
            texts = [json.dumps(values()[0]) for _ in range(block)]

            def body() -> None:
                for t in texts:
                    conn.execute(START_ONE, ("bench", t)).fetchall()

        return body

    def mine() -> Callable[[], None]:
        inputs = [values() for _ in range(block)]
        if batched:

            def body() -> None:
                for vs in inputs:
                    client.start_chains(conn, [ChainSpec("bench", v) for v in vs])
        else:

            def body() -> None:
                for vs in inputs:
                    client.start_chain(conn, "bench", vs[0])

        return body

    def floor() -> Callable[[], None]:
        rows = [[json.dumps(v) for v in values()] for _ in range(block)]

        def body() -> None:
            for r in rows:
                conn.execute(INSERT_UNNEST if batched else INSERT_ONE, (r,) if batched else (r[0],))

        return body

    clock = _GcClock()

    def timed(make: Callable[[], Callable[[], None]]) -> Sample:
        body = make()
        if collect:
            gc.collect()
        clock.reset()
        c0, b0, t0 = _cpu_seconds(me), _cpu_seconds(pid), time.perf_counter()
        body()
        wall = time.perf_counter() - t0
        return wall, _cpu_seconds(me) - c0, _cpu_seconds(pid) - b0, clock.seconds

    out = []
    try:
        for make in (floor, raw, mine):  # warm-up: statements prepared
            make()()
        for r in range(rounds):
            if order == "rotate":  # floor, form, floor, form ...; the turns rotate
                forms = ["raw", "client", "other", "other"]
                turn = forms[r % 4:] + forms[:r % 4]
                got: dict[str, Sample] = {}
                for name in turn:
                    timed(floor)
                    if name == "other":
                        timed(floor)  # stands in for the async forms' blocks
                    else:
                        got[name] = timed(raw if name == "raw" else mine)
                out.append((turn.index("raw") < turn.index("client"), got["raw"], got["client"]))
                continue
            raw_first = order == "abab" or r % 2 == 0
            if raw_first:
                a = timed(raw)
                b = timed(mine)
            else:
                b = timed(mine)
                a = timed(raw)
            out.append((raw_first, a, b))
    finally:
        conn.close()
    return out


def report(out: list[tuple[bool, Sample, Sample]], block: int, batched: bool) -> None:
    unit = "call of 1,000 items" if batched else "start"
    print(f"per {unit}, {len(out)} pairs of blocks of {block}; load {os.getloadavg()[0]:.1f}")
    print(f"{'form':8} {'wall us':>9} {'cpu us':>8} {'backend':>8} {'gc us':>7}")
    for name, k in (("raw", 1), ("client", 2)):
        cols = list(zip(*(p[k] for p in out)))
        us = [statistics.median(c) * 1e6 / block for c in cols]
        print(f"{name:8} {us[0]:9.1f} {us[1]:8.1f} {us[2]:8.1f} {us[3]:7.1f}")

    def ratio(pairs: list[tuple[bool, Sample, Sample]]) -> str:
        if not pairs:
            return "-"
        return f"{statistics.median(p[1][0] / p[2][0] for p in pairs):.3f}x ({len(pairs)})"

    extra_cpu = statistics.median((p[2][1] - p[1][1]) * 1e6 / block for p in out)
    extra_be = statistics.median((p[2][2] - p[1][2]) * 1e6 / block for p in out)
    print(f"raw / client wall: all {ratio(out)}, raw first {ratio([p for p in out if p[0]])}, "
          f"client first {ratio([p for p in out if not p[0]])}; "
          f"ABBA (create-client's) {abba_ratio([p[1][0] for p in out], [p[2][0] for p in out]):.3f}x")
    print(f"client over raw per {unit}: CPU {extra_cpu:+.1f} us, backend {extra_be:+.1f} us")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=40)
    p.add_argument("--block", type=int, default=0, help="calls a block (default 50 single, 10 batch)")
    p.add_argument("--batch", action="store_true")
    p.add_argument("--order", choices=("abab", "abba", "rotate"), default="abba")
    p.add_argument("--collect", action="store_true", help="gc.collect() before every block")
    p.add_argument("--dsn", default=DEFAULT_DSN)
    a = p.parse_args()
    block = a.block or (10 if a.batch else 50)
    dbs = Databases(a.dsn)
    try:
        with dbs.fresh("client-pairs") as dsn:
            report(measure(dsn, a.rounds, block, a.batch, a.order, a.collect), block, a.batch)
    finally:
        dbs.close()
    gc.collect()


if __name__ == "__main__":
    main()


