"""``drain(worker)``: run a worker's handlers in the test's process until no
job of its types is due, and report what ran (Oban's ``drain_queue``).

Built only on the worker's public API (``run_async``, ``wait_started``,
``stop``, ``worker_id``, ``type_names``, ``stats``) and on reads of
``<schema>.job``: the worker runs as usual, with its own connections,
modes and settings; ``drain`` polls the database until none of the
worker's types has a due ``pending`` job and none is ``running`` under
this worker, then stops it. Each *round* ends there; with
``with_scheduled`` / ``with_retries`` it then makes the jobs that wait
(scheduled later, or for a retry's backoff) due with ``trigger_jobs`` and
runs another round.

What an attempt ended as comes from the job rows: the row shows the
outcome of a job's latest attempt (status, output, ``continued_to``,
``last_attempt_error``), read at the end of every round. An attempt that
failed and was retried within the same round (a type whose backoff is
zero) is reported as ``failed`` with ``error=None`` unless it was the one
just before the latest (``last_attempt_error`` outlives the retry); with
the default backoff every retry waits for the next round, so every
attempt's error is known.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from queuert import aio
from queuert.errors import InvalidJobStatusError, JobNotFoundError
from queuert.types import Job
from queuert.worker import Worker

__all__ = ["Attempt", "DrainResult", "DrainTimeout", "Outcome", "adrain", "drain"]

Outcome = Literal["completed", "continued", "failed", "lost"]
_POLL = 0.01


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One run of a handler during the drain.

    ``outcome``: ``completed`` (returned an output), ``continued`` (returned
    a continuation: ``continued_to`` is the next job), ``failed`` (raised,
    or returned ``RetryAt``; ``retry_at`` says when it runs again, None when
    its attempts are used up and the job is ``failed``), ``lost`` (the job
    was cancelled from outside meanwhile).
    """

    job_id: UUID
    chain_id: UUID
    chain_index: int
    type_name: str
    number: int
    outcome: Outcome
    error: str | None = None
    output: Any = None
    continued_to: UUID | None = None
    retry_at: datetime | None = None


@dataclasses.dataclass(frozen=True)
class DrainResult:
    """What a :func:`drain` ran: every attempt in order (round by round, job
    by creation order), the jobs as they ended, and the worker's counters
    for the drain (``claimed``, ``completed``, ``continued``, ``failed`` ...)."""

    attempts: tuple[Attempt, ...]
    jobs: tuple[Job, ...]
    rounds: int
    stats: Mapping[str, int]

    def by_outcome(self, outcome: Outcome) -> list[Attempt]:
        return [a for a in self.attempts if a.outcome == outcome]

    @property
    def completed(self) -> list[Attempt]:
        return self.by_outcome("completed")

    @property
    def continued(self) -> list[Attempt]:
        return self.by_outcome("continued")

    @property
    def failed(self) -> list[Attempt]:
        return self.by_outcome("failed")

    @property
    def outcomes(self) -> list[tuple[str, Outcome]]:
        """``(type name, outcome)`` per attempt, for one-line assertions."""
        return [(a.type_name, a.outcome) for a in self.attempts]

    def job(self, job_id: UUID) -> Job:
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise KeyError(job_id)


class DrainTimeout(TimeoutError):
    """Jobs were still due when the drain's time ran out; ``result`` holds
    what ran until then (the worker was stopped)."""

    def __init__(self, message: str, result: DrainResult) -> None:
        super().__init__(message)
        self.result = result


