"""The worker against a real PostgreSQL, run as an asyncio task in the test.

Behaviour the worker shows on both backends (retries, max_attempts, RetryAt,
refused continuations, scheduled jobs, stop with jobs in flight, ...) is
stated once, in test_worker_backends.py; this file keeps what only
PostgreSQL shows or what it asserts beyond that suite (typed job types,
LISTEN, terminated backends, deadlocks, prefetch details). Process-level behaviour (signals, kill -9, several
processes) is in test_worker_process.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import psycopg
import pydantic
import pytest

import queuert
from queuert import aio
from queuert.job import JobContext
from worker_helpers import asleep, eventually, running


# ---------------------------------------------------------------- helpers


class DB:
    """A small autocommit async helper for the test's own queries."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    async def one(self, query: str, params: Any = None) -> Any:
        cur = await self.conn.execute(query, params)
        return await cur.fetchone()

    async def all(self, query: str, params: Any = None) -> list[Any]:
        cur = await self.conn.execute(query, params)
        return await cur.fetchall()

    async def job(self, job_id: UUID) -> dict[str, Any]:
        cur = self.conn.cursor(row_factory=psycopg.rows.dict_row)
        await cur.execute("SELECT * FROM queuert.job WHERE id = %s", (job_id,))
        row = await cur.fetchone()
        assert row is not None
        return row

    async def chain(self, chain_id: UUID) -> dict[str, Any]:
        cur = self.conn.cursor(row_factory=psycopg.rows.dict_row)
        await cur.execute("SELECT * FROM queuert.chain WHERE chain_id = %s", (chain_id,))
        row = await cur.fetchone()
        assert row is not None
        return row

    async def chain_status(self, chain_id: UUID) -> str:
        return (await self.chain(chain_id))["status"]

    async def start(self, type_name: Any, input: Any = None, **kw: Any) -> UUID:
        started = await aio.start_chain(self.conn, type_name, input, **kw)
        return started.chain_id

    async def set_type(self, name: str, **kw: Any) -> None:
        args = ", ".join(f"{k} => %({k})s" for k in kw)
        await self.conn.execute(
            f"SELECT queuert.set_job_type(type_name => %(name)s{', ' if args else ''}{args})",
            {"name": name, **kw},
        )


@pytest.fixture
async def db(dsn: str) -> AsyncIterator[DB]:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        yield DB(conn)
    finally:
        await conn.close()


def fast(dsn: str, **kw: Any) -> queuert.Worker:
    kw.setdefault("poll_interval", 0.5)
    kw.setdefault("reap_interval", 0.5)
    kw.setdefault("grace_period", 5.0)
    return queuert.Worker(dsn, **kw)


# ---------------------------------------------------------------- job types


@dataclass
class Count:
    n: int


class Total(pydantic.BaseModel):
    total: int


countdown = queuert.JobType("countdown", input=Count, continues_with=lambda: ("countdown", "even", "odd"))
even = queuert.JobType("even", input=Count, output=Total)
odd = queuert.JobType("odd", input=Count, output=Total)
child = queuert.JobType("child", input=int, output=int)
report = queuert.JobType("report", output=Total)


# ---------------------------------------------------------------- chains


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_chain_with_loop_and_branch_runs_end_to_end(dsn: str, db: DB, mode: str) -> None:
    worker = fast(dsn, mode=mode, concurrency=3)
    seen: list[tuple[str, int, int]] = []

    @worker.handler(countdown)
    async def count(job: JobContext[Count]) -> Any:
        assert isinstance(job.input, Count)
        seen.append(("countdown", job.input.n, job.chain_index))
        if job.input.n > 0:
            return job.continue_with(countdown, Count(n=job.input.n - 1))  # loop
        start = (await db.job(job.chain_id))["input"]["n"]
        return job.continue_with(even if start % 2 == 0 else odd, Count(n=start))  # branch

    @worker.handler(even)
    def finish_even(job: JobContext[Count]) -> Total:  # sync handler, in a thread
        assert threading.current_thread() is not threading.main_thread()
        seen.append(("even", job.input.n, job.chain_index))
        return Total(total=job.input.n * 10)

    @worker.handler(odd)
    async def finish_odd(job: JobContext[Count]) -> Total:
        seen.append(("odd", job.input.n, job.chain_index))
        return Total(total=-job.input.n)

    c3 = await db.start(countdown, Count(n=3))
    c2 = await db.start(countdown, Count(n=2))
    async with running(worker):
        await eventually(lambda: _both_completed(db, c3, c2))
    c3_row = await db.chain(c3)
    assert c3_row["output"] == {"total": -3}
    assert c3_row["job_count"] == 5  # 3,2,1,0 then odd
    assert (await db.chain(c2))["output"] == {"total": 20}
    jobs = await db.all(
        "SELECT chain_index, type_name, status, completed_by, continued_to IS NOT NULL "
        "FROM queuert.chain_jobs(%s)",
        (c3,),
    )
    assert [j[1] for j in jobs] == ["countdown"] * 4 + ["odd"]
    assert all(j[2] == "completed" and j[3] == worker.worker_id for j in jobs)
    assert [j[4] for j in jobs] == [True] * 4 + [False]
    assert ("odd", 3, 4) in seen and ("even", 2, 3) in seen


