"""Workloads 1 and 2: creating chains.

create-single: N chains, one start_chain per transaction (autocommit: the
    call is the whole transaction), one client; through the SQL function
    directly and through the Python client (queuert.client.start_chain).
create-batch: start_chains with batches of 1,000 (headline), 100 and 5,000,
    one transaction per batch.
create-single ladder: where start_chain's time goes, against the floor's
    INSERT in the same database, in alternating blocks (see ladder()).
create-client: the client as users call it, next to the SQL call it makes
    (issue 16): single starts and batches of 1,000, each through the raw SQL
    call on a sync Connection, queuert.client, the raw call on an
    AsyncConnection and queuert.aio, every block paired with the floor's
    (see client_forms()).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from queuert import aio, client
from queuert.types import ChainSpec

from .common import SCHEMA, Databases, Results, Sizes
from .floors import FLOOR_DDL, INSERT_ONE, INSERT_UNNEST

START_ONE = f"SELECT * FROM {SCHEMA}.start_chain(type_name => %s, input => %s::jsonb)"
START_MANY = f"SELECT * FROM {SCHEMA}.start_chains(%s::jsonb)"


# The ladder's rungs: the same root row as start_chain's common path, written
# by raw SQL (a superuser's INSERT), then with the columns start_chain must
# return (docs/DESIGN.md), then through start_chain itself.
_JOB_ROW = (
    f"INSERT INTO {SCHEMA}.job AS j (id, type_name, chain_id, chain_type_name, chain_index,"
    " input, status, priority, scheduled_at)"
    " SELECT n.id, 'bench', n.id, 'bench', 0, %s::jsonb, 'pending', 0, now()"
    f" FROM (SELECT {SCHEMA}._new_job_id() AS id) AS n"
)
_RETURNING = " RETURNING j.id, j.chain_id, j.type_name, j.status, j.scheduled_at, j.created_at, false"
LADDER: list[tuple[str, str]] = [
    ("raw INSERT of the job row", _JOB_ROW),
    # not judged: the same without the notification (the NOTIFY's share)
    ("raw INSERT of the job row, RETURNING start_chain's columns", _JOB_ROW + _RETURNING),
    # judged: raw SQL doing start_chain's work, the job_ready notification its
    # common path sends (a bare pg_notify) included. In wall time a NOTIFY
    # also serialises the commit with every other notifying commit of the
    # cluster (a lock held through the WAL flush), which raw SQL that
    # notifies pays as well; a broker's producer (queuert.notify = 'none')
    # pays neither. Just before start_chain, so the judged pair is adjacent.
    (
        "raw INSERT of the job row, RETURNING start_chain's columns, with its NOTIFY",
        _JOB_ROW + f" WHERE pg_catalog.pg_notify('{SCHEMA}_job_ready', 'bench') IS NOT NULL" + _RETURNING,
    ),
    ("start_chain", f"SELECT * FROM {SCHEMA}.start_chain(type_name => 'bench', input => %s::jsonb)"),
]
SAME_WORK = LADDER[2][0]
WITHOUT_NOTIFY = LADDER[1][0]
LADDER_BLOCK = 250


def _count(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {SCHEMA}.job WHERE status = 'pending'").fetchone()
        assert row is not None
        return int(row[0])


def single_sql(dsn: str, n: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        payloads = [json.dumps({"n": i}) for i in range(n)]
        t = time.perf_counter()
        for p in payloads:
            conn.execute(START_ONE, ("bench", p)).fetchall()
        rate = n / (time.perf_counter() - t)
    assert _count(dsn) == n
    return rate


def _execute_each(conn: psycopg.Connection[Any], query: str, args: list[str] | list[list[str]]) -> float:
    """Seconds to run `query` once per argument, reading any rows it returns
    (as a caller of start_chain or start_chains reads them)."""
    cur = conn.cursor()
    t = time.perf_counter()
    for a in args:
        cur.execute(query, (a,))
        if cur.description is not None:
            cur.fetchall()
    return time.perf_counter() - t


def ladder(dsn: str, n: int) -> dict[str, float]:
    """Each rung as a ratio to the floor's INSERT, measured in alternating blocks (floor block, rung block,
    ...) in one database, so that the machine's drift hits both sides of
    every ratio alike. Returns the median of the per-block ratios per rung;
    n rows per rung."""
    block = max(1, min(LADDER_BLOCK, n))
    payloads = [json.dumps({"n": i}) for i in range(block)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(FLOOR_DDL)

        def timed(query: str) -> float:
            return _execute_each(conn, query, payloads)

        for _, query in [("floor", INSERT_ONE), *LADDER]:
            timed(query)  # warm-up block: statements prepared, caches loaded
        ratios: dict[str, list[float]] = {name: [] for name, _ in LADDER}
        over_same_work: list[float] = []
        over_unnotified: list[float] = []
        for _ in range(max(1, n // block)):
            seconds: dict[str, float] = {}
            for name, query in LADDER:
                floor_s = timed(INSERT_ONE)
                seconds[name] = timed(query)
                ratios[name].append(floor_s / seconds[name])
            over_same_work.append(seconds[SAME_WORK] / seconds["start_chain"])
            over_unnotified.append(seconds[WITHOUT_NOTIFY] / seconds["start_chain"])
    out = {name: statistics.median(r) for name, r in ratios.items()}
    # what start_chain costs over raw SQL doing its work (the judged figure):
    # the blocks of one round, seconds apart
    out[f"start_chain / {SAME_WORK}"] = statistics.median(over_same_work)
    # the same over raw SQL that sends no notification (not judged)
    out[f"start_chain / {WITHOUT_NOTIFY}"] = statistics.median(over_unnotified)
    return out


def batch(dsn: str, total: int, size: int) -> float:
    batches = [
        json.dumps([{"type_name": "bench", "input": {"n": b * size + i}} for i in range(size)])
        for b in range(total // size)
    ]
    with psycopg.connect(dsn, autocommit=True) as conn:
        t = time.perf_counter()
        for items in batches:
            conn.execute(START_MANY, (items,)).fetchall()
        rate = (total // size) * size / (time.perf_counter() - t)
    assert _count(dsn) == (total // size) * size
    return rate


def batch_paired(dsn: str, total: int, size: int = 1000, block: int = 10) -> float:
    """start_chains of `size` items against the floor's INSERT ... unnest of
    `size` rows, in alternating blocks of `block` statements in one database
    (as the ladder does for single starts); the median per-block ratio."""
    n_blocks = max(1, total // (size * block))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(FLOOR_DDL)

        floor_rows = [[json.dumps({"n": b * size + i}) for i in range(size)] for b in range(block)]
        items = [
            json.dumps([{"type_name": "bench", "input": {"n": b * size + i}} for i in range(size)])
            for b in range(block)
        ]
        _execute_each(conn, INSERT_UNNEST, floor_rows)  # warm-up blocks
        _execute_each(conn, START_MANY, items)
        ratios = [
            _execute_each(conn, INSERT_UNNEST, floor_rows) / _execute_each(conn, START_MANY, items)
            for _ in range(n_blocks)
        ]
    return statistics.median(ratios)


# --------------------------------------------------------------------------
# The client as users call it, next to the SQL call it makes (issue 16).

#: The forms, in the order their blocks run. Each raw form calls exactly the
#: SQL function the client form calls, with its input already serialised
#: (the raw side gets its JSON for free); each client form starts from Python
#: values, as an application does (the batch builds its ChainSpecs in the
#: timed block too).
FORMS = ("raw sync", "client", "raw async", "aio")
#: (client form, the raw form on the same kind of connection)
CLIENT_VS_RAW = (("client", "raw sync"), ("aio", "raw async"))
CLIENT_SINGLE_BLOCK = 100


def client_forms(dsn: str, rounds: int, *, batched: bool) -> dict[str, float]:
    """Every form against the floor in alternating blocks in one database
    (floor block, form block, floor block, next form block ...), so the
    machine's drift lands on both sides of each ratio; per form the median of
    its per-block ratios to the floor. Also each client form against the raw
    form on the same kind of connection, blocks of one round side by side
    (median of raw time / client time per round).

    The forms take turns at going first in a round, so none always follows
    the same neighbour. Single: blocks of 100 starts, one per transaction
    (autocommit). Batch: blocks of 10 calls of 1,000 items, against the
    floor's INSERT .. unnest of 1,000 rows."""
    size, block = (1000, 10) if batched else (1, CLIENT_SINGLE_BLOCK)
    floor_sql = INSERT_UNNEST if batched else INSERT_ONE
    counter = iter(range(10**9))

    def values() -> list[dict[str, int]]:
        return [{"n": next(counter)} for _ in range(size)]

    # Inputs are made before the clock starts, one set per block: the raw
    # forms get them serialised, the client forms as Python values.
    def raw_args() -> list[str]:
        if batched:
            return [json.dumps([{"type_name": "bench", "input": v} for v in values()])
                    for _ in range(block)]
        return [json.dumps(values()[0]) for _ in range(block)]

    raw_sql = START_MANY if batched else START_ONE
    loop = asyncio.new_event_loop()
    with psycopg.connect(dsn, autocommit=True) as conn:
        aconn = loop.run_until_complete(psycopg.AsyncConnection.connect(dsn, autocommit=True))
        conn.execute(FLOOR_DDL)

        def floor_block() -> float:
            rows = [[json.dumps(v) for v in values()] for _ in range(block)]
            if not batched:
                return _execute_each(conn, floor_sql, [r[0] for r in rows])
            return _execute_each(conn, floor_sql, rows)

        def raw_sync() -> float:
            args = raw_args()
            t = time.perf_counter()
            for a in args:
                conn.execute(raw_sql, (a,) if batched else ("bench", a)).fetchall()
            return time.perf_counter() - t

        def sync_client() -> float:
            inputs = [values() for _ in range(block)]
            t = time.perf_counter()
            if batched:
                for vs in inputs:
                    client.start_chains(conn, [ChainSpec("bench", v) for v in vs])
            else:
                for vs in inputs:
                    client.start_chain(conn, "bench", vs[0])
            return time.perf_counter() - t

        def timed_async(body: Callable[[], Awaitable[None]]) -> float:
            async def run() -> float:
                t = time.perf_counter()
                await body()
                return time.perf_counter() - t

            return loop.run_until_complete(run())

        def raw_async() -> float:
            args = raw_args()

            async def body() -> None:
                for a in args:
                    cur = await aconn.execute(raw_sql, (a,) if batched else ("bench", a))
                    await cur.fetchall()

            return timed_async(body)

        def async_client() -> float:
            inputs = [values() for _ in range(block)]

            async def body() -> None:
                if batched:
                    for vs in inputs:
                        await aio.start_chains(aconn, [ChainSpec("bench", v) for v in vs])
                else:
                    for vs in inputs:
                        await aio.start_chain(aconn, "bench", vs[0])

            return timed_async(body)

        forms: dict[str, Callable[[], float]] = {
            "raw sync": raw_sync, "client": sync_client,
            "raw async": raw_async, "aio": async_client,
        }
        try:
            floor_block()  # warm-up blocks: statements prepared, caches loaded
            for run in forms.values():
                run()
            to_floor: dict[str, list[float]] = {name: [] for name in FORMS}
            seconds: dict[str, list[float]] = {name: [] for name in FORMS}
            for r in range(max(1, rounds)):
                for name in FORMS[r % len(FORMS):] + FORMS[:r % len(FORMS)]:
                    floor_s = floor_block()
                    form_s = forms[name]()
                    to_floor[name].append(floor_s / form_s)
                    seconds[name].append(form_s)
        finally:
            loop.run_until_complete(aconn.close())
            loop.close()
    out = {f"{name} / floor": statistics.median(r) for name, r in to_floor.items()}
    for mine, raw in CLIENT_VS_RAW:
        per_round = [r / c for r, c in zip(seconds[raw], seconds[mine])]
        out[f"{mine} / {raw}"] = statistics.median(per_round)
    return out


