"""The SQLite torture run's application: ``app.py``'s handlers on a SQLite
file, for one processing mode.

Loaded by ``queuert worker sqlite_app:worker --dsn sqlite:///FILE`` in a
worker process started by ``sqlite_run.py``. Environment: ``TORTURE_DB``
(the database file), ``TORTURE_MODE`` (``staged`` or ``atomic``: types
``s.*`` or ``a.*``), ``TORTURE_CONCURRENCY``, ``TORTURE_FAIL_RATE``.

What the handlers leave behind for the final checks (``sqlite_checks.py``),
as in ``app.py``:

* atomic mode: every attempt inserts one row into ``torture_effect`` on
  ``job.conn``, inside the job's transaction, *before* it decides to fail;
  a failed attempt rolls back to the savepoint and a killed worker rolls
  back everything, so a job ends with exactly one row if it completed and
  none otherwise.
* staged mode: every attempt records ``(job_id, attempt, worker)`` in
  ``torture_attempt`` on a separate autocommit connection before it runs.
* both: a final job's output carries its attempt and worker id (fencing);
  fan-in and schedule breaches go to ``torture_violation`` in a file of
  their own beside the database (``<db>.violations``).
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import random
import signal
import sqlite3
import threading
from datetime import datetime, timezone
from typing import Any

import queuert

faulthandler.register(signal.SIGUSR1, all_threads=True)

MODE = os.environ.get("TORTURE_MODE", "staged")
P = "a" if MODE == "atomic" else "s"
DB = os.environ["TORTURE_DB"]
FAIL_RATE = float(os.environ.get("TORTURE_FAIL_RATE", "0.1"))

worker = queuert.Worker(
    f"sqlite:///{DB}",
    mode=MODE,  # type: ignore[arg-type]
    concurrency=int(os.environ.get("TORTURE_CONCURRENCY", "4")),
    lease=2.0,
    renew_interval=0.5,
    reap_interval=0.5,
    poll_interval=0.2,
    grace_period=3.0,
)


class Flaky(Exception):
    """A random, retryable handler failure."""


_tls = threading.local()


def _side(query: str, params: tuple[Any, ...]) -> None:
    """A write on a connection of its own (never the job's transaction)."""
    conn = getattr(_tls, "conn", None)
    if conn is None:
        conn = _tls.conn = sqlite3.connect(DB, timeout=30, isolation_level=None)
    conn.execute(query, params)


def _violations() -> sqlite3.Connection:
    """Breaches go to a file of their own (``<db>.violations``): in atomic
    mode the job's transaction holds the database's write lock, which a
    second connection of this process would wait for in vain."""
    conn = getattr(_tls, "violations", None)
    if conn is None:
        conn = _tls.violations = sqlite3.connect(f"{DB}.violations", timeout=30, isolation_level=None)
        conn.execute("CREATE TABLE IF NOT EXISTS torture_violation (job_id TEXT, what TEXT NOT NULL)")
    return conn


_RECORD = "INSERT INTO torture_attempt (job_id, attempt, worker) VALUES (?, ?, ?)"
_EFFECT = "INSERT INTO torture_effect (job_id, attempt, worker) VALUES (?, ?, ?)"
_VIOLATION = "INSERT INTO torture_violation (job_id, what) VALUES (?, ?)"


def begin_sync(job: queuert.JobContext[Any]) -> None:
    """Record the attempt (mode-specific)."""
    row = (str(job.id), job.attempt, job.worker_id)
    if MODE == "atomic":
        job.conn.execute(_EFFECT, row)
    else:
        _side(_RECORD, row)


async def begin(job: queuert.JobContext[Any]) -> None:
    if MODE == "atomic":
        begin_sync(job)  # the job's own transaction, on its connection
    else:
        await asyncio.to_thread(begin_sync, job)
    await asyncio.sleep(random.uniform(0, 0.01))


def maybe_fail(job: queuert.JobContext[Any]) -> None:
    if random.random() < FAIL_RATE:
        raise Flaky(f"random failure of {job.type_name} attempt {job.attempt}")


def result(job: queuert.JobContext[Any], **extra: Any) -> dict[str, Any]:
    return {"attempt": job.attempt, "worker": job.worker_id, **extra}


def _violation(job_id: str, what: str) -> None:
    _violations().execute(_VIOLATION, (job_id, what))


async def violation(job: queuert.JobContext[Any], what: str) -> None:
    await asyncio.to_thread(_violation, str(job.id), what)


@worker.handler(f"{P}.single")
async def single(job: queuert.JobContext[Any]) -> Any:
    await begin(job)
    maybe_fail(job)
    return result(job)


@worker.handler(f"{P}.step1")
async def step1(job: queuert.JobContext[Any]) -> Any:
    await begin(job)
    maybe_fail(job)
    return job.continue_with(f"{P}.step2", {"from": str(job.id)})


@worker.handler(f"{P}.step2")
def step2(job: queuert.JobContext[Any]) -> Any:
    # a sync handler: a thread (in atomic mode, its slot's connection)
    begin_sync(job)
    maybe_fail(job)
    return job.continue_with(f"{P}.step3", {"from": str(job.id)})


@worker.handler(f"{P}.step3")
async def step3(job: queuert.JobContext[Any]) -> Any:
    await begin(job)
    maybe_fail(job)
    return result(job, steps=3)


@worker.handler(f"{P}.loop")
async def loop(job: queuert.JobContext[Any]) -> Any:
    await begin(job)
    maybe_fail(job)
    n, i = int(job.input["n"]), int(job.input["i"])
    if i < n:
        return job.continue_with(f"{P}.loop", {"n": n, "i": i + 1})
    return result(job, iterations=i)


@worker.handler(f"{P}.sched")
async def sched(job: queuert.JobContext[Any]) -> Any:
    await begin(job)
    early = (job.scheduled_at - datetime.now(timezone.utc)).total_seconds()
    if early > 0.05:  # one clock, this machine's; 50 ms of slack
        await violation(job, f"scheduled job ran {early:.3f}s early")
    maybe_fail(job)
    return result(job)


@worker.handler(f"{P}.capped")
async def capped(job: queuert.JobContext[Any]) -> Any:
    await begin(job)
    if job.input.get("always_fail"):
        raise Flaky(f"capped job always fails (attempt {job.attempt})")
    return result(job)


@worker.handler(f"{P}.join")
async def join(job: queuert.JobContext[Any]) -> Any:
    await begin(job)
    expected = int(job.input["n"])
    blockers = job.blockers
    if len(blockers) != expected or any(b.output is None for b in blockers):
        await violation(
            job,
            f"fan-in ran with {len(blockers)}/{expected} blockers, "
            f"{sum(b.output is None for b in blockers)} without output",
        )
    maybe_fail(job)
    return result(job, blockers=len(blockers))
