"""The worker as a real process: signals, kill -9, several processes at once.

Each test writes a small application module into a temporary directory and
runs it with ``run_worker_cli("app:worker", ...)``, the function behind
``queuert worker``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from faults import backends_of_process, terminate_backend

APP = textwrap.dedent(
    """
    import asyncio, os, time
    from datetime import timedelta
    import queuert

    MODE = os.environ.get("APP_MODE", "staged")
    worker = queuert.Worker(
        mode=MODE,
        concurrency=int(os.environ.get("APP_CONCURRENCY", "4")),
        lease=timedelta(seconds=float(os.environ.get("APP_LEASE", "60"))),
        renew_interval=float(os.environ.get("APP_RENEW", "0.2")),
        reap_interval=float(os.environ.get("APP_REAP", "0.2")),
        poll_interval=0.5,
        grace_period=float(os.environ.get("APP_GRACE", "10")),
        types=os.environ["APP_TYPES"].split(",") if os.environ.get("APP_TYPES") else None,
        prefetch=int(os.environ["APP_PREFETCH"]) if os.environ.get("APP_PREFETCH") else "auto",
    )

    @worker.handler("sleepy")
    def sleepy(job):
        # a sync handler: records its start, sleeps, records its end
        with queuert_side() as c:
            c.execute("INSERT INTO side (job_id, attempt, worker, phase) VALUES (%s, %s, %s, 'start')",
                      (job.id, job.attempt, job.worker_id))
        time.sleep(float(job.input))
        with queuert_side() as c:
            c.execute("INSERT INTO side (job_id, attempt, worker, phase) VALUES (%s, %s, %s, 'end')",
                      (job.id, job.attempt, job.worker_id))
        return job.attempt

    @worker.handler("stuck-once")
    def stuck_once(job):
        # attempt 1 never ends by itself (the test kills the process inside
        # it, however slow the machine); later attempts end at once
        with queuert_side() as c:
            c.execute("INSERT INTO side (job_id, attempt, worker, phase) VALUES (%s, %s, %s, 'start')",
                      (job.id, job.attempt, job.worker_id))
        if job.attempt == 1:
            time.sleep(3600)
        return job.attempt

    @worker.handler("held")
    async def held(job):
        # records its start; hangs while APP_HANG is set (that process is
        # killed with hundreds of jobs claimed), else ends at once
        def record():
            with queuert_side() as c:
                c.execute("INSERT INTO side (job_id, attempt, worker, phase) VALUES (%s, %s, %s, 'start')",
                          (job.id, job.attempt, job.worker_id))
        await asyncio.to_thread(record)
        if os.environ.get("APP_HANG"):
            await asyncio.sleep(3600)
        return job.attempt

    @worker.handler("side-effect")
    async def side_effect(job):
        # atomic mode: the side row commits together with the completion
        await job.conn.execute(
            "INSERT INTO side (job_id, attempt, worker, phase) VALUES (%s, %s, %s, 'done')",
            (job.id, job.attempt, job.worker_id))
        return None

    def queuert_side():
        import psycopg
        return psycopg.connect(os.environ["APP_DSN"], autocommit=True)
    """
)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


@pytest.fixture
def side(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    conn.execute("CREATE TABLE side (job_id uuid, attempt int, worker text, phase text, at timestamptz DEFAULT clock_timestamp())")
    conn.commit()
    conn.autocommit = True
    return conn


@pytest.fixture
def spawn(dsn: str, app_dir: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> subprocess.Popen[bytes]:
        full = dict(os.environ)
        full.update({"APP_DSN": dsn, "PYTHONPATH": str(app_dir) + os.pathsep + full.get("PYTHONPATH", "")})
        full.update(env)
        code = (
            "import logging, sys; logging.basicConfig(level=logging.INFO, stream=sys.stderr); "
            "from queuert.worker import run_worker_cli; "
            f"run_worker_cli('app:worker', dsn={dsn!r})"
        )
        p = subprocess.Popen([sys.executable, "-c", code], env=full, cwd=app_dir, stderr=subprocess.PIPE)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(10)
        if p.stderr is not None:
            p.stderr.close()


def wait_for(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_for_log(p: subprocess.Popen[bytes], needle: str, timeout: float = 30.0) -> None:
    """Read the worker's stderr (its log) until a line contains ``needle``:
    the worker has done what that line reports."""
    found = threading.Event()
    assert p.stderr is not None
    stderr = p.stderr

    def read() -> None:
        for line in iter(stderr.readline, b""):
            if needle in line.decode(errors="replace"):
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), f"the worker never logged {needle!r}"


def scalar(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def start_many(conn: psycopg.Connection[Any], type_name: str, inputs: list[Any]) -> None:
    import json

    conn.execute(
        "SELECT count(*) FROM queuert.start_chains(%s::jsonb)",
        (json.dumps([{"type_name": type_name, "input": i} for i in inputs]),),
    )


def statuses(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(conn.execute("SELECT status::text, count(*) FROM queuert.job GROUP BY status").fetchall())


def test_sigterm_lets_in_flight_jobs_finish_and_loses_nothing(side: psycopg.Connection[Any], spawn: Any) -> None:
    start_many(side, "sleepy", [0.3] * 40)
    p = spawn(APP_CONCURRENCY="4", APP_GRACE="10")
    wait_for(lambda: scalar(side, "SELECT count(*) FROM side WHERE phase = 'end'") >= 4)
    p.send_signal(signal.SIGTERM)
    assert p.wait(20) == 0
    # nothing is left running: every claimed job finished within the grace period
    st = statuses(side)
    assert "running" not in st, st
    started = scalar(side, "SELECT count(DISTINCT job_id) FROM side WHERE phase = 'start'")
    ended = scalar(side, "SELECT count(DISTINCT job_id) FROM side WHERE phase = 'end'")
    assert started == ended == st.get("completed", 0)
    assert st.get("pending", 0) == 40 - st["completed"] > 0
    # a second worker finishes the rest; each job ran exactly once
    q = spawn(APP_CONCURRENCY="8")
    wait_for(lambda: statuses(side) == {"completed": 40})
    q.send_signal(signal.SIGTERM)
    assert q.wait(20) == 0
    assert scalar(side, "SELECT count(*) FROM side WHERE phase = 'start'") == 40


def test_sigterm_releases_jobs_that_outlive_the_grace_period(side: psycopg.Connection[Any], spawn: Any) -> None:
    start_many(side, "sleepy", [30])
    p = spawn(APP_GRACE="0.5")
    wait_for(lambda: scalar(side, "SELECT count(*) FROM side WHERE phase = 'start'") == 1)
    p.send_signal(signal.SIGTERM)
    # the handler sleeps 30 s: exiting within 20 s (grace 0.5 s, with room
    # for a loaded machine) shows the worker did not wait for it
    assert p.wait(20) == 0
    row = side.execute(
        "SELECT status::text, leased_by, scheduled_at <= now(), last_attempt_error FROM queuert.job"
    ).fetchone()
    assert row is not None
    assert row[:3] == ("pending", None, True)  # released for an immediate retry
    assert "released" in row[3]


def test_second_signal_stops_at_once(side: psycopg.Connection[Any], spawn: Any) -> None:
    start_many(side, "sleepy", [30])
    p = spawn(APP_GRACE="60")
    wait_for(lambda: scalar(side, "SELECT count(*) FROM side WHERE phase = 'start'") == 1)
    p.send_signal(signal.SIGINT)
    # the first signal was handled (two signals pending at once would be one)
    wait_for_log(p, "stopping (grace period")
    assert p.poll() is None  # waiting for the in-flight job (grace 60 s)
    p.send_signal(signal.SIGINT)
    assert p.wait(15) == 0
    assert scalar(side, "SELECT status::text FROM queuert.job") == "pending"


def test_sigkill_mid_job_then_another_worker_finishes_after_lease_expiry(
    side: psycopg.Connection[Any], spawn: Any
) -> None:
    start_many(side, "stuck-once", [None])
    first = spawn(APP_LEASE="1.5", APP_RENEW="0.3")
    wait_for(lambda: scalar(side, "SELECT count(*) FROM side WHERE phase = 'start'") == 1)
    first.kill()  # SIGKILL: no cleanup at all
    first.wait(10)
    assert scalar(side, "SELECT status::text FROM queuert.job") == "running"
    second = spawn(APP_LEASE="1.5", APP_REAP="0.2")
    wait_for(lambda: scalar(side, "SELECT status::text FROM queuert.job") == "completed", timeout=30)
    second.send_signal(signal.SIGTERM)
    assert second.wait(20) == 0
    row = side.execute("SELECT attempt, completed_by, output FROM queuert.job").fetchone()
    assert row is not None
    attempts = side.execute("SELECT attempt, worker FROM side WHERE phase = 'start' ORDER BY at").fetchall()
    assert [a for a, _ in attempts] == [1, 2]
    assert attempts[0][1] != attempts[1][1]
    assert row == (2, attempts[1][1], 2)  # completed by the second worker, at attempt 2


def test_exactly_once_across_four_atomic_worker_processes(side: psycopg.Connection[Any], spawn: Any) -> None:
    """Four atomic workers share 5,000 jobs; mid-run one is killed with
    SIGKILL and another has its connections terminated by the server. Every
    in-flight transaction of both rolls back whole: each job's effect exists
    once, from the worker and attempt that completed it."""
    n = 5000
    start_many(side, "side-effect", list(range(n)))
    procs = [spawn(APP_MODE="atomic", APP_CONCURRENCY="4", APP_TYPES="side-effect") for _ in range(4)]
    done = "SELECT count(*) FROM queuert.job WHERE status = 'completed'"
    wait_for(lambda: scalar(side, done) >= n // 5, timeout=120, interval=0.05)
    procs[0].kill()  # SIGKILL: its open transactions die with its sockets
    assert procs[0].wait(10) == -signal.SIGKILL
    assert scalar(side, done) < n  # the kill came mid-run
    wait_for(lambda: scalar(side, done) >= n // 2, timeout=120, interval=0.05)
    victims = backends_of_process(side.info.dsn, procs[1].pid, "queuert-atomic")
    assert victims, "no atomic connection of the second worker found"
    for pid in victims:
        terminate_backend(side.info.dsn, pid)
    assert scalar(side, done) < n  # ... and so did the terminations
    wait_for(lambda: statuses(side) == {"completed": n}, timeout=120, interval=0.2)
    for p in procs[1:]:
        p.send_signal(signal.SIGTERM)
    for p in procs[1:]:
        assert p.wait(30) == 0  # the one whose connections died reconnected and stopped cleanly
    # every job has exactly one side row, written by the worker that completed it
    assert scalar(side, "SELECT count(*) FROM side") == n
    assert scalar(side, "SELECT count(DISTINCT job_id) FROM side") == n
    mismatched = scalar(
        side,
        "SELECT count(*) FROM queuert.job j JOIN side s ON s.job_id = j.id "
        "WHERE j.completed_by IS DISTINCT FROM s.worker OR j.attempt <> s.attempt",
    )
    assert mismatched == 0
    # a rolled-back attempt is not spent: every job completed as attempt 1
    assert scalar(side, "SELECT count(*) FROM queuert.job WHERE attempt <> 1") == 0
    assert scalar(side, "SELECT count(DISTINCT completed_by) FROM queuert.job") >= 2
