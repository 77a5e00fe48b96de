"""The torture suite's application: handlers for one processing mode.

Loaded by ``queuert worker app:worker`` in a worker process started by
``run.py``. Environment: ``TORTURE_DSN`` (the torture database),
``TORTURE_MODE`` (``staged`` or ``atomic``: which handlers are registered,
types ``s.*`` or ``a.*``), ``TORTURE_CONCURRENCY``, ``TORTURE_FAIL_RATE``.

What the handlers leave behind for the final checks:

* atomic mode: every attempt inserts one row into ``torture_effect`` on
  ``job.conn``, inside the job's transaction, *before* it decides to fail.
  A failed attempt rolls back to the savepoint and a killed worker rolls
  back everything, so a job must end with exactly one row if it completed
  and none otherwise.
* staged mode: every attempt records ``(job_id, attempt, worker)`` in
  ``torture_attempt`` on a separate autocommit connection before it runs;
  a completion without the record of the attempt that completed it would
  mean a completion from nowhere.
* both: a final job's output carries its attempt and worker id, which must
  match ``attempt`` / ``completed_by`` (fencing); a fan-in job checks that it
  sees every blocker's output, a scheduled job that it did not run early;
  such breaches go to ``torture_violation``.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import random
import signal
import threading
from datetime import datetime, timezone
from typing import Any

import psycopg

import queuert

# The harness sends SIGUSR1 before it SIGKILLs a worker that did not stop:
# every thread's stack then lands in this worker's log.
faulthandler.register(signal.SIGUSR1, all_threads=True)

MODE = os.environ.get("TORTURE_MODE", "staged")
P = "a" if MODE == "atomic" else "s"
DSN = os.environ["TORTURE_DSN"]
FAIL_RATE = float(os.environ.get("TORTURE_FAIL_RATE", "0.1"))

worker = queuert.Worker(
    DSN,
    mode=MODE,  # type: ignore[arg-type]
    concurrency=int(os.environ.get("TORTURE_CONCURRENCY", "6")),
    lease=2.0,
    renew_interval=0.5,
    reap_interval=0.5,
    poll_interval=0.5,
    grace_period=3.0,
    reconnect_max=0.5,
)


class Flaky(Exception):
    """A random, retryable handler failure."""


# -- side connections (never the job's transaction) ------------------------

_aconn: psycopg.AsyncConnection[Any] | None = None
_tls = threading.local()


async def _side_async(query: str, params: tuple[Any, ...]) -> None:
    global _aconn
    for attempt in range(2):
        try:
            if _aconn is None or _aconn.closed:
                _aconn = await psycopg.AsyncConnection.connect(DSN, autocommit=True, connect_timeout=5)
            await _aconn.execute(query, params)
            return
        except psycopg.OperationalError:
            _aconn = None
            if attempt:
                raise


def _side_sync(query: str, params: tuple[Any, ...]) -> None:
    for attempt in range(2):
        conn = getattr(_tls, "conn", None)
        try:
            if conn is None or conn.closed:
                conn = _tls.conn = psycopg.connect(DSN, autocommit=True, connect_timeout=5)
            conn.execute(query, params)
            return
        except psycopg.OperationalError:
            _tls.conn = None
            if attempt:
                raise


_RECORD = "INSERT INTO torture_attempt (job_id, attempt, worker) VALUES (%s, %s, %s)"
_EFFECT = "INSERT INTO torture_effect (job_id, attempt, worker) VALUES (%s, %s, %s)"
_VIOLATION = "INSERT INTO torture_violation (job_id, what) VALUES (%s, %s)"


async def begin(job: queuert.JobContext[Any]) -> None:
    """Record the attempt (mode-specific), then maybe fail at random."""
    if MODE == "atomic":
        await job.conn.execute(_EFFECT, (job.id, job.attempt, job.worker_id))
    else:
        await _side_async(_RECORD, (job.id, job.attempt, job.worker_id))
    await asyncio.sleep(random.uniform(0, 0.01))


def begin_sync(job: queuert.JobContext[Any]) -> None:
    if MODE == "atomic":
        job.conn.execute(_EFFECT, (job.id, job.attempt, job.worker_id))
    else:
        _side_sync(_RECORD, (job.id, job.attempt, job.worker_id))


def maybe_fail(job: queuert.JobContext[Any]) -> None:
    if random.random() < FAIL_RATE:
        raise Flaky(f"random failure of {job.type_name} attempt {job.attempt}")


def result(job: queuert.JobContext[Any], **extra: Any) -> dict[str, Any]:
    return {"attempt": job.attempt, "worker": job.worker_id, **extra}


# -- handlers ----------------------------------------------------------------


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
    # a sync handler: a thread, and in atomic mode a sync connection
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
    # 50 ms of slack for the clock read of this process vs. the server
    early = (job.scheduled_at - datetime.now(timezone.utc)).total_seconds()
    if early > 0.05:
        await _side_async(_VIOLATION, (job.id, f"scheduled job ran {early:.3f}s early"))
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
        await _side_async(
            _VIOLATION,
            (job.id, f"fan-in ran with {len(blockers)}/{expected} blockers, "
                     f"{sum(b.output is None for b in blockers)} without output"),
        )
    maybe_fail(job)
    return result(job, blockers=len(blockers))
