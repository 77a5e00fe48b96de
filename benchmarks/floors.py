"""Workload 9: raw-SQL floors on a plain table shaped like queuert.job.

Same PostgreSQL, same run, plain psycopg 3, no engine functions:
- single: one autocommit INSERT per row (INSERT + COMMIT);
- unnest: one INSERT ... SELECT FROM unnest of 1,000 rows per statement;
- claim1 / claim100: a minimal SKIP LOCKED claim-and-complete loop, claim and
  completion in one transaction, 1 or 100 jobs per transaction, one client.
"""

from __future__ import annotations

import json
import time

import psycopg

from .common import Databases, Results, Sizes

NAME = "floor"

FLOOR_DDL = """
CREATE TABLE floor_job (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq bigint GENERATED ALWAYS AS IDENTITY,
    type_name text NOT NULL,
    input jsonb,
    output jsonb,
    status text NOT NULL,
    priority integer NOT NULL DEFAULT 0,
    attempt integer NOT NULL DEFAULT 0,
    scheduled_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    leased_by text,
    leased_until timestamptz
) WITH (fillfactor = 90);
CREATE INDEX floor_job_claim_idx ON floor_job (priority DESC, scheduled_at, seq)
WHERE status = 'pending';
"""

INSERT_ONE = (
    "INSERT INTO floor_job (type_name, input, status) VALUES ('bench', %s::jsonb, 'pending')"
)
INSERT_UNNEST = (
    "INSERT INTO floor_job (type_name, input, status) "
    "SELECT 'bench', i, 'pending' FROM unnest(%s::jsonb[]) AS i"
)
CLAIM = """
WITH c AS MATERIALIZED (
    SELECT id FROM floor_job
    WHERE status = 'pending' AND scheduled_at <= now()
    ORDER BY priority DESC, scheduled_at, seq
    LIMIT %s
    FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE floor_job AS j
SET status = 'running', attempt = j.attempt + 1, leased_by = %s,
    leased_until = clock_timestamp() + interval '60 seconds'
FROM c WHERE j.id = c.id
RETURNING j.id, j.input
"""
DONE = """
UPDATE floor_job
SET status = 'completed', completed_at = now(), leased_by = NULL, leased_until = NULL
WHERE id = ANY(%s) AND status = 'running' AND leased_by = %s
"""


def setup(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(FLOOR_DDL)


def _fill(dsn: str, n: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO floor_job (type_name, input, status) "
            "SELECT 'bench', jsonb_build_object('n', g), 'pending' FROM generate_series(1, %s) g",
            (n,),
        )
        conn.execute("VACUUM ANALYZE floor_job")


def single(dsn: str, n: int) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        payloads = [json.dumps({"n": i}) for i in range(n)]
        t = time.perf_counter()
        for p in payloads:
            conn.execute(INSERT_ONE, (p,))
        return n / (time.perf_counter() - t)


def unnest(dsn: str, total: int, batch: int = 1000) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        batches = [
            [json.dumps({"n": b * batch + i}) for i in range(batch)] for b in range(total // batch)
        ]
        t = time.perf_counter()
        for items in batches:
            conn.execute(INSERT_UNNEST, (items,))
        return total / (time.perf_counter() - t)


def claim_loop(dsn: str, n: int, per_tx: int) -> float:
    _fill(dsn, n)
    with psycopg.connect(dsn) as conn:
        done = 0
        t = time.perf_counter()
        while True:
            rows = conn.execute(CLAIM, (per_tx, "floor-worker")).fetchall()
            if not rows:
                conn.commit()
                break
            conn.execute(DONE, ([r[0] for r in rows], "floor-worker"))
            conn.commit()
            done += len(rows)
        elapsed = time.perf_counter() - t
        left = conn.execute("SELECT count(*) FROM floor_job WHERE status <> 'completed'").fetchone()
        assert left is not None and left[0] == 0 and done == n, (left, done, n)
        return n / elapsed


def run_once(dbs: Databases, sizes: Sizes, results: Results) -> None:
    with dbs.fresh("floor-single") as dsn:
        setup(dsn)
        results.add(NAME, "single INSERT+COMMIT", single(dsn, sizes.single_n), "rows/s")
    with dbs.fresh("floor-unnest") as dsn:
        setup(dsn)
        results.add(
            NAME, "INSERT..unnest 1,000/stmt", unnest(dsn, sizes.batch_total), "rows/s"
        )
    for per_tx, n in ((1, sizes.floor_claim1_n), (100, sizes.floor_claim100_n)):
        if per_tx in sizes.claim_floors_in_trios:
            # measured once a repetition in the processing workload's
            # adjacent trio (processing.py), which records it here
            results.reserve(NAME, claim_metric(per_tx), "jobs/s")
            continue
        with dbs.fresh(f"floor-claim{per_tx}") as dsn:
            setup(dsn)
            results.add(NAME, claim_metric(per_tx), claim_loop(dsn, n, per_tx), "jobs/s")


def claim_metric(per_tx: int) -> str:
    return f"claim+complete {per_tx}/tx"
