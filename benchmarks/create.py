"""Workloads 1 and 2: creating chains.

create-single: N chains, one start_chain per transaction (autocommit: the
    call is the whole transaction), one client; through the SQL function
    directly and through the Python client (queuert.client.start_chain).
create-batch: start_chains with batches of 1,000 (headline), 100 and 5,000,
    one transaction per batch.
"""

from __future__ import annotations

import json
import time

import psycopg

from queuert import client

from .common import SCHEMA, Databases, Results, Sizes

START_ONE = f"SELECT * FROM {SCHEMA}.start_chain(type_name => %s, input => %s::jsonb)"
START_MANY = f"SELECT * FROM {SCHEMA}.start_chains(%s::jsonb)"


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


def single_client(dsn: str, n: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        t = time.perf_counter()
        for i in range(n):
            client.start_chain(conn, "bench", {"n": i})
        rate = n / (time.perf_counter() - t)
    assert _count(dsn) == n
    return rate


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


def batch_client(dsn: str, total: int, size: int) -> float:
    from queuert.types import ChainSpec

    specs = [
        [ChainSpec("bench", {"n": b * size + i}) for i in range(size)]
        for b in range(total // size)
    ]
    with psycopg.connect(dsn, autocommit=True) as conn:
        t = time.perf_counter()
        for items in specs:
            client.start_chains(conn, items)
        rate = (total // size) * size / (time.perf_counter() - t)
    assert _count(dsn) == (total // size) * size
    return rate


def run_single(dbs: Databases, sizes: Sizes, results: Results) -> None:
    with dbs.fresh("create-single") as dsn:
        results.add("create-single", "start_chain SQL, 1/tx", single_sql(dsn, sizes.single_n), "chains/s")
    with dbs.fresh("create-single-client") as dsn:
        results.add(
            "create-single", "client.start_chain, 1/tx", single_client(dsn, sizes.single_client_n), "chains/s"
        )


def run_batch(dbs: Databases, sizes: Sizes, results: Results) -> None:
    with dbs.fresh("create-batch-1000") as dsn:
        results.add(
            "create-batch", "start_chains x1,000", batch(dsn, sizes.batch_total, 1000), "chains/s"
        )
    with dbs.fresh("create-batch-100") as dsn:
        results.add(
            "create-batch", "start_chains x100", batch(dsn, sizes.batch_total_small, 100), "chains/s"
        )
    with dbs.fresh("create-batch-5000") as dsn:
        results.add(
            "create-batch", "start_chains x5,000", batch(dsn, sizes.batch_total_small, 5000), "chains/s"
        )
    with dbs.fresh("create-batch-client") as dsn:
        results.add(
            "create-batch",
            "client.start_chains x1,000",
            batch_client(dsn, sizes.batch_total_small, 1000),
            "chains/s",
        )

