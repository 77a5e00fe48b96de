"""The SQLite torture run's final checks: ``checks.py``'s invariants, over
a SQLite file.

The same checks, names and figures as ``checks.check`` (each violation line
starts with one of ``checks.CHECKS``), the queries written for SQLite: ids
are text, times epoch microseconds, the tables ``queuert_job`` ... . Every
corruption is reported by exactly one check (tests_py/test_torture_sqlite.py
plants them).
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from checks import (
    BROKEN_INDEX,
    CAPPED_MAX_ATTEMPTS,
    CHECKS,
    DUPLICATE_EFFECT,
    FOREIGN_EFFECT,
    HANDLER_REPORTED,
    MISSING_CHAIN,
    MISSING_EFFECT,
    OPEN_BLOCKERS,
    PHANTOM_EFFECT,
    RUNNING_EXPIRED,
    RUNNING_LIVE,
    STAGED_WITHOUT_RUN,
    STALE_OUTPUT,
    STRANDED,
    STRAY_CHAIN,
    UNFINISHED,
    WRONG_FAILURE,
    WRONG_SHAPE,
    expected_jobs,
)

__all__ = ["SIDE_TABLES", "check"]

SIDE_TABLES = """
CREATE TABLE torture_chain (
    chain_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    mode TEXT NOT NULL,
    n INTEGER,
    always_fail INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE torture_effect (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, worker TEXT NOT NULL);
CREATE TABLE torture_attempt (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, worker TEXT NOT NULL);
CREATE TABLE torture_violation (job_id TEXT, what TEXT NOT NULL);
CREATE INDEX torture_effect_job ON torture_effect (job_id);
CREATE INDEX torture_attempt_job ON torture_attempt (job_id);
"""


def check(path: str) -> tuple[dict[str, int], list[str]]:
    """Invariants over the final database file. Returns (figures, violations)."""
    v: list[str] = []
    f: dict[str, int] = {}

    def bad(name: str, rows: list[Any], limit: int = 5) -> int:
        assert name in CHECKS, name
        if rows:
            v.append(f"{name}: {len(rows)} (e.g. {rows[:limit]})")
        return len(rows)

    c = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        c.execute("BEGIN")  # one snapshot for every query
        q = c.execute
        now = time.time_ns() // 1000
        f["chains"] = q("SELECT count(*) FROM torture_chain").fetchone()[0]
        f["jobs"] = q("SELECT count(*) FROM queuert_job").fetchone()[0]
        f["retries"] = q("SELECT coalesce(sum(max(attempt - 1, 0)), 0) FROM queuert_job").fetchone()[0]

        running_expired = q(
            "SELECT id, leased_by, leased_until FROM queuert_job WHERE status = 'running' "
            "AND (leased_until IS NULL OR leased_until < ?)", (now,)
        ).fetchall()
        running_live = q(
            "SELECT id, leased_by, leased_until FROM queuert_job WHERE status = 'running' "
            "AND leased_until >= ?", (now,)
        ).fetchall()
        stranded = q(
            "SELECT j.id FROM queuert_job j WHERE j.status = 'blocked' AND NOT EXISTS ("
            "  SELECT 1 FROM queuert_job_blocker b JOIN queuert_job r ON r.id = b.blocker_chain_id "
            "  WHERE b.job_id = j.id AND r.chain_completed_at IS NULL)"
        ).fetchall()
        miscounted = q(
            "SELECT j.id, j.open_blockers, sum(r.chain_completed_at IS NULL) "
            "FROM queuert_job j JOIN queuert_job_blocker b ON b.job_id = j.id "
            "JOIN queuert_job r ON r.id = b.blocker_chain_id "
            "WHERE j.status IN ('blocked', 'pending') "
            "GROUP BY j.id HAVING j.open_blockers <> sum(r.chain_completed_at IS NULL)"
        ).fetchall()
        explained = {r[0] for rows in (running_expired, running_live, stranded, miscounted) for r in rows}

        lost = bad(MISSING_CHAIN, q(
            "SELECT t.chain_id FROM torture_chain t LEFT JOIN queuert_job j ON j.id = t.chain_id "
            "WHERE j.id IS NULL"
        ).fetchall())
        bad(STRAY_CHAIN, q(
            "SELECT j.chain_id FROM queuert_job j LEFT JOIN torture_chain t ON t.chain_id = j.chain_id "
            "WHERE t.chain_id IS NULL"
        ).fetchall())

        rows = q(
            "SELECT t.chain_id, t.kind, t.n, t.always_fail, c.status, c.job_count, "
            "       tail.attempt, tail.last_attempt_error, tail.id "
            "FROM torture_chain t JOIN queuert_chain c ON c.chain_id = t.chain_id "
            "JOIN queuert_job tail ON tail.id = c.current_job_id"
        ).fetchall()
        unfinished: list[tuple[Any, ...]] = []
        wrong_fail: list[tuple[Any, ...]] = []
        shape: list[tuple[Any, ...]] = []
        f["failed_as_expected"] = f["failed_after_crashes"] = 0
        unfinished_explained = 0
        for chain_id, kind, n, always_fail, status, job_count, attempt, error, tail_id in rows:
            if kind == "capped" and always_fail:
                if status == "failed" and attempt == CAPPED_MAX_ATTEMPTS:
                    f["failed_as_expected"] += 1
                else:
                    wrong_fail.append((chain_id, status, attempt))
                continue
            if status == "completed":
                if job_count != expected_jobs(kind, n):
                    shape.append((chain_id, kind, n, job_count))
                continue
            if (
                kind == "capped"
                and status == "failed"
                and attempt == CAPPED_MAX_ATTEMPTS
                and not (error or "").startswith("Flaky")
            ):
                f["failed_after_crashes"] += 1  # its attempts were spent by killed workers
                continue
            if status == "failed":
                wrong_fail.append((chain_id, kind, status, attempt, (error or "")[:80]))
            elif tail_id in explained:
                unfinished_explained += 1
            else:
                unfinished.append((chain_id, kind, status))
        lost += bad(UNFINISHED, unfinished) + unfinished_explained
        bad(WRONG_FAILURE, wrong_fail)
        bad(WRONG_SHAPE, shape)

        bad(BROKEN_INDEX, q(
            "SELECT chain_id FROM queuert_job GROUP BY chain_id "
            "HAVING max(chain_index) + 1 <> count(*) OR sum(continued_to IS NULL) <> 1"
        ).fetchall())

        eff = q(
            "SELECT j.id, j.status, count(e.job_id), "
            "       coalesce(sum(e.attempt = j.attempt AND e.worker = j.completed_by), 0) "
            "FROM queuert_job j LEFT JOIN torture_effect e ON e.job_id = j.id "
            "WHERE j.type_name LIKE 'a.%' GROUP BY j.id, j.status"
        ).fetchall()
        duplicates = bad(DUPLICATE_EFFECT, [r for r in eff if r[2] > 1])
        lost += bad(MISSING_EFFECT, [r for r in eff if r[1] == "completed" and r[2] == 0])
        bad(PHANTOM_EFFECT, [r for r in eff if r[1] != "completed" and r[2] > 0])
        bad(FOREIGN_EFFECT, [r for r in eff if r[1] == "completed" and r[2] == 1 and r[3] != 1])
        f["atomic_jobs"] = len(eff)

        st = q(
            "SELECT j.id, j.attempt, j.completed_by, count(a.job_id), "
            "       coalesce(sum(a.attempt = j.attempt AND a.worker = j.completed_by), 0) "
            "FROM queuert_job j LEFT JOIN torture_attempt a ON a.job_id = j.id "
            "WHERE j.type_name LIKE 's.%' AND j.status = 'completed' GROUP BY j.id"
        ).fetchall()
        lost += bad(STAGED_WITHOUT_RUN, [r for r in st if r[4] == 0])
        f["staged_jobs"] = len(st)
        f["staged_reruns"] = sum(1 for r in st if r[3] > 1)

        bad(STALE_OUTPUT, q(
            "SELECT id, attempt, completed_by, output FROM queuert_job "
            "WHERE status = 'completed' AND continued_to IS NULL AND ("
            "  json_extract(output, '$.attempt') IS NOT attempt "
            "  OR json_extract(output, '$.worker') IS NOT completed_by)"
        ).fetchall())

        bad(RUNNING_EXPIRED, running_expired)
        bad(RUNNING_LIVE, running_live)
        bad(STRANDED, stranded)
        bad(OPEN_BLOCKERS, miscounted)
        reported = q("SELECT job_id, what FROM torture_violation").fetchall()
        if os.path.exists(f"{path}.violations"):  # sqlite_app.py's handlers write there
            side = sqlite3.connect(f"{path}.violations", timeout=30)
            try:
                reported += side.execute("SELECT job_id, what FROM torture_violation").fetchall()
            finally:
                side.close()
        bad(HANDLER_REPORTED, reported)
        c.execute("COMMIT")
    finally:
        c.close()
    f["lost"] = lost
    f["duplicates"] = duplicates
    return f, v