async def _both_completed(db: DB, a: UUID, b: UUID) -> bool:
    return await db.chain_status(a) == "completed" and await db.chain_status(b) == "completed"


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_fan_in_sees_blocker_outputs(dsn: str, db: DB, mode: str) -> None:
    worker = fast(dsn, mode=mode, concurrency=4)
    saw: list[Any] = []

    @worker.handler(child)
    async def square(job: JobContext[int]) -> int:
        return job.input * job.input

    @worker.handler(report)
    async def summarize(job: JobContext[None]) -> Total:
        saw.extend((b.type_name, b.output, b.output_as(child)) for b in job.blockers)
        return Total(total=sum(b.output_as(child) for b in job.blockers))

    kids = [await db.start(child, i) for i in (1, 2, 3)]
    parent = await db.start(report, None, blockers=kids)
    assert (await db.job(parent))["status"] == "blocked"
    async with running(worker):
        await eventually(lambda: _chain_done(db, parent))
    assert (await db.chain(parent))["output"] == {"total": 14}
    assert saw == [("child", 1, 1), ("child", 4, 4), ("child", 9, 9)]  # blocker order


async def _chain_done(db: DB, chain_id: UUID) -> bool:
    return await db.chain_status(chain_id) == "completed"


# ---------------------------------------------------------------- failed attempts


async def _status_is(db: DB, job_id: UUID, status: str) -> bool:
    return (await db.job(job_id))["status"] == status


async def test_unparsable_stored_input_fails_the_attempt_clearly(dsn: str, db: DB) -> None:
    await db.set_type("countdown", max_attempts=1)
    worker = fast(dsn)
    called = False

    @worker.handler(countdown)
    async def count(job: JobContext[Count]) -> None:
        nonlocal called
        called = True

    chain = await db.start("countdown", {"n": "not a number"})  # by name: not validated
    async with running(worker):
        await eventually(lambda: _status_is(db, chain, "failed"))
    err = (await db.job(chain))["last_attempt_error"]
    assert "no longer parses" in err and "countdown" in err
    assert not called


async def test_continuation_not_declared_fails_the_attempt(dsn: str, db: DB) -> None:
    terminal = queuert.JobType("terminal", input=int, continues_with=())
    await db.set_type("terminal", max_attempts=1)
    worker = fast(dsn)

    @worker.handler(terminal)
    async def term(job: JobContext[int]) -> Any:
        return queuert.continue_with(child, 5)  # terminal declares no continuations

    t = await db.start(terminal, 1)
    async with running(worker):
        await eventually(lambda: _status_is(db, t, "failed"))
    job = await db.job(t)
    assert "may not continue with 'child'" in job["last_attempt_error"]
    assert job["continued_to"] is None


# ---------------------------------------------------------------- atomic mode


async def test_atomic_handler_error_rolls_back_its_writes(dsn: str, db: DB) -> None:
    await db.conn.execute("CREATE TABLE side (job_id uuid, attempt int)")
    await db.set_type("write", backoff_initial=timedelta(milliseconds=10))
    worker = fast(dsn, mode="atomic", concurrency=2)

    @worker.handler("write")
    async def write(job: JobContext[Any]) -> Any:
        await job.conn.execute("INSERT INTO side VALUES (%s, %s)", (job.id, job.attempt))
        if job.attempt == 1:
            raise RuntimeError("after writing")
        return "ok"

    @worker.handler("write-sync")
    def write_sync(job: JobContext[Any]) -> Any:
        assert isinstance(job.conn, psycopg.Connection)
        job.conn.execute("INSERT INTO side VALUES (%s, %s)", (job.id, job.attempt))
        if job.attempt == 1:
            job.conn.execute("SELECT 1/0")  # leaves the transaction aborted
        return "ok"

    await db.set_type("write-sync", backoff_initial=timedelta(milliseconds=10))
    a = await db.start("write")
    b = await db.start("write-sync")
    async with running(worker):
        await eventually(lambda: _both_completed(db, a, b))
    rows = await db.all("SELECT job_id, attempt FROM side ORDER BY job_id")
    assert sorted(rows) == sorted([(a, 2), (b, 2)])
    ja, jb = await db.job(a), await db.job(b)
    assert ja["attempt"] == 2 and ja["last_attempt_error"].startswith("RuntimeError: after writing")
    assert jb["attempt"] == 2 and "division by zero" in jb["last_attempt_error"]
    assert ja["completed_by"] == worker.worker_id


