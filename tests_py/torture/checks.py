"""The torture run's final checks, over the database after the workers stop.

``SIDE_TABLES`` are what the producer and the handlers (``app.py``) leave
behind; ``check(dsn)`` compares them with the engine's rows and returns
``(figures, violations)``. Each violation line starts with one of ``CHECKS``.

Every corruption is reported by exactly one check: an unfinished chain whose
last job is caught by a more specific check (running after the workers
stopped, blocked or counted wrongly as a fan-in) is reported by that check
and not again as "not finished" (it still counts in the ``lost`` figure).
tests_py/test_torture.py plants each corruption and sees its check, and no
other, report it.
"""

from __future__ import annotations

from typing import Any

import psycopg

CAPPED_MAX_ATTEMPTS = 3

SIDE_TABLES = """
CREATE TABLE torture_chain (
    chain_id uuid PRIMARY KEY,
    kind text NOT NULL,
    mode text NOT NULL,
    n int,
    always_fail boolean NOT NULL DEFAULT false
);
CREATE TABLE torture_effect (   -- atomic mode: written in the job's transaction
    job_id uuid NOT NULL, attempt int NOT NULL, worker text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE torture_attempt (  -- staged mode: written before the handler runs
    job_id uuid NOT NULL, attempt int NOT NULL, worker text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE torture_violation (job_id uuid, what text NOT NULL);
CREATE INDEX ON torture_effect (job_id);
CREATE INDEX ON torture_attempt (job_id);
"""

# -- the checks, in the order check() runs them -------------------------------

MISSING_CHAIN = "chain created but missing from queuert.job"
STRAY_CHAIN = "jobs of chains the producer never committed"
UNFINISHED = "chains not finished (lost)"
WRONG_FAILURE = "chains failed where max_attempts does not say so (or not failed where it does)"
WRONG_SHAPE = "completed chains with a wrong number of jobs"
BROKEN_INDEX = "chains with gaps in chain_index or not exactly one tail"
DUPLICATE_EFFECT = "atomic jobs with more than one committed effect"
MISSING_EFFECT = "atomic jobs completed without their effect"
PHANTOM_EFFECT = "atomic effects of attempts that did not complete (rolled-back work committed)"
FOREIGN_EFFECT = "atomic effect written by another attempt than the completing one"
STAGED_WITHOUT_RUN = "staged jobs completed without a recorded run of that attempt"
STALE_OUTPUT = "final outputs written by another attempt or worker than the completing one"
RUNNING_EXPIRED = "jobs running without a live lease"
RUNNING_LIVE = "jobs still running, lease live, after every worker stopped"
STRANDED = "jobs blocked although every blocker chain completed"
OPEN_BLOCKERS = "open_blockers disagreeing with the blocker chains' state"
HANDLER_REPORTED = "handler-detected violations (fan-in, schedule)"

CHECKS = (
    MISSING_CHAIN, STRAY_CHAIN, UNFINISHED, WRONG_FAILURE, WRONG_SHAPE, BROKEN_INDEX,
    DUPLICATE_EFFECT, MISSING_EFFECT, PHANTOM_EFFECT, FOREIGN_EFFECT, STAGED_WITHOUT_RUN,
    STALE_OUTPUT, RUNNING_EXPIRED, RUNNING_LIVE, STRANDED, OPEN_BLOCKERS, HANDLER_REPORTED,
)


def expected_jobs(kind: str, n: int | None) -> int:
    """Jobs a completed chain of this kind has (step1: 3 steps; loop: n + 1)."""
    if kind == "step1":
        return 3
    if kind == "loop":
        return (n or 0) + 1
    return 1


def reported(violations: list[str]) -> set[str]:
    """The checks that reported something, from check()'s violation lines."""
    return {line.split(": ", 1)[0] for line in violations}


def _one(c: psycopg.Connection[Any], query: str) -> int:
    row = c.execute(query).fetchone()
    assert row is not None
    return int(row[0])


