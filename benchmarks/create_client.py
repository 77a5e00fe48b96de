"""create-client: the client as users call it, next to the SQL call it makes
(issue 16 items 1-2).

Four forms, in one database: the raw SQL call on a sync
``psycopg.Connection``, ``queuert.start_chain(s)``, the raw call on a
``psycopg.AsyncConnection`` and ``queuert.aio.start_chain(s)``; single
starts (one per transaction, autocommit) and batches of 1,000 items. Each
raw form calls exactly the SQL function its client form calls, with its
input already serialised (the raw side gets its JSON for free); each client
form starts from Python values, as an application does (the batch builds
its ChainSpecs in the timed block too).

The judged figures compare a client form with the raw form on the same kind
of connection, so those two run as a **pair of adjacent blocks** (ABBA:
which of the two goes first alternates round by round, and the two pairs'
order in a round too), each pair after one block of the floor's (single
INSERT, or INSERT .. unnest of 1,000 rows), which the ``FORM / floor`` rows
are taken against. A pair's ratio is read with the one in the next round,
whose order is the reverse (:func:`abba_ratio`). Until the client16c pass every form's block followed a
floor block and the forms rotated through four positions, so a client
block and its raw block of the same round were one to three blocks apart,
three rounds in four with the raw block first: the per-round ratio then
carried the machine's drift over those blocks and the order's own bias
(benchmarks/README.md, "client16c").

Every block's inputs are made before its clock starts, then the cyclic
garbage collector is run (``gc.collect()``, outside the clock), so a block
starts from the same collector state whatever ran before it: the passes its
own allocations cause are in its time, a full pass owed to the previous
block's garbage (or to this block's inputs) is not. Besides the wall clock,
each block's process CPU time (``time.process_time``: user and kernel, the
event loop included for the async forms) gives ``client CPU over raw``, the
microseconds a call the client adds on this side of the socket, which does
not move with the server's or the disk's noise as the wall clock does.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg

from queuert import aio, client
from queuert.types import ChainSpec

from .common import Databases, Results, Sizes
from .create import START_MANY, START_ONE
from .floors import FLOOR_DDL, INSERT_ONE, INSERT_UNNEST

FORMS = ("raw sync", "client", "raw async", "aio")
#: (client form, the raw form on the same kind of connection): the pairs
CLIENT_VS_RAW = (("client", "raw sync"), ("aio", "raw async"))
#: starts per single block; calls of 1,000 items per batch block
CLIENT_SINGLE_BLOCK = 50
CLIENT_BATCH_BLOCK = 5

#: a block's body, made (inputs ready) before the clock starts
Body = Callable[[], None]


def _timed(body: Body) -> tuple[float, float]:
    """(wall, process CPU) seconds of one block, from a settled collector."""
    gc.collect()
    cpu, wall = time.process_time(), time.perf_counter()
    body()
    return time.perf_counter() - wall, time.process_time() - cpu


def pair_order(r: int) -> list[tuple[str, str]]:
    """Round r's two pairs, each (first form, second form): the raw form
    first in one pair and second in the other, both swapping every round,
    and the pairs' order swapping every second round."""
    pairs = [("raw sync", "client"), ("aio", "raw async")]
    if r % 2:
        pairs = [(b, a) for a, b in pairs]
    return pairs if (r // 2) % 2 == 0 else pairs[::-1]


def abba_ratio(raw: list[float], mine: list[float]) -> float:
    """raw / mine from pairs whose order alternates (AB, BA, AB ...): the
    median over consecutive two pairs of the geometric mean of their two
    ratios, so a block's place in its pair cancels within each term (a
    block read 4-10 % slower second than first at load 8, whichever form;
    a median of the single-pair ratios then picks from two humps)."""
    ratios = [r / c for r, c in zip(raw, mine)]
    if len(ratios) < 2:
        return ratios[0]
    return statistics.median(
        math.sqrt(ratios[i] * ratios[i + 1]) for i in range(0, len(ratios) - 1, 2)
    )


def client_forms(dsn: str, rounds: int, *, batched: bool) -> dict[str, float]:
    """The forms' ratios: ``FORM / floor`` (median over blocks of the pair's
    floor block time over the form's), ``client / raw sync`` and ``aio / raw
    async`` (raw time / client time per pair, by :func:`abba_ratio`), and ``client CPU
    over raw sync`` / ``aio CPU over raw async`` (median over pairs of the
    client block's process CPU minus the raw block's, microseconds a call)."""
    size, block = (1000, CLIENT_BATCH_BLOCK) if batched else (1, CLIENT_SINGLE_BLOCK)
    floor_sql = INSERT_UNNEST if batched else INSERT_ONE
    raw_sql = START_MANY if batched else START_ONE
    counter = iter(range(10**9))

    def values() -> list[dict[str, int]]:
        return [{"n": next(counter)} for _ in range(size)]

    def raw_args() -> list[tuple[str, ...]]:
        if batched:
            return [(json.dumps([{"type_name": "bench", "input": v} for v in values()]),) for _ in range(block)]
        return [("bench", json.dumps(values()[0])) for _ in range(block)]

    loop = asyncio.new_event_loop()
    with psycopg.connect(dsn, autocommit=True) as conn:
        aconn = loop.run_until_complete(psycopg.AsyncConnection.connect(dsn, autocommit=True))
        conn.execute(FLOOR_DDL)

        def on_loop(make: Callable[[], Coroutine[Any, Any, None]]) -> Body:
            return lambda: loop.run_until_complete(make())

        def floor() -> Body:
            rows = [[json.dumps(v) for v in values()] for _ in range(block)]
            args = [(r,) if batched else (r[0],) for r in rows]

            def body() -> None:
                cur = conn.cursor()
                for a in args:
                    cur.execute(floor_sql, a)

            return body

        def raw_sync() -> Body:
            args = raw_args()

            def body() -> None:
                for a in args:
                    conn.execute(raw_sql, a).fetchall()

            return body

        def sync_client() -> Body:
            inputs = [values() for _ in range(block)]

            def body() -> None:
                if batched:
                    for vs in inputs:
                        client.start_chains(conn, [ChainSpec("bench", v) for v in vs])
                else:
                    for vs in inputs:
                        client.start_chain(conn, "bench", vs[0])

            return body

        def raw_async() -> Body:
            args = raw_args()

            async def body() -> None:
                for a in args:
                    cur = await aconn.execute(raw_sql, a)
                    await cur.fetchall()

            return on_loop(body)

        def async_client() -> Body:
            inputs = [values() for _ in range(block)]

            async def body() -> None:
                if batched:
                    for vs in inputs:
                        await aio.start_chains(aconn, [ChainSpec("bench", v) for v in vs])
                else:
                    for vs in inputs:
                        await aio.start_chain(aconn, "bench", vs[0])

            return on_loop(body)

        forms: dict[str, Callable[[], Body]] = {
            "raw sync": raw_sync, "client": sync_client,
            "raw async": raw_async, "aio": async_client,
        }
        to_floor: dict[str, list[float]] = {name: [] for name in FORMS}
        wall: dict[str, list[float]] = {name: [] for name in FORMS}
        cpu: dict[str, list[float]] = {name: [] for name in FORMS}
        try:
            for make in (floor, *forms.values()):  # warm-up: statements prepared, caches loaded
                make()()
            for r in range(max(1, rounds)):
                for pair in pair_order(r):
                    floor_s, _ = _timed(floor())
                    for name in pair:
                        w, c = _timed(forms[name]())
                        to_floor[name].append(floor_s / w)
                        wall[name].append(w)
                        cpu[name].append(c)
        finally:
            loop.run_until_complete(aconn.close())
            loop.close()
    out = {f"{name} / floor": statistics.median(r) for name, r in to_floor.items()}
    for mine, raw in CLIENT_VS_RAW:
        out[f"{mine} / {raw}"] = abba_ratio(wall[raw], wall[mine])
    for mine, raw in CLIENT_VS_RAW:
        extra = statistics.median(c - r for r, c in zip(cpu[raw], cpu[mine]))
        out[f"{mine} CPU over {raw}"] = extra / block * 1e6
    return out


def run_client_forms(dbs: Databases, sizes: Sizes, results: Results) -> None:
    for label, batched, rounds in (
        ("start_chain", False, sizes.client_single_rounds),
        ("start_chains x1,000", True, sizes.client_batch_rounds),
    ):
        with dbs.fresh(f"create-client-{'batch' if batched else 'single'}") as dsn:
            for name, value in client_forms(dsn, rounds, batched=batched).items():
                if " CPU over " in name:
                    results.add("create-client", f"{label}: {name}", value, "us a call", higher_is_better=False)
                else:
                    results.add("create-client", f"{label}: {name}", value, "x, paired")