async def test_atomic_handler_sees_its_claim_uncommitted(dsn: str, db: DB) -> None:
    """Claim, handler SQL and completion are one transaction: from outside,
    the job is not visibly running while the handler runs."""
    worker = fast(dsn, mode="atomic", concurrency=1)
    inside = asyncio.Event()
    release = asyncio.Event()
    seen: dict[str, Any] = {}

    @worker.handler("tx")
    async def tx(job: JobContext[Any]) -> Any:
        row = await (await job.conn.execute("SELECT status FROM queuert.job WHERE id = %s", (job.id,))).fetchone()
        seen["inside"] = row[0]
        inside.set()
        await release.wait()
        return 1

    chain = await db.start("tx")
    async with running(worker):
        await asyncio.wait_for(inside.wait(), 10)
        seen["outside"] = (await db.job(chain))["status"]
        release.set()
        await eventually(lambda: _chain_done(db, chain))
    assert seen == {"inside": "running", "outside": "pending"}


# ---------------------------------------------------------------- leases


async def test_lease_loss_cancels_async_handler_and_signals_sync_handler(dsn: str, db: DB) -> None:
    worker = fast(dsn, lease=timedelta(seconds=2), renew_interval=0.1, concurrency=4)
    cancelled = asyncio.Event()
    sync_saw: list[str | None] = []
    started: set[str] = set()

    @worker.handler("long-async")
    async def long_async(job: JobContext[Any]) -> Any:
        started.add("async")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "should not complete"

    sync_returned = threading.Event()

    @worker.handler("long-sync")
    def long_sync(job: JobContext[Any]) -> Any:
        started.add("sync")
        try:
            if job.lease_lost.wait(20):
                sync_saw.append(job.lease_lost.reason)
            return "discarded"
        finally:
            sync_returned.set()

    a = await db.start("long-async")
    s = await db.start("long-sync")
    async with running(worker):
        await eventually(lambda: started == {"async", "sync"})
        # another worker takes one job; the other is cancelled from outside
        await db.conn.execute(
            "UPDATE queuert.job SET leased_by = 'someone-else' WHERE id = %s", (a,)
        )
        await aio.cancel_chains(db.conn, [s])
        await asyncio.wait_for(cancelled.wait(), 30)
        await eventually(lambda: bool(sync_saw))
        # its late outcome is in the worker's hands before the worker stops
        assert await asyncio.to_thread(sync_returned.wait, 30)
    assert "taken" in (sync_saw[0] or "") or "finished" in (sync_saw[0] or "")
    ja, js = await db.job(a), await db.job(s)
    assert ja["status"] == "running" and ja["leased_by"] == "someone-else"  # untouched by us
    assert js["status"] == "cancelled" and js["output"] is None
    assert worker.stats.lost == 2 and worker.stats.completed == 0


async def test_leases_are_renewed_for_long_jobs(dsn: str, db: DB) -> None:
    # a 3 s lease renewed every 0.1 s: on a loaded 2-core machine an event
    # loop can be starved for a second, so a 1 s lease could expire for real
    # (that case is test_worker_faults.py's); here the lease must simply
    # outlive its first term
    worker = fast(dsn, lease=timedelta(seconds=3), renew_interval=0.1)
    other = fast(dsn, reap_interval=0.1)  # reaps expired leases eagerly
    first_lease: list[Any] = []
    gate = asyncio.Event()

    @worker.handler("slow")
    async def slow(job: JobContext[Any]) -> Any:
        first_lease.append(job.leased_until)
        await gate.wait()
        return job.attempt

    @other.handler("unrelated")
    async def unrelated(job: JobContext[Any]) -> None:
        return None

    chain = await db.start("slow")
    async with running(other), running(worker):
        await eventually(lambda: first_lease, timeout=30)
        # the server's clock passes the end of the lease given at claim ...
        await eventually(lambda: _db_clock_past(db, first_lease[0]), timeout=30)
        # ... yet nothing is left to reap: the lease was renewed
        assert await db.all("SELECT * FROM queuert.reap()") == []
        job = await db.job(chain)
        assert job["status"] == "running" and job["leased_until"] > first_lease[0]
        gate.set()
        await eventually(lambda: _chain_done(db, chain), timeout=30)
    assert (await db.job(chain))["output"] == 1  # never reaped, one attempt
    assert other.stats.reaped == 0


async def _db_clock_past(db: DB, moment: Any) -> bool:
    return bool((await db.one("SELECT clock_timestamp() > %s", (moment,)))[0])


# ---------------------------------------------------------------- wake-up


async def test_notification_wakes_an_idle_worker(dsn: str, db: DB) -> None:
    worker = fast(dsn, poll_interval=60)  # only LISTEN can wake it in time
    done = asyncio.Event()

    @worker.handler("ping")
    async def ping(job: JobContext[Any]) -> None:
        done.set()

    async with running(worker):
        await wait_idle(db)  # it claimed nothing and went to sleep
        await db.start("ping")
        await asyncio.wait_for(done.wait(), 20)  # far less than poll_interval


