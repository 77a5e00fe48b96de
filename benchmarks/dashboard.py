"""Workload 10: the dashboard's chain list with 1,000,000 jobs.

Setup (not timed): 700,000 chains written straight into queuert.job with
one INSERT ... SELECT generate_series: 3 in 7 chains have a second job
(a continuation), so 1,000,000 jobs; chains spread over 24 days, ten
types plus a rare one (0.1 %); the chains' last jobs 97 % completed, 1 %
failed, 2 % pending, 0.5 % blocked (with a blocker edge), 0.25 %
cancelled, 0.2 % running. Then VACUUM ANALYZE, as autovacuum would.

Measured: the median of `samples` requests per page, each timed from
sending to the last byte, on a warm connection:
- "SQL": `queuert.dashboard_chains(...)` alone (execute + fetch);
- "HTTP": GET of the HTML chain list through the dashboard app in-process
  (Starlette TestClient: routing, the SQL call, Jinja rendering), the
  figure the < 100 ms target applies to.
Pages: the first page (no filter); filtered by a type (10 % of chains);
by status failed (the failed-jobs index); by status pending; with
"hide chains others wait on"; a rare type (the walk stops at its scan
limit and the page offers "Search older"); and a page 350,000 chains deep
(keyset cursor).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import psycopg

from .common import SCHEMA, Databases, Results, Sizes

NAME = "dashboard"

BUILD = f"""
INSERT INTO {SCHEMA}.job (
    id, type_name, chain_id, chain_type_name, chain_index, input, output, status,
    attempt, scheduled_at, created_at, completed_at, completed_by, leased_by, leased_until,
    last_attempt_at, last_attempt_error, continued_to, open_blockers, chain_completed_at
)
SELECT
    CASE WHEN p.idx = 0 THEN c.root ELSE c.tail END,
    CASE WHEN p.idx = 0 THEN c.ctype ELSE 'step-2' END,
    c.root, c.ctype, p.idx,
    jsonb_build_object('n', c.g, 'email', 'user' || c.g || '@example.com'),
    CASE WHEN s.st = 'completed' THEN '{{"ok": true}}'::jsonb END,
    s.st::{SCHEMA}.job_status,
    CASE WHEN s.st = 'failed' THEN 3 WHEN s.st IN ('pending', 'blocked') THEN 0 ELSE 1 END,
    c.created,
    c.created + p.idx * interval '1 second',
    CASE WHEN s.st = 'completed' THEN c.created + interval '2 seconds' END,
    CASE WHEN s.st = 'completed' THEN 'bench-worker' END,
    CASE WHEN s.st = 'running' THEN 'bench-worker' END,
    CASE WHEN s.st = 'running' THEN now() + interval '1 hour' END,
    CASE WHEN s.st IN ('failed', 'completed', 'running') THEN c.created + interval '1 second' END,
    CASE WHEN s.st = 'failed' THEN 'ValueError: boom' END,
    CASE WHEN p.idx = 0 AND c.two THEN c.tail END,
    CASE WHEN s.st = 'blocked' THEN 1 ELSE 0 END,
    CASE WHEN p.idx = 0 AND c.last_status = 'completed' THEN c.created + interval '2 seconds' END
