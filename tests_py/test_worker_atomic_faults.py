"""Atomic-mode workers under real faults: a deadlock on the completion
statement, a completion the server always refuses with 40001, a handler
that deallocates the slot's prepared statements, a handler that ends the
worker's transaction itself, and a sync handler whose backend is terminated
mid-statement. The exactly-once rule
holds in each: the database keeps the job's effects from one attempt, the
one that completed it. Only public API, database reads, logs and faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
import pytest

from faults import terminate_when
from queuert.job import JobContext
from test_worker import (  # noqa: F401 - db is a fixture
    DB,
    _more_deadlocks_than,
    db,
    deadlocks,
    eventually,
    fast,
    running,
    wait_for_lock_wait,
)


@pytest.fixture
async def side(db: DB) -> DB:
    await db.conn.execute("CREATE TABLE side (job_id uuid, attempt int, worker text)")
    return db


async def _second_job_of_a_chain(db: DB, type_name: str) -> tuple[UUID, UUID]:
    """(root, job): a chain whose root is done and whose second job, of
    ``type_name``, is pending. Completing that job locks the root first."""
    root = await db.start("root")
    await db.conn.execute("SELECT id FROM queuert.claim('setup', ARRAY['root'])")
    row = await db.one("SELECT id FROM queuert.continue_with(%s, 'setup', %s)", (root, type_name))
    return root, row[0]


async def _status(db: DB, job_id: UUID) -> str:
    return (await db.job(job_id))["status"]


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_deadlock_on_the_completion_statement_rolls_the_attempt_back_unspent(
    side: DB, dsn: str, kind: str
) -> None:
    """The completion waits for the chain's root, which the test holds; the
    test then asks for the job's row, which the worker's claim holds: a lock
    cycle the worker's backend breaks with 40P01 on the completion statement.
    The worker rolls back the whole transaction, its claim included: the
    handler's write is undone and the job is pending again at its old
    attempt, not failed (a transient conflict spends no attempt, so a type
    with max_attempts=1 survives it). It runs again and completes; the
    effect exists once, from the completing run."""
    db = side
    await db.set_type("atom", max_attempts=1)
    root, job_id = await _second_job_of_a_chain(db, "atom")
    worker = fast(dsn, mode="atomic", concurrency=1)
    ran: list[int] = []
    inside = threading.Event()
    # one per run: the rerun waits until the test let go
    gates = [threading.Event(), threading.Event()]
    insert = "INSERT INTO side VALUES (%s, %s, %s)"

    if kind == "async":

        @worker.handler("atom")
        async def atom(job: JobContext[Any]) -> Any:
            ran.append(job.attempt)
            await job.conn.execute(insert, (job.id, job.attempt, job.worker_id))
            inside.set()
            await asyncio.to_thread(gates[min(len(ran), 2) - 1].wait)
            return "done"

    else:

        @worker.handler("atom")
        def atom_sync(job: JobContext[Any]) -> Any:
            ran.append(job.attempt)
            job.conn.execute(insert, (job.id, job.attempt, job.worker_id))
            inside.set()
            gates[min(len(ran), 2) - 1].wait()
            return "done"

    before = await deadlocks(db)
    other = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        async with running(worker):
            try:
                assert await asyncio.to_thread(inside.wait, 30)
                await other.execute("SET deadlock_timeout = '20s'")  # the worker's backend detects it
                await other.execute("BEGIN")
                await other.execute("SELECT 1 FROM queuert.job WHERE id = %s FOR UPDATE", (root,))
                gates[0].set()  # the handler returns; its completion waits for the root
                await wait_for_lock_wait(db, "queuert-atomic")
                # the job's row, held by the claim: the cycle closes
                lock_job = asyncio.create_task(
                    other.execute("SELECT 1 FROM queuert.job WHERE id = %s FOR UPDATE", (job_id,))
                )
                await eventually(lambda: worker.stats.conflicts_retried == 1, timeout=60)
                # the rerun may have claimed the row before our request got it:
                # give up the request (a no-op once granted), then the root
                await db.conn.execute("SELECT pg_cancel_backend(%s)", (other.info.backend_pid,))
                with contextlib.suppress(psycopg.errors.QueryCanceled):
                    await asyncio.wait_for(lock_job, 30)
                await other.execute("ROLLBACK")
                gates[1].set()
                await eventually(lambda: _completed(db, job_id), timeout=30)
            finally:
                for gate in gates:  # a failed step must not leave a handler waiting
                    gate.set()
    finally:
        await other.close()
    await eventually(lambda: _more_deadlocks_than(db, before))
    assert ran == [1, 1]  # the conflict spent no attempt: the rerun is attempt 1 again
    assert await db.all("SELECT job_id, attempt, worker FROM side") == [(job_id, 1, worker.worker_id)]
    job = await db.job(job_id)
    assert (job["attempt"], job["completed_by"], job["output"]) == (1, worker.worker_id, "done")
    assert job["last_attempt_error"] is None  # no failure was recorded
    assert worker.stats.completed == 1 and worker.stats.failed == 0 and worker.stats.conflicts_retried == 1


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_job_whose_completion_always_conflicts_fails_after_three_reruns(
    side: DB, dsn: str, kind: str
) -> None:
    """A conflict that is not transient: a trigger makes the server refuse
    every completion of the job with 40001. The first three roll the whole
    attempt back (unspent, the handler's write undone each time); the fourth
    is recorded as the attempt's failure, so such a job cannot run forever."""
    db = side
    await db.set_type("doomed", max_attempts=1)
    await db.conn.execute(
        "CREATE FUNCTION refuse_completion() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.status = 'completed' THEN"
        " RAISE EXCEPTION USING ERRCODE = '40001', MESSAGE = 'test: could not serialize access';"
        " END IF; RETURN NEW; END $$"
    )
    await db.conn.execute(
        "CREATE TRIGGER refuse_completion BEFORE UPDATE ON queuert.job"
        " FOR EACH ROW EXECUTE FUNCTION refuse_completion()"
    )
    job_id = await db.start("doomed")
    worker = fast(dsn, mode="atomic", concurrency=1)
    ran: list[int] = []
    insert = "INSERT INTO side VALUES (%s, %s, %s)"

    if kind == "async":

        @worker.handler("doomed")
        async def doomed(job: JobContext[Any]) -> Any:
            ran.append(job.attempt)
            await job.conn.execute(insert, (job.id, job.attempt, job.worker_id))
            return "done"

    else:

        @worker.handler("doomed")
        def doomed_sync(job: JobContext[Any]) -> Any:
            ran.append(job.attempt)
            job.conn.execute(insert, (job.id, job.attempt, job.worker_id))
            return "done"

    async with running(worker):
        await eventually(lambda: _status_is(db, job_id, "failed"), timeout=30)
    assert ran == [1, 1, 1, 1]  # three reruns at the same attempt, then the failure
    assert await db.all("SELECT job_id FROM side") == []  # every run's write undone
    job = await db.job(job_id)
    assert job["attempt"] == 1 and "could not serialize access" in job["last_attempt_error"]
    assert worker.stats.conflicts_retried == 3
    assert worker.stats.failed == 1 and worker.stats.completed == 0


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_handler_that_deallocates_the_slots_statements_runs_again(side: DB, dsn: str, kind: str) -> None:
    """An atomic slot prepares its claim and completion once per
    connection. A handler's DEALLOCATE ALL on job.conn removes them: the
    acknowledgement finds no statement, the slot drops its connection (the
    attempt rolls back whole, claim included) and reconnects, preparing
    again; the job runs again at the same attempt and completes once."""
    db = side
    await db.set_type("dealloc", max_attempts=1)
    job_id = await db.start("dealloc")
    worker = fast(dsn, mode="atomic", concurrency=1)
    ran: list[int] = []
    insert = "INSERT INTO side VALUES (%s, %s, %s)"

    if kind == "async":

        @worker.handler("dealloc")
        async def dealloc(job: JobContext[Any]) -> Any:
            ran.append(job.attempt)
            await job.conn.execute(insert, (job.id, job.attempt, job.worker_id))
            if len(ran) == 1:
                await job.conn.execute("DEALLOCATE ALL")
            return "done"

    else:

        @worker.handler("dealloc")
        def dealloc_sync(job: JobContext[Any]) -> Any:
            ran.append(job.attempt)
            job.conn.execute(insert, (job.id, job.attempt, job.worker_id))
            if len(ran) == 1:
                job.conn.execute("DEALLOCATE ALL")
            return "done"

    async with running(worker):
        await eventually(lambda: _completed(db, job_id), timeout=30)
    assert ran == [1, 1]
    assert await db.all("SELECT job_id, attempt FROM side") == [(job_id, 1)]
    assert (await db.job(job_id))["completed_by"] == worker.worker_id
    assert worker.stats.completed == 1 and worker.stats.failed == 0 and worker.stats.reconnects == 1


async def _status_is(db: DB, job_id: UUID, status: str) -> bool:
    return await _status(db, job_id) == status


async def _completed(db: DB, job_id: UUID) -> bool:
    return await _status(db, job_id) == "completed"


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_handler_that_commits_job_conn_itself_is_acknowledged_in_a_new_transaction(
    side: DB, dsn: str, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The handler's COMMIT ends atomic territory: the claim and its write
    are committed at once (the job is visibly running, its write visible);
    the worker warns and acknowledges in a new transaction. The job
    completes once and its write exists once."""
    caplog.set_level(logging.WARNING, logger="queuert.worker")
    db = side
    worker = fast(dsn, mode="atomic", concurrency=1)
    committed = threading.Event()
    gate = threading.Event()

    if kind == "async":

        @worker.handler("self-commit")
        async def async_handler(job: JobContext[Any]) -> Any:
            await job.conn.execute("INSERT INTO side VALUES (%s, %s, %s)", (job.id, job.attempt, job.worker_id))
            await job.conn.commit()
            committed.set()
            await asyncio.to_thread(gate.wait, 60)
            return {"kind": kind}

    else:

        @worker.handler("self-commit")
        def sync_handler(job: JobContext[Any]) -> Any:
            job.conn.execute("INSERT INTO side VALUES (%s, %s, %s)", (job.id, job.attempt, job.worker_id))
            job.conn.commit()
            committed.set()
            gate.wait(60)
            return {"kind": kind}

    chain = await db.start("self-commit")
    async with running(worker):
        assert await asyncio.to_thread(committed.wait, 30)
        # from outside: the claim committed with the handler's write
        job = await db.job(chain)
        assert (job["status"], job["leased_by"], job["attempt"]) == ("running", worker.worker_id, 1)
        assert await db.all("SELECT job_id FROM side") == [(chain,)]
        gate.set()
        await eventually(lambda: _completed(db, chain), timeout=30)
    job = await db.job(chain)
    assert (job["attempt"], job["output"], job["completed_by"]) == (1, {"kind": kind}, worker.worker_id)
    assert await db.all("SELECT job_id, attempt FROM side") == [(chain, 1)]
    warned = [r for r in caplog.records if "ended the transaction itself" in r.getMessage()]
    assert len(warned) == 1 and str(chain) in warned[0].getMessage()
    assert worker.stats.completed == 1 and worker.stats.failed == 0


async def test_terminating_a_sync_handlers_backend_rolls_its_attempt_back(side: DB, dsn: str) -> None:
    """A sync handler (in its slot's thread, on a sync connection) is inside
    a statement when its backend is terminated: the server rolls the claim
    and the handler's write back, the handler's call fails, the slot
    reconnects and claims the job again, still at attempt 1."""
    db = side
    marker = f"terminate-me-{uuid.uuid4().hex}"
    worker = fast(dsn, mode="atomic", concurrency=1, lease=timedelta(seconds=60))
    runs: list[tuple[int, str | None]] = []

    @worker.handler("victim")
    def victim(job: JobContext[Any]) -> Any:
        job.conn.execute("INSERT INTO side VALUES (%s, %s, %s)", (job.id, job.attempt, job.worker_id))
        if runs:
            runs.append((job.attempt, None))
            return "second run"
        try:
            job.conn.execute(f"SELECT pg_sleep(60), '{marker}'")
        except psycopg.OperationalError as exc:
            runs.append((job.attempt, exc.sqlstate))
            raise
        return "not reached"

    chain = await db.start("victim")
    async with running(worker):
        await asyncio.to_thread(terminate_when, dsn, f"%{marker}%")
        await eventually(lambda: _completed(db, chain), timeout=30)
    assert runs == [(1, "57P01"), (1, None)]  # admin_shutdown; the killed attempt was not spent
    assert await db.all("SELECT job_id, attempt FROM side") == [(chain, 1)]  # the first write rolled back
    job = await db.job(chain)
    assert (job["attempt"], job["last_attempt_error"], job["output"]) == (1, None, "second run")
    assert worker.stats.reconnects >= 1 and worker.stats.completed == 1 and worker.stats.failed == 0