def check(dsn: str) -> tuple[dict[str, int], list[str]]:
    """Invariants over the final database. Returns (figures, violations)."""
    v: list[str] = []
    f: dict[str, int] = {}

    def bad(name: str, rows: list[Any], limit: int = 5) -> int:
        assert name in CHECKS, name
        if rows:
            v.append(f"{name}: {len(rows)} (e.g. {rows[:limit]})")
        return len(rows)

    with psycopg.connect(dsn, autocommit=True) as c:
        # One snapshot for every query: the checks agree on what they saw.
        c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        q = c.execute
        f["chains"] = _one(c, "SELECT count(*) FROM torture_chain")
        f["jobs"] = _one(c, "SELECT count(*) FROM queuert.job")
        f["retries"] = _one(c, "SELECT coalesce(sum(greatest(attempt - 1, 0)), 0) FROM queuert.job")

        # Jobs that a specific check below explains; their chains are not
        # reported again as "not finished".
        running_expired = q(
            "SELECT id, leased_by, leased_until FROM queuert.job WHERE status = 'running' "
            "AND (leased_until IS NULL OR leased_until < clock_timestamp())"
        ).fetchall()
        running_live = q(
            "SELECT id, leased_by, leased_until FROM queuert.job WHERE status = 'running' "
            "AND leased_until >= clock_timestamp()"
        ).fetchall()
        stranded = q(
            "SELECT j.id FROM queuert.job j WHERE j.status = 'blocked' AND NOT EXISTS ("
            "  SELECT 1 FROM queuert.job_blocker b JOIN queuert.job r ON r.id = b.blocker_chain_id "
            "  WHERE b.job_id = j.id AND r.chain_completed_at IS NULL)"
        ).fetchall()
        miscounted = q(
            "SELECT j.id, j.open_blockers, count(*) FILTER (WHERE r.chain_completed_at IS NULL) "
            "FROM queuert.job j JOIN queuert.job_blocker b ON b.job_id = j.id "
            "JOIN queuert.job r ON r.id = b.blocker_chain_id "
            "WHERE j.status IN ('blocked', 'pending') "
            "GROUP BY j.id HAVING j.open_blockers <> count(*) FILTER (WHERE r.chain_completed_at IS NULL)"
        ).fetchall()
        explained = {r[0] for rows in (running_expired, running_live, stranded, miscounted) for r in rows}

        # every created chain exists in the engine (and nothing else does)
        lost = bad(MISSING_CHAIN, q(
            "SELECT t.chain_id FROM torture_chain t LEFT JOIN queuert.job j ON j.id = t.chain_id "
            "WHERE j.id IS NULL"
        ).fetchall())
        bad(STRAY_CHAIN, q(
            "SELECT j.chain_id FROM queuert.job j LEFT JOIN torture_chain t ON t.chain_id = j.chain_id "
            "WHERE t.chain_id IS NULL"
        ).fetchall())

        # chain outcome: complete, or failed exactly as max_attempts says
        rows = q(
            "SELECT t.chain_id, t.kind, t.n, t.always_fail, c.status::text, c.job_count, "
            "       tail.attempt, tail.last_attempt_error, tail.id "
            "FROM torture_chain t JOIN queuert.chain c ON c.chain_id = t.chain_id "
            "JOIN queuert.job tail ON tail.id = c.current_job_id"
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
                    wrong_fail.append((str(chain_id), status, attempt))
                continue
            if status == "completed":
                if job_count != expected_jobs(kind, n):
                    shape.append((str(chain_id), kind, n, job_count))
                continue
            if (
                kind == "capped"
                and status == "failed"
                and attempt == CAPPED_MAX_ATTEMPTS
                and not (error or "").startswith("Flaky")
            ):
                # its 3 attempts were spent by killed workers (lease expiry / release)
                f["failed_after_crashes"] += 1
                continue
            if status == "failed":
                wrong_fail.append((str(chain_id), kind, status, attempt, (error or "")[:80]))
            elif tail_id in explained:
                unfinished_explained += 1
            else:
                unfinished.append((str(chain_id), kind, status))
        lost += bad(UNFINISHED, unfinished) + unfinished_explained
        bad(WRONG_FAILURE, wrong_fail)
        bad(WRONG_SHAPE, shape)

        # structure: contiguous chain_index, exactly one tail per chain
        bad(BROKEN_INDEX, q(
            "SELECT chain_id FROM queuert.job GROUP BY chain_id "
            "HAVING max(chain_index) + 1 <> count(*) "
            "    OR count(*) FILTER (WHERE continued_to IS NULL) <> 1"
        ).fetchall())

        # atomic mode: exactly one effect row per completed job, none otherwise
        eff = q(
            "SELECT j.id, j.status::text, count(e.job_id) AS n, "
            "       count(*) FILTER (WHERE e.attempt = j.attempt AND e.worker = j.completed_by) AS matching "
            "FROM queuert.job j LEFT JOIN torture_effect e ON e.job_id = j.id "
            "WHERE j.type_name LIKE 'a.%' GROUP BY j.id, j.status"
        ).fetchall()
        duplicates = bad(DUPLICATE_EFFECT, [r for r in eff if r[2] > 1])
        lost += bad(MISSING_EFFECT, [r for r in eff if r[1] == "completed" and r[2] == 0])
        bad(PHANTOM_EFFECT, [r for r in eff if r[1] != "completed" and r[2] > 0])
        bad(FOREIGN_EFFECT, [r for r in eff if r[1] == "completed" and r[2] == 1 and r[3] != 1])
        f["atomic_jobs"] = len(eff)

        # staged mode: the completing attempt ran (at-least-once, never from nowhere)
        st = q(
            "SELECT j.id, j.attempt, j.completed_by, "
            "       count(a.job_id) AS runs, "
            "       count(*) FILTER (WHERE a.attempt = j.attempt AND a.worker = j.completed_by) AS matching "
            "FROM queuert.job j LEFT JOIN torture_attempt a ON a.job_id = j.id "
            "WHERE j.type_name LIKE 's.%' AND j.status = 'completed' GROUP BY j.id"
        ).fetchall()
        lost += bad(STAGED_WITHOUT_RUN, [r for r in st if r[4] == 0])
        f["staged_jobs"] = len(st)
        f["staged_reruns"] = sum(1 for r in st if r[3] > 1)

        # fencing: a final output was produced by the attempt that completed it
        bad(STALE_OUTPUT, q(
            "SELECT id, attempt, completed_by, output FROM queuert.job "
            "WHERE status = 'completed' AND continued_to IS NULL AND ("
            "  (output->>'attempt')::int IS DISTINCT FROM attempt "
            "  OR output->>'worker' IS DISTINCT FROM completed_by)"
        ).fetchall())

        # leases: nothing running once the workers stopped; one running
        # without a live lease means reap never took it back
        bad(RUNNING_EXPIRED, running_expired)
        bad(RUNNING_LIVE, running_live)

        # fan-in: nothing blocked whose blockers all completed; counters agree
        bad(STRANDED, stranded)
        bad(OPEN_BLOCKERS, miscounted)
        bad(HANDLER_REPORTED, q("SELECT job_id, what FROM torture_violation").fetchall())
        c.execute("COMMIT")

    f["lost"] = lost
    f["duplicates"] = duplicates
    return f, v