def drain(
    worker: Worker,
    *,
    dsn: str | None = None,
    with_scheduled: bool = False,
    with_retries: bool = False,
    timeout: float = 30.0,
) -> DrainResult:
    """Run ``worker`` until none of its job types has a due job; see :func:`adrain`.

    For plain (non-async) tests; an async test awaits :func:`adrain`.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(
            adrain(worker, dsn=dsn, with_scheduled=with_scheduled, with_retries=with_retries,
                   timeout=timeout)
        )
    raise RuntimeError("drain() called inside a running event loop: use `await adrain(...)`")


async def adrain(
    worker: Worker,
    *,
    dsn: str | None = None,
    with_scheduled: bool = False,
    with_retries: bool = False,
    timeout: float = 30.0,
) -> DrainResult:
    """Run ``worker``'s handlers until no job of its types is due, then stop it.

    ``dsn``: the database to run on (default: the worker's ``conninfo``;
    given, it is the worker's for the drain only). ``with_scheduled``: jobs
    scheduled for later that never ran (``schedule_after``, a continuation's
    delay) are made due and run too. ``with_retries``: failed attempts
    waiting for their backoff are retried at once, until they complete or
    use up ``max_attempts`` (a handler that always fails with unlimited
    attempts then runs until ``timeout``). Raises :class:`DrainTimeout`
    when jobs are still due after ``timeout`` seconds.
    """
    saved_conninfo = worker.conninfo
    if dsn is not None:
        worker.conninfo = dsn
    if worker.conninfo is None:
        raise ValueError("drain: the worker has no conninfo; pass dsn=")
    types = worker.type_names
    job_table = sql.Identifier(worker.schema, "job")
    stats_before = worker.stats.as_dict()
    try:
        async with await psycopg.AsyncConnection.connect(
            worker.conninfo, autocommit=True, row_factory=dict_row
        ) as conn:
            tracker = _Tracker(await _snapshot(conn, job_table, types))
            task = asyncio.create_task(worker.run_async())
            deadline = time.monotonic() + timeout
            timed_out = False
            try:
                worker_id = await _started(worker, task, deadline)
                while True:
                    if not await _idle_until(conn, job_table, types, worker_id, task, deadline):
                        timed_out = True
                        break
                    tracker.end_round(await _snapshot(conn, job_table, types))
                    waiting = await _waiting(conn, job_table, types, with_scheduled, with_retries)
                    if not waiting:
                        break
                    try:
                        await aio.trigger_jobs(conn, waiting, schema=worker.schema)
                    except (InvalidJobStatusError, JobNotFoundError):
                        pass  # one of them changed meanwhile: look again
            finally:
                worker.stop(immediate=timed_out)
                await task
            if timed_out:
                tracker.end_round(await _snapshot(conn, job_table, types))
    finally:
        worker.conninfo = saved_conninfo
    after = worker.stats.as_dict()
    # counters of this drain; largest_claim is a maximum, not a count
    result = tracker.result(
        {k: after[k] - stats_before.get(k, 0) for k in after if k != "largest_claim"}
    )
    if timed_out:
        raise DrainTimeout(
            f"drain: jobs of {types} were still due after {timeout} s "
            f"({len(result.attempts)} attempts ran)",
            result,
        )
    return result


async def _started(worker: Worker, task: asyncio.Task[None], deadline: float) -> str:
    waiter = asyncio.ensure_future(worker.wait_started(timeout=max(deadline - time.monotonic(), 0.1)))
    done, _ = await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        waiter.cancel()
        task.result()  # the worker's own error, if it failed to start
        raise RuntimeError("drain: the worker stopped before it started")
    return waiter.result()


async def _idle_until(
    conn: psycopg.AsyncConnection[Any],
    job_table: sql.Identifier,
    types: list[str],
    worker_id: str,
    task: asyncio.Task[None],
    deadline: float,
) -> bool:
    """Wait until no job of ``types`` is due or running under ``worker_id``;
    False when the deadline passed first."""
    query = sql.SQL(
        "SELECT EXISTS (SELECT FROM {} WHERE type_name = ANY(%s) AND ("
        " (status = 'pending' AND scheduled_at <= now())"
        " OR (status = 'running' AND leased_by = %s))) AS busy"
    ).format(job_table)
    while True:
        if task.done():
            task.result()
            raise RuntimeError("drain: the worker stopped by itself")
        row = await (await conn.execute(query, (types, worker_id))).fetchone()
        if row is not None and not row["busy"]:
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(_POLL)


async def _waiting(
    conn: psycopg.AsyncConnection[Any],
    job_table: sql.Identifier,
    types: list[str],
    with_scheduled: bool,
    with_retries: bool,
) -> list[UUID]:
    if not (with_scheduled or with_retries):
        return []
    query = sql.SQL(
        "SELECT id FROM {} WHERE type_name = ANY(%s) AND status = 'pending'"
        " AND scheduled_at > now() AND ((attempt = 0 AND %s) OR (attempt > 0 AND %s))"
        " ORDER BY seq"
    ).format(job_table)
    rows = await (await conn.execute(query, (types, with_scheduled, with_retries))).fetchall()
    return [row["id"] for row in rows]


async def _snapshot(
    conn: psycopg.AsyncConnection[Any], job_table: sql.Identifier, types: list[str]
) -> dict[UUID, Job]:
    query = sql.SQL("SELECT * FROM {} WHERE type_name = ANY(%s) ORDER BY seq").format(job_table)
    rows = await (await conn.execute(query, (types,))).fetchall()
    return {row["id"]: Job.from_row(row) for row in rows}


class _Tracker:
    """Turns the job rows at the end of each round into attempts."""

    def __init__(self, before: dict[UUID, Job]) -> None:
        self.last = before
        self.attempts: list[Attempt] = []
        self.touched: dict[UUID, Job] = {}
        self.rounds = 0

    def end_round(self, now: dict[UUID, Job]) -> None:
        self.rounds += 1
        for job_id, job in now.items():
            before = self.last.get(job_id)
            first = (before.attempt if before is not None else 0) + 1
            if job.attempt < first or job.status == "running":
                continue  # nothing ran, or it runs under another worker
            self.touched[job_id] = job
            for number in range(first, job.attempt):
                # failed and retried within this round
                # (the row keeps the error of the one just before a success)
                known = number == job.attempt - 1 and job.status == "completed"
                error = job.last_attempt_error if known else None
                self.attempts.append(_attempt(job, number, "failed", error=error))
            self.attempts.append(_latest(job))
        self.last = now

    def result(self, stats: Mapping[str, int]) -> DrainResult:
        return DrainResult(tuple(self.attempts), tuple(self.touched.values()), self.rounds, dict(stats))


def _attempt(job: Job, number: int, outcome: Outcome, **fields: Any) -> Attempt:
    return Attempt(job.id, job.chain_id, job.chain_index, job.type_name, number, outcome, **fields)


def _latest(job: Job) -> Attempt:
    if job.status == "completed":
        if job.continued_to is not None:
            return _attempt(job, job.attempt, "continued", continued_to=job.continued_to)
        return _attempt(job, job.attempt, "completed", output=job.output)
    if job.status == "pending":
        return _attempt(job, job.attempt, "failed", error=job.last_attempt_error, retry_at=job.scheduled_at)
    if job.status == "failed":
        return _attempt(job, job.attempt, "failed", error=job.last_attempt_error)
    return _attempt(job, job.attempt, "lost")  # cancelled from outside meanwhile