def run_client_forms(dbs: Databases, sizes: Sizes, results: Results) -> None:
    for label, batched, rounds in (
        ("start_chain", False, sizes.client_single_rounds),
        ("start_chains x1,000", True, sizes.client_batch_rounds),
    ):
        with dbs.fresh(f"create-client-{'batch' if batched else 'single'}") as dsn:
            for name, ratio in client_forms(dsn, rounds, batched=batched).items():
                results.add("create-client", f"{label}: {name}", ratio, "x, paired")


def run_single(dbs: Databases, sizes: Sizes, results: Results) -> None:
    with dbs.fresh("create-single") as dsn:
        results.add("create-single", "start_chain SQL, 1/tx", single_sql(dsn, sizes.single_n), "chains/s")
    with dbs.fresh("create-single-ladder") as dsn:
        for name, ratio in ladder(dsn, sizes.ladder_n).items():
            unit = "x, paired" if name.startswith("start_chain /") else "x floor, paired"
            results.add("create-single", f"ladder: {name}", ratio, unit)


def run_batch(dbs: Databases, sizes: Sizes, results: Results) -> None:
    with dbs.fresh("create-batch-1000") as dsn:
        results.add(
            "create-batch", "start_chains x1,000", batch(dsn, sizes.batch_total, 1000), "chains/s"
        )
    with dbs.fresh("create-batch-paired") as dsn:
        results.add(
            "create-batch",
            "paired: start_chains x1,000",
            batch_paired(dsn, sizes.batch_paired_total),
            "x floor, paired",
        )
    with dbs.fresh("create-batch-100") as dsn:
        results.add(
            "create-batch", "start_chains x100", batch(dsn, sizes.batch_total_small, 100), "chains/s"
        )
    with dbs.fresh("create-batch-5000") as dsn:
        results.add(
            "create-batch", "start_chains x5,000", batch(dsn, sizes.batch_total_small, 5000), "chains/s"
        )