async def wait_idle(db: DB) -> None:
    """Until the worker's claim has come back (empty: there is no job) and
    its claiming connection sits idle: from here only a notification or
    the poll timer makes it claim again."""
    await eventually(
        lambda: db.one(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = 'queuert-main' AND state = 'idle' AND query LIKE '%%.claim(%%'"
        )
    )


async def test_in_process_notifier_wakes_worker_after_commit_only(dsn: str, conn: psycopg.Connection[Any]) -> None:
    notifier = queuert.InProcessNotifier()
    worker = fast(dsn, poll_interval=60, notifier=notifier)
    ran: list[Any] = []

    @worker.handler("hello")
    async def hello(job: JobContext[Any]) -> None:
        ran.append(job.input)

    async with running(worker):
        # asleep (its first claim found nothing, the poll a minute away): only
        # the notifier can start the committed job within the wait below
        await eventually(lambda: asleep(worker))
        with pytest.raises(RuntimeError):
            with queuert.transaction_hooks(notifier):
                with conn.transaction():
                    queuert.start_chain(conn, "hello", "rolled back")
                    raise RuntimeError("abort")
        conn.commit()
        async with queuert.transaction_hooks(notifier):
            with conn.transaction():
                queuert.start_chain(conn, "hello", "committed")
        conn.commit()
        await eventually(lambda: ran == ["committed"], timeout=30)  # the poll is a minute away


# ---------------------------------------------------------------- lost database


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_worker_recovers_after_its_connections_are_terminated(dsn: str, db: DB, mode: str) -> None:
    await db.conn.execute("CREATE TABLE side (job_id uuid, worker text)")
    worker = fast(dsn, mode=mode, concurrency=4, lease=timedelta(seconds=2), renew_interval=0.2)

    @worker.handler("work")
    async def work(job: JobContext[Any]) -> Any:
        # slow enough (300 jobs / 4 slots * 50 ms ~ 4 s) that the kills below
        # land while jobs are still in flight, even on a fast machine
        await asyncio.sleep(0.05)
        if job.conn is not None:
            await job.conn.execute("INSERT INTO side VALUES (%s, %s)", (job.id, job.worker_id))
        return job.input

    n = 300
    await aio.start_chains(db.conn, [queuert.ChainSpec("work", i) for i in range(n)])
    async with running(worker):
        await eventually(lambda: _count_completed(db, 30))
        for _ in range(2):
            # kill every connection of the worker (once it has reconnected)
            killed = await eventually(
                lambda: db.all(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name LIKE 'queuert-%%' "
                    "AND pid <> pg_backend_pid()"
                )
            )
            assert all(k == (True,) for k in killed)
            await asyncio.sleep(0.3)
        await eventually(lambda: _count_completed(db, n), timeout=30)
    rows = await db.all("SELECT status, count(*) FROM queuert.job GROUP BY status")
    assert rows == [("completed", n)]
    outputs = await db.all("SELECT output FROM queuert.job ORDER BY (output)::int")
    assert [o[0] for o in outputs] == list(range(n))
    if mode == "atomic":
        # exactly once: one side row per job, written by the completing worker
        dup = await db.one("SELECT count(*), count(DISTINCT job_id) FROM side")
        assert dup == (n, n)
    assert worker.stats.reconnects >= 1


async def _count_completed(db: DB, n: int) -> bool:
    row = await db.one("SELECT count(*) FROM queuert.job WHERE status = 'completed'")
    return row[0] >= n


# ---------------------------------------------------------------- shutdown


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_stop_releases_jobs_that_outlive_the_grace_period(dsn: str, db: DB, mode: str) -> None:
    worker = fast(dsn, mode=mode, grace_period=0.3, concurrency=2)
    started = asyncio.Event()

    @worker.handler("stuck")
    async def stuck(job: JobContext[Any]) -> Any:
        started.set()
        await asyncio.sleep(60)

    chain = await db.start("stuck")
    task = asyncio.create_task(worker.run_async())
    await asyncio.wait_for(started.wait(), 10)
    worker.stop()
    # the handler sleeps 60 s: a run that ends within 20 s (grace 0.3 s, with
    # room for a loaded machine) did not wait for it
    await asyncio.wait_for(task, 20)
    job = await db.job(chain)
    assert job["status"] == "pending" and job["leased_by"] is None
    due = await db.one("SELECT scheduled_at <= now() FROM queuert.job WHERE id = %s", (chain,))
    assert due == (True,)  # retry now, not after a backoff or a lease
    if mode == "staged":
        assert job["attempt"] == 1 and "released" in job["last_attempt_error"]
    else:  # the claim itself was rolled back
        assert job["attempt"] == 0


