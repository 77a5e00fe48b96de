"""Workload 8: claim latency with a large table versus an empty one.

"loaded": 1,000,000 completed and 1,000,000 blocked rows written straight
into queuert.job with INSERT ... SELECT generate_series (setup, not timed;
two connections at once),
then VACUUM ANALYZE, as autovacuum would have done. "empty": no such rows.
Both then get the same pending jobs, and one client claims them one at a
time (claim(worker, NULL, 1)); each claim's statement time is recorded
(execute + fetch; the COMMIT that follows is timed separately).
Each of the repetitions claims a fresh slice of the pending jobs of the
same database (building 2M rows per repetition would not fit the time box).
"""

from __future__ import annotations

import time

import psycopg

from .common import SCHEMA, Databases, Results, Sizes, execute_parallel, percentile

NAME = "claim-at-scale"

BULK = f"""
INSERT INTO {SCHEMA}.job (
    id, type_name, chain_id, chain_type_name, chain_index, input, output, status,
    attempt, scheduled_at, created_at, completed_at, completed_by, open_blockers,
    chain_completed_at
)
SELECT u.id, 'bench', u.id, 'bench', 0, jsonb_build_object('n', u.g),
    CASE WHEN %(status)s = 'completed' THEN '{{}}'::jsonb END,
    %(status)s::{SCHEMA}.job_status,
    CASE WHEN %(status)s = 'completed' THEN 1 ELSE 0 END,
    now() - interval '1 day', now() - interval '1 day',
    CASE WHEN %(status)s = 'completed' THEN now() - interval '1 day' END,
    CASE WHEN %(status)s = 'completed' THEN 'old-worker' END,
    CASE WHEN %(status)s = 'blocked' THEN 1 ELSE 0 END,
    CASE WHEN %(status)s = 'completed' THEN now() - interval '1 day' END
FROM (SELECT s AS g, gen_random_uuid() AS id FROM generate_series(1, %(n)s) AS s) AS u
"""

CLAIM = f"SELECT * FROM {SCHEMA}.claim(worker_id => %s, max_jobs => %s)"


def _build(dsn: str, completed: int, blocked: int, pending: int) -> float:
    t = time.perf_counter()
    step = 250_000
    execute_parallel(dsn, [
        (BULK, {"status": status, "n": min(step, n - done)})
        for status, n in (("completed", completed), ("blocked", blocked))
        for done in range(0, n, step)
    ])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(BULK, {"status": "pending", "n": pending})
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.job")
    return time.perf_counter() - t


def _sample(dsn: str, claims: int, max_jobs: int = 1) -> tuple[list[float], list[float]]:
    stmt_ms: list[float] = []
    commit_ms: list[float] = []
    with psycopg.connect(dsn) as conn:
        for _ in range(5):  # warm the plan cache and prepare the statement
            conn.execute(CLAIM, ("bench-worker", max_jobs)).fetchall()
            conn.commit()
        for _ in range(claims):
            t0 = time.perf_counter()
            rows = conn.execute(CLAIM, ("bench-worker", max_jobs)).fetchall()
            t1 = time.perf_counter()
            conn.commit()
            t2 = time.perf_counter()
            assert len(rows) == max_jobs
            stmt_ms.append((t1 - t0) * 1000)
            commit_ms.append((t2 - t1) * 1000)
    return sorted(stmt_ms), sorted(commit_ms)


def explain(dsn: str) -> str:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            f"""EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
            SELECT j.id FROM {SCHEMA}.job AS j
            WHERE j.status = 'pending' AND j.scheduled_at <= now()
            ORDER BY j.priority DESC, j.scheduled_at, j.seq
            LIMIT 1 FOR NO KEY UPDATE SKIP LOCKED"""
        ).fetchall()
        conn.rollback()
    return "\n".join(r[0] for r in rows)


def run_all(dbs: Databases, sizes: Sizes, results: Results) -> None:
    pending = sizes.scale_claims * sizes.reps + 10 * sizes.reps + 1000
    for label, completed, blocked in (
        ("empty", 0, 0),
        ("loaded", sizes.scale_completed, sizes.scale_blocked),
    ):
        with dbs.fresh(f"claim-scale-{label}") as dsn:
            build_s = _build(dsn, completed, blocked, pending)
            results.note(
                NAME,
                f"{label}: {completed:,} completed + {blocked:,} blocked rows + "
                f"{pending:,} pending, built in {build_s:.1f}s (not timed)",
            )
            for _ in range(sizes.reps):
                stmt, commit = _sample(dsn, sizes.scale_claims)
                results.add(NAME, f"{label} claim p50", percentile(stmt, 50), "ms", False)
                results.add(NAME, f"{label} claim p99", percentile(stmt, 99), "ms", False)
                results.add(NAME, f"{label} commit p50", percentile(commit, 50), "ms", False)
            results.note(NAME, f"EXPLAIN ANALYZE of the claim scan, {label}:\n" + explain(dsn))
