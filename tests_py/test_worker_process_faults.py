"""A staged worker process killed with SIGKILL while it holds hundreds of
jobs: a few running, most claimed ahead (leased, never started). Nothing is
lost: once the leases run out another worker reaps and runs every one, and
only the jobs the dead worker held spent an attempt.

Uses the application module and fixtures of test_worker_process.py.
"""

from __future__ import annotations

import signal
from typing import Any

import psycopg

from test_worker_process import (  # noqa: F401 - app_dir, side and spawn are fixtures
    app_dir,
    scalar,
    side,
    spawn,
    start_many,
    statuses,
    wait_for,
)


def test_sigkill_of_a_staged_worker_holding_hundreds_of_jobs_loses_none(
    side: psycopg.Connection[Any], spawn: Any
) -> None:
    n, slots, ahead = 500, 4, 300
    start_many(side, "held", list(range(n)))
    first = spawn(APP_HANG="1", APP_CONCURRENCY=str(slots), APP_PREFETCH=str(ahead), APP_LEASE="3")
    held_query = "SELECT count(*) FROM queuert.job WHERE status = 'running'"
    # its slots hang, so it claims until slots + prefetch are held, then waits
    wait_for(lambda: scalar(side, held_query) == slots + ahead, timeout=60)
    wait_for(lambda: scalar(side, "SELECT count(*) FROM side") == slots, timeout=60)
    held = {r[0] for r in side.execute("SELECT id FROM queuert.job WHERE status = 'running'")}
    first_id = scalar(side, "SELECT DISTINCT leased_by FROM queuert.job WHERE status = 'running'")
    first.kill()  # SIGKILL: no release, no acknowledgement
    assert first.wait(10) == -signal.SIGKILL
    second = spawn(APP_CONCURRENCY="8", APP_LEASE="3", APP_REAP="0.2")
    wait_for(lambda: statuses(side) == {"completed": n}, timeout=120, interval=0.2)
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    second_id = scalar(side, "SELECT DISTINCT completed_by FROM queuert.job")
    assert second_id != first_id
    jobs = {r[0]: r[1] for r in side.execute("SELECT id, attempt FROM queuert.job")}
    # the held jobs came back through the reaper (their claim's attempt is
    # spent), the rest were claimed once
    assert {j for j, a in jobs.items() if a == 2} == held
    assert {j for j, a in jobs.items() if a == 1} == set(jobs) - held
    runs = side.execute("SELECT job_id, attempt, worker FROM side").fetchall()
    # the dead worker ran only its slots' jobs: those held ahead never started
    started_first = [r for r in runs if r[2] == first_id]
    assert len(started_first) == slots and {r[0] for r in started_first} <= held
    assert all(r[1] == 1 for r in started_first)
    # the second worker ran every job once, at the attempt that completed it
    started_second = sorted((r[0], r[1]) for r in runs if r[2] == second_id)
    assert started_second == sorted(jobs.items())