async def test_worker_ids_are_fresh_per_run(dsn: str, db: DB) -> None:
    worker = fast(dsn)

    @worker.handler("x")
    async def x(job: JobContext[Any]) -> None:
        return None

    async with running(worker):
        first = worker.worker_id
    async with running(worker):
        second = worker.worker_id
    assert first and second and first != second


# ---------------------------------------------------------------- prefetch


async def test_prefetch_claims_ahead_but_never_exceeds_concurrency(dsn: str, db: DB) -> None:
    worker = fast(dsn, concurrency=2, prefetch=6)
    active = 0
    peak = 0

    @worker.handler("pre")
    async def pre(job: JobContext[Any]) -> Any:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        return job.input

    await aio.start_chains(db.conn, [queuert.ChainSpec("pre", i) for i in range(40)])
    async with running(worker):
        await eventually(lambda: _count_completed(db, 40))
    assert peak == 2
    assert worker.stats.completed == 40 and worker.stats.claimed == 40
    # a claim took more than the free slots (the first one alone asks for
    # half of 2 + 6), never more than slots plus prefetch
    assert 2 < worker.stats.largest_claim <= 8


async def test_stop_releases_prefetched_jobs_that_never_started(dsn: str, db: DB) -> None:
    worker = fast(dsn, concurrency=1, prefetch=5, grace_period=0.3)
    started: list[int] = []

    @worker.handler("held")
    async def held(job: JobContext[Any]) -> Any:
        started.append(job.input)
        await asyncio.sleep(60)

    await aio.start_chains(db.conn, [queuert.ChainSpec("held", i) for i in range(6)])
    task = asyncio.create_task(worker.run_async())
    await eventually(lambda: worker.stats.claimed == 6)
    running_now = await db.one("SELECT count(*) FROM queuert.job WHERE status = 'running'")
    # one started: which one depends on which of the two claiming
    # connections answered first
    assert running_now == (6,) and len(started) == 1
    worker.stop()
    await asyncio.wait_for(task, 10)
    rows = await db.all(
        "SELECT (input #>> '{}')::int, status::text, leased_by, scheduled_at <= now(), attempt,"
        " last_attempt_error FROM queuert.job ORDER BY 1"
    )
    ran = started[0]
    # the started one was released with fail (its handler ran: an attempt) ...
    assert rows[ran][:5] == (ran, "pending", None, True, 1)
    assert rows[ran][5].startswith("released: worker shutting down")
    # ... the prefetched ones were given back untouched: no attempt, no error
    assert [r for r in rows if r[0] != ran] == [(i, "pending", None, True, 0, None) for i in range(6) if i != ran]
    assert started == [ran]  # the prefetched jobs never ran
    assert worker.stats.released == 6


async def test_prefetched_jobs_released_at_stop_keep_a_single_attempt(dsn: str, db: DB) -> None:
    """max_attempts = 1: a job claimed ahead and given back at shutdown must
    still run once, by the next worker."""
    await db.set_type("once", max_attempts=1)
    worker = fast(dsn, concurrency=1, prefetch=3, grace_period=5)
    gate = asyncio.Event()
    ran: list[int] = []

    @worker.handler("once")
    async def once(job: JobContext[Any]) -> Any:
        ran.append(job.input)
        await gate.wait()
        return job.input

    await aio.start_chains(db.conn, [queuert.ChainSpec("once", i) for i in range(4)])
    task = asyncio.create_task(worker.run_async())
    await eventually(lambda: worker.stats.claimed == 4)
    worker.stop()  # the running job finishes within the grace period ...
    # ... after the jobs held ahead went back (pending, attempt taken back)
    await eventually(lambda: _count_given_back(db, 3))
    gate.set()
    await asyncio.wait_for(task, 10)
    # one job ran (which one depends on which claim came back first: the
    # worker claims on more than one connection at once)
    assert len(ran) == 1
    rows = await db.all("SELECT (input #>> '{}')::int, status::text, attempt FROM queuert.job ORDER BY 1")
    assert rows == [(i, "completed", 1) if i == ran[0] else (i, "pending", 0) for i in range(4)]

    second = fast(dsn, concurrency=2)  # ... and the given-back ones run once each elsewhere

    @second.handler("once")
    async def again(job: JobContext[Any]) -> Any:
        ran.append(job.input)
        return job.input

    async with running(second):
        await eventually(lambda: second.stats.completed == 3)
    assert sorted(ran) == [0, 1, 2, 3]
    rows = await db.all("SELECT status::text, attempt FROM queuert.job")
    assert rows == [("completed", 1)] * 4


async def _count_given_back(db: DB, n: int) -> bool:
    row = await db.one("SELECT count(*) FROM queuert.job WHERE status = 'pending' AND attempt = 0")
    return row[0] == n