FROM (
    SELECT
        g,
        md5('r' || g)::uuid AS root,
        md5('t' || g)::uuid AS tail,
        g %% 7 < 3 AS two,
        CASE WHEN g %% 1000 = 777 THEN 'rare' ELSE 'type-' || (g %% 10) END AS ctype,
        now() - (%(chains)s - g) * interval '3 seconds' AS created,
        CASE WHEN g %% 100 = 13 THEN 'failed' WHEN g %% 400 = 5 THEN 'cancelled'
             WHEN g %% 200 = 3 THEN 'blocked' WHEN g %% 500 = 2 THEN 'running'
             WHEN g %% 50 = 1 THEN 'pending' ELSE 'completed' END AS last_status
    FROM generate_series(1, %(chains)s) AS g
) AS c
CROSS JOIN LATERAL (VALUES (0), (1)) AS p (idx)
CROSS JOIN LATERAL (
    SELECT CASE WHEN p.idx = 0 AND c.two THEN 'completed' ELSE c.last_status END AS st
) AS s
WHERE p.idx = 0 OR c.two
"""

EDGES = f"""
INSERT INTO {SCHEMA}.job_blocker (job_id, position, blocker_chain_id)
SELECT j.id, 0, md5('r' || ((j.input ->> 'n')::int - 1))::uuid
FROM {SCHEMA}.job AS j
WHERE j.status = 'blocked'
"""

LIST = f"""SELECT * FROM {SCHEMA}.dashboard_chains(
    chain_type => %(type)s, statuses => %(statuses)s::{SCHEMA}.job_status[],
    hide_blockers => %(hide)s, after_created_at => %(after_at)s, after_id => %(after_id)s,
    max_rows => 50)"""


def _build(dsn: str, jobs: int) -> tuple[int, float]:
    chains = jobs * 7 // 10
    t = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(BUILD, {"chains": chains})
        conn.execute(EDGES)
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.job")
        conn.execute(f"VACUUM ANALYZE {SCHEMA}.job_blocker")
        row = conn.execute(f"SELECT count(*) FROM {SCHEMA}.job").fetchone()
    assert row is not None
    return int(row[0]), time.perf_counter() - t


def _pages(dsn: str) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    """label -> (SQL parameters, HTTP query)."""
    with psycopg.connect(dsn) as conn:
        deep = conn.execute(
            f"SELECT created_at, id FROM {SCHEMA}.job WHERE chain_index = 0"
            " ORDER BY created_at DESC, id DESC OFFSET 350000 LIMIT 1"
        ).fetchone()
        if deep is None:  # the quick run's table is smaller
            deep = conn.execute(
                f"SELECT created_at, id FROM {SCHEMA}.job WHERE chain_index = 0"
                " ORDER BY created_at, id LIMIT 1 OFFSET 100"
            ).fetchone()
    assert deep is not None
    from queuert.dashboard.queries import encode_cursor

    base: dict[str, Any] = {"type": None, "statuses": None, "hide": False, "after_at": None, "after_id": None}
    return {
        "first page": (base, {}),
        "type filter (10%)": ({**base, "type": "type-3"}, {"type": "type-3"}),
        "status failed (1%)": ({**base, "statuses": ["failed"]}, {"status": "failed"}),
        "status pending (2%)": ({**base, "statuses": ["pending"]}, {"status": "pending"}),
        "hide blockers": ({**base, "hide": True}, {"hide_blockers": "1"}),
        "rare type (0.1%, scan-limited)": ({**base, "type": "rare"}, {"type": "rare"}),
        "350,000 chains deep": (
            {**base, "after_at": deep[0], "after_id": deep[1]},
            {"after": encode_cursor(deep[0], deep[1])},
        ),
    }


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def run_all(dbs: Databases, sizes: Sizes, results: Results) -> None:
    from starlette.testclient import TestClient

    from queuert.dashboard import create_dashboard

    with dbs.fresh("dashboard") as dsn:
        jobs, build_s = _build(dsn, sizes.dashboard_jobs)
        results.note(NAME, f"{jobs:,} jobs in {jobs * 7 // 10:,} chains, built in {build_s:.1f}s (not timed)")
        pages = _pages(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn, TestClient(create_dashboard(dsn)) as client:
            for _ in range(sizes.reps):
                for label, (params, query) in pages.items():
                    sql_t: list[float] = []
                    http_t: list[float] = []
                    for _ in range(sizes.dashboard_samples):
                        t0 = time.perf_counter()
                        rows = conn.execute(LIST, params).fetchall()
                        sql_t.append(time.perf_counter() - t0)
                        t0 = time.perf_counter()
                        got = client.get("/chains", params=query)
                        http_t.append(time.perf_counter() - t0)
                        assert got.status_code == 200, got.text[:500]
                    assert rows, label
                    results.add(NAME, f"{label}: SQL", _median_ms(sql_t), "ms", False)
                    results.add(NAME, f"{label}: HTTP", _median_ms(http_t), "ms", False)
            overview: list[float] = []
            for _ in range(3):
                t0 = time.perf_counter()
                assert client.get("/").status_code == 200
                overview.append(time.perf_counter() - t0)
            results.add(NAME, "overview page (reads the whole table)", _median_ms(overview), "ms", False)