async def test_prefetch_zero_claims_only_free_slots(dsn: str, db: DB) -> None:
    worker = fast(dsn, concurrency=2, prefetch=0)

    @worker.handler("free")
    async def free(job: JobContext[Any]) -> None:
        return None

    await aio.start_chains(db.conn, [queuert.ChainSpec("free", i) for i in range(60)])
    async with running(worker):
        await eventually(lambda: _count_completed(db, 60))
    assert worker.stats.completed == 60
    assert 1 <= worker.stats.largest_claim <= 2


async def test_auto_prefetch_claims_far_ahead_for_fast_handlers(dsn: str, db: DB) -> None:
    """The default (prefetch "auto"): once handler durations are known to be
    tiny, a claim takes many more jobs than there are slots, so one commit
    acknowledges and claims big batches."""
    worker = fast(dsn, concurrency=2)
    assert worker.prefetch == "auto"
    active = 0
    peak = 0

    @worker.handler("quick")
    async def quick(job: JobContext[Any]) -> Any:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0)  # a real suspension: the job holds its slot
        active -= 1
        return job.input

    await aio.start_chains(db.conn, [queuert.ChainSpec("quick", i) for i in range(600)])
    async with running(worker):
        await eventually(lambda: _count_completed(db, 600))
    assert peak == 2  # never more handlers than slots
    assert worker.stats.completed == 600 and worker.stats.claimed == 600
    assert worker.stats.largest_claim > 20  # far beyond the 2 free slots
    # claims of 2 would need >= 300 claim calls; these average more than 4
    # jobs each. (Not flushes: acknowledgement-only flushes multiply when a
    # loaded machine slows each round trip; 103 were seen with both cores busy.)
    assert worker.stats.claim_calls < 150


async def test_auto_prefetch_holds_at_most_one_job_ahead_of_slow_handlers(dsn: str, db: DB) -> None:
    """0.3 s handlers at concurrency 2: 50 ms of work is a sixth of a job, so
    auto claims at most one job beyond the slots (other workers can run the
    rest)."""
    worker = fast(dsn, concurrency=2)
    started: list[int] = []

    @worker.handler("slowish")
    async def slowish(job: JobContext[Any]) -> None:
        started.append(job.input)
        await asyncio.sleep(0.3)

    await aio.start_chains(db.conn, [queuert.ChainSpec("slowish", i) for i in range(40)])
    held: list[int] = []
    async with running(worker):
        wid = worker.worker_id
        # watch while it runs 12 handlers (6 rounds, once durations are known),
        # however long a loaded machine takes for them
        deadline = time.monotonic() + 60
        while len(started) < 12:
            assert time.monotonic() < deadline, f"only {len(started)} handlers started in 60 s"
            row = await db.one(
                "SELECT count(*) FROM queuert.job WHERE status = 'running' AND leased_by = %s", (wid,)
            )
            held.append(row[0])
            await asyncio.sleep(0.01)
    assert max(held) <= 3  # 2 slots + at most 1 ahead
    assert worker.stats.largest_claim <= 3


async def test_auto_prefetch_keeps_leases_and_stop_releases_held_jobs(dsn: str, db: DB) -> None:
    """Jobs claimed ahead by auto are leased and renewed while they wait
    (never reaped, though their first lease ran out), and released at stop
    without having run."""
    # a 3 s lease renewed every 0.2 s (a 1 s lease can lapse for real while a
    # loaded machine starves the loop); prefetch_window 2 s: a stall is given
    # back only after 10 windows (20 s), far beyond this test's waits
    worker = fast(
        dsn, concurrency=1, grace_period=0.3, lease=timedelta(seconds=3), renew_interval=0.2,
        prefetch_window=2.0,
    )
    started: list[int] = []

    @worker.handler("burst")
    async def burst(job: JobContext[Any]) -> None:
        started.append(job.input)
        if len(started) > 20:  # fast at first (auto then claims far ahead), then stuck
            await asyncio.sleep(60)

    await aio.start_chains(db.conn, [queuert.ChainSpec("burst", i) for i in range(300)])
    task = asyncio.create_task(worker.run_async())
    await eventually(lambda: len(started) == 21, timeout=30)
    wid = worker.worker_id
    lease_end = await db.one(
        "SELECT max(leased_until) FROM queuert.job WHERE status = 'running' AND leased_by = %s", (wid,)
    )
    # every lease held now ends by lease_end unless renewed: let the server's clock pass it
    await eventually(lambda: _db_clock_past(db, lease_end[0]), timeout=30)
    assert await db.all("SELECT * FROM queuert.reap()") == []  # nothing had expired
    held = await db.one(
        "SELECT count(*), bool_and(leased_until > now()) FROM queuert.job "
        "WHERE status = 'running' AND leased_by = %s",
        (wid,),
    )
    assert held[0] > 20 and held[1]  # many held beyond the one slot, leases current
    assert worker.stats.lost == 0 and worker.stats.reaped == 0
    assert worker.stats.largest_claim > 20
    worker.stop()
    await asyncio.wait_for(task, 10)
    assert len(started) == len(set(started)) == 21  # the held jobs never ran
    rows = await db.all(
        "SELECT status::text, attempt, last_attempt_error LIKE 'released%%', count(*),"
        " bool_and(leased_by IS NULL) FROM queuert.job GROUP BY 1, 2, 3 ORDER BY 1, 2"
    )
    assert rows == [
        ("completed", 1, None, 20, True),
        ("pending", 0, None, 279, True),  # held or never claimed: untouched
        ("pending", 1, True, 1, True),  # the stuck one: its handler ran, failed with retry now
    ]
    assert worker.stats.released == held[0]


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_awkward_text_survives_acknowledgements(dsn: str, db: DB, mode: str) -> None:
    """Outputs, continuation inputs and error texts with quotes, backslashes,
    braces and non-ASCII text reach the database unchanged."""
    nasty = "it's \\ a {b,c} \"quoted\" ünïcode ☃ $$ %s ; --"
    await db.set_type("nasty-1", backoff_initial=timedelta(0))
    worker = fast(dsn, mode=mode)
    errors: list[str | None] = []

    @worker.handler("nasty-1")
    async def first(job: JobContext[Any]) -> Any:
        errors.append(job.last_attempt_error)
        if job.attempt == 1:
            raise ValueError(nasty)
        return job.continue_with("nasty-2", {"s": nasty, "list": [nasty]})

    @worker.handler("nasty-2")
    async def second(job: JobContext[Any]) -> Any:
        assert job.input == {"s": nasty, "list": [nasty]}
        return {"out": nasty}

    chain = await db.start("nasty-1")
    async with running(worker):
        await eventually(lambda: _chain_done(db, chain))
    assert (await db.chain(chain))["output"] == {"out": nasty}
    assert errors[1] is not None and errors[1].startswith(f"ValueError: {nasty}")


async def test_a_deadlocked_flush_is_sent_again_without_reconnecting(dsn: str, db: DB) -> None:
    """40P01 during the batched acknowledgement rolls the flush back; the
    worker sends the same batch again on the same connection. The deadlock
    is proven by the server's own counter (pg_stat_database.deadlocks of
    this test's database), not assumed from the lock order."""
    root = await db.start("dl-root")
    await db.conn.execute("SELECT id FROM queuert.claim('setup', ARRAY['dl-root'])")
    nxt = await db.one("SELECT id FROM queuert.continue_with(%s, 'setup', 'dl-job')", (root,))
    job_id = nxt[0]
    worker = fast(dsn)
    release = asyncio.Event()
    claimed = asyncio.Event()

    @worker.handler("dl-job")
    async def dl_job(job: JobContext[Any]) -> Any:
        claimed.set()
        await release.wait()
        return "done"

    before = await deadlocks(db)
    other = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        async with running(worker):
            await asyncio.wait_for(claimed.wait(), 10)
            await other.execute("SET deadlock_timeout = '20s'")  # the worker's backend detects it
            await other.execute("BEGIN")
            await other.execute("SELECT 1 FROM queuert.job WHERE id = %s FOR UPDATE", (job_id,))
            release.set()  # the flush locks the root, then waits for the job row
            await wait_for_lock_wait(db, "queuert-main")
            # now take the root: a lock cycle with the flush
            lock_root = asyncio.create_task(
                other.execute("SELECT 1 FROM queuert.job WHERE id = %s FOR UPDATE", (root,))
            )
            await asyncio.wait_for(lock_root, 30)  # granted once the flush is the victim
            await other.execute("ROLLBACK")
            await eventually(lambda: _status_is(db, job_id, "completed"))
    finally:
        await other.close()
    # the worker's backend reports its deadlock when it goes idle
    await eventually(lambda: _more_deadlocks_than(db, before))
    assert (await db.job(job_id))["completed_by"] == worker.worker_id
    assert worker.stats.reconnects == 0 and worker.stats.completed == 1
    assert worker.stats.conflicts_retried == 1  # sent again once


async def deadlocks(db: DB) -> int:
    """Deadlocks PostgreSQL detected in this test's database."""
    await db.conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await db.one("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
    return int(row[0])


async def _more_deadlocks_than(db: DB, before: int) -> bool:
    return await deadlocks(db) > before


async def wait_for_lock_wait(db: DB, application_name: str, timeout: float = 30.0) -> int:
    """Pid of a backend of ``application_name`` (queuert-main, queuert-atomic)
    once it waits for a lock: the moment a test's lock cycle can close."""
    row = await eventually(
        lambda: db.one(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name = %s AND wait_event_type = 'Lock'",
            (application_name,),
        ),
        timeout=timeout,
    )
    return int(row[0])


async def test_jobs_of_a_lost_claim_are_given_back_without_spending_an_attempt(dsn: str, db: DB) -> None:
    """A claim whose commit happened but whose answer was lost leaves jobs
    running under this worker that it does not know. Reconciling gives them
    back with release_jobs (their handlers never ran), then they run once."""
    await db.set_type("orphan", max_attempts=1)
    worker = fast(dsn, worker_id="w-reconcile", concurrency=2, prefetch=0)
    done: list[int] = []

    @worker.handler("orphan")
    async def orphan(job: JobContext[Any]) -> Any:
        done.append(job.attempt)
        return None

    await db.start("orphan", 1)
    # the lost claim: committed under this worker's id, answer never seen
    await db.conn.execute("SELECT * FROM queuert.claim('w-reconcile', ARRAY['orphan'])")
    assert await db.one("SELECT status::text, attempt FROM queuert.job") == ("running", 1)
    async with running(worker):
        run = worker._run
        assert run is not None
        assert run.staged is not None
        run.staged.need_reconcile = True  # what a connection lost during a claim sets
        await db.start("orphan", 2)  # work, so that a flush runs (and reconciles first)
        await eventually(lambda: worker.stats.completed == 2)
    assert done == [1, 1]  # each ran once, as attempt 1: the lost claim's attempt was taken back
    rows = await db.all("SELECT status::text, attempt, last_attempt_error FROM queuert.job")
    assert rows == [("completed", 1, None)] * 2


async def test_auto_claim_ahead_gives_jobs_back_when_handlers_turn_slow(dsn: str, db: DB) -> None:
    """Fast handlers make auto claim far ahead; when every slot then stays
    busy much longer than usual, the held jobs go back (no attempt spent)
    for other workers instead of waiting behind the slow ones."""
    worker = fast(dsn, concurrency=1)  # prefetch="auto"
    slow_started = asyncio.Event()
    gate = asyncio.Event()

    @worker.handler("mixed")
    async def mixed(job: JobContext[Any]) -> Any:
        if job.input == "slow":
            slow_started.set()
            await gate.wait()
        return None

    # fast jobs teach the worker that handlers are quick ...
    await aio.start_chains(db.conn, [queuert.ChainSpec("mixed", i) for i in range(50)])
    async with running(worker):
        await eventually(lambda: worker.stats.completed == 50)
        # ... then a slow one, followed by jobs it claims ahead
        await aio.start_chains(
            db.conn, [queuert.ChainSpec("mixed", "slow")] + [queuert.ChainSpec("mixed", i) for i in range(40)]
        )
        await asyncio.wait_for(slow_started.wait(), 10)
        # the held jobs come back (the worker aims at about 10 x
        # prefetch_window, 5 s, on its own clock; 30 s here because a loaded
        # machine stretches that, and nothing but a give-back can end the
        # wait: the one slot is stuck on the slow job until the gate opens);
        # (not counted before that: on a slow machine the give-back can come
        # before a count of the running jobs does)
        async def held_back() -> bool:
            row = await db.one("SELECT count(*) FROM queuert.job WHERE status = 'running' AND input <> '\"slow\"'")
            return row[0] <= 1 and worker.stats.released > 0  # auto may take one ahead again

        await eventually(held_back, timeout=30)
        released = worker.stats.released  # it had claimed ahead behind the slow job
        given_back = await db.one(
            "SELECT count(*) FROM queuert.job WHERE status = 'pending' AND attempt = 0"
            " AND last_attempt_error IS NULL"
        )
        assert given_back[0] >= released - 1  # pending again, untouched (no attempt, no error)
        gate.set()
        await eventually(lambda: worker.stats.completed == 91)
    rows = await db.all("SELECT status::text, attempt, count(*) FROM queuert.job GROUP BY 1, 2")
    assert rows == [("completed", 1, 91)]


async def test_a_slot_thread_closes_its_connection_after_the_call_in_flight(dsn: str) -> None:
    """Stopping an atomic slot whose thread is still inside a call (its task
    was cancelled) must not close the connection under that call: the thread
    finishes the call, then closes the connection itself."""
    from queuert._worker.runners import SlotThread

    loop = asyncio.get_running_loop()
    slot = SlotThread(loop, 0)
    conn = await slot.call(lambda: psycopg.connect(dsn, autocommit=True))
    holder = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        await holder.execute("SELECT pg_advisory_lock(4242)")
        pid = conn.info.backend_pid
        in_flight = slot.call(lambda: conn.execute("SELECT pg_advisory_lock(4242), 42").fetchone())

        async def waiting() -> bool:
            cur = await holder.execute(
                "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)
            )
            return bool((await cur.fetchone() or (False,))[0])

        await eventually(waiting)  # the statement is on the wire, waiting for the lock
        slot.stop(close=conn)
        assert not conn.closed  # not from this thread
        assert not in_flight.done()
        await holder.execute("SELECT pg_advisory_unlock(4242)")
    finally:
        await holder.close()
    assert (await asyncio.wait_for(in_flight, 10))[1] == 42
    slot.thread.join(5)
    assert not slot.thread.is_alive()
    assert conn.closed
