"""The worker's behaviour suite over both backends (issue 14): each test runs
``queuert.Worker`` on PostgreSQL and on a SQLite file through the ``db``
fixture (backends.py), as the client suite does, and states one behaviour
for both: chains with continuations and branches, fan-in, retries with
backoff, max_attempts, RetryAt, refused continuations, atomic transactions,
lease renewal and loss, reaping, wake-ups, scheduling, prefetch and stop.

The test's own writes run in a thread (``Side``): on SQLite an atomic
worker's transaction holds the file's write lock while its handler runs on
this event loop, so a write made on the loop would wait for it in vain.
PostgreSQL-only behaviour (LISTEN, terminated backends, deadlocks) stays in
test_worker.py; SQLite-only behaviour (the write lock) is marked here.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from backends import Db
from notify_brokers import NATS_URL, REDIS_URL, unique_prefix

import queuert
import queuert._sqlite as qs
from queuert.job import JobContext
from queuert.notify import notifier_from_url
from queuert.notify.inprocess import InProcessNotifier
from worker_helpers import asleep, eventually, running

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------- helpers


def worker_dsn(db: Db) -> str:
    return db.target if db.name == "postgres" else f"sqlite:///{db.target}"


def fast(db: Db, **kw: Any) -> queuert.Worker:
    kw.setdefault("poll_interval", 0.2)
    kw.setdefault("reap_interval", 0.2)
    kw.setdefault("grace_period", 5.0)
    return queuert.Worker(worker_dsn(db), **kw)


class Side:
    """The test's own reads and writes, each on a fresh autocommit
    connection in a thread."""

    def __init__(self, db: Db) -> None:
        self.db = db

    async def _do(self, fn: Callable[[Any], Any]) -> Any:
        def run() -> Any:
            conn = self.db.connect(autocommit=True)
            try:
                return fn(conn)
            finally:
                conn.close()

        return await asyncio.to_thread(run)

    async def start(self, type_name: Any, input: Any = None, **kw: Any) -> UUID:
        started = await self._do(lambda c: queuert.start_chain(c, type_name, input, **kw))
        return started.chain_id  # type: ignore[no-any-return]

    async def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return await self._do(lambda c: self.db.execute(c, sql, params))  # type: ignore[no-any-return]

    async def job(self, job_id: UUID) -> dict[str, Any]:
        return await asyncio.to_thread(self.db.job, None, job_id)

    async def chain(self, chain_id: UUID) -> queuert.Chain:
        return await self._do(lambda c: queuert.get_chain(c, chain_id))  # type: ignore[no-any-return]

    async def done(self, *chain_ids: UUID) -> bool:
        return all([(await self.chain(c)).status == "completed" for c in chain_ids])

    async def status(self, job_id: UUID) -> str:
        return str((await self.job(job_id))["status"])

    async def status_is(self, job_id: UUID, status: str) -> bool:
        return await self.status(job_id) == status

    async def set_type(self, name: str, **policy: Any) -> None:
        def run(conn: Any) -> None:
            if self.db.name == "sqlite":
                qs.set_job_type(conn, name, **policy)
            else:
                args = "".join(f", {k} => %({k})s" for k in policy)
                conn.execute(f"SELECT queuert.set_job_type(type_name => %(name)s{args})", {"name": name, **policy})

        await self._do(run)

    async def cancel(self, chain_id: UUID) -> None:
        await self._do(lambda c: queuert.cancel_chains(c, [chain_id]))


def app_execute(db: Db, job: JobContext[Any], sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """A sync handler's own SQL on job.conn (atomic mode), either backend."""
    return db.execute(job.conn, sql, params)


@pytest.fixture
def side(db: Db) -> Side:
    return Side(db)


# ---------------------------------------------------------------- chains


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_a_chain_loops_branches_and_completes(db: Db, side: Side, mode: str) -> None:
    worker = fast(db, mode=mode, concurrency=2)

    @worker.handler("countdown")
    async def count(job: JobContext[Any]) -> Any:
        n = job.input["n"]
        if n > 0:
            return job.continue_with("countdown", {"n": n - 1, "start": job.input["start"]})
        return job.continue_with("even" if job.input["start"] % 2 == 0 else "odd", job.input["start"])

    @worker.handler("even")
    def finish_even(job: JobContext[Any]) -> Any:  # sync: a thread
        assert threading.current_thread() is not threading.main_thread()
        return {"total": job.input * 10}

    @worker.handler("odd")
    async def finish_odd(job: JobContext[Any]) -> Any:
        return {"total": -job.input}

    c3 = await side.start("countdown", {"n": 3, "start": 3})
    c2 = await side.start("countdown", {"n": 2, "start": 2})
    async with running(worker):
        await eventually(lambda: side.done(c3, c2))
    chain3, chain2 = await side.chain(c3), await side.chain(c2)
    assert chain3.output == {"total": -3} and chain3.job_count == 5
    assert chain2.output == {"total": 20} and chain2.job_count == 4
    assert [j.type_name for j in chain3.jobs] == ["countdown"] * 4 + ["odd"]
    assert {j.status for j in chain3.jobs} == {"completed"}
    assert {(await side.job(j.id))["completed_by"] for j in chain3.jobs} == {worker.worker_id}


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_fan_in_runs_after_its_blockers_and_sees_their_outputs(db: Db, side: Side, mode: str) -> None:
    worker = fast(db, mode=mode, concurrency=3)
    saw: list[Any] = []

    @worker.handler("child")
    async def square(job: JobContext[Any]) -> Any:
        return job.input * job.input

    @worker.handler("report")
    async def summarize(job: JobContext[Any]) -> Any:
        saw.extend((b.type_name, b.output) for b in job.blockers)
        return sum(b.output for b in job.blockers)

    kids = [await side.start("child", i) for i in (1, 2, 3)]
    parent = await side.start("report", None, blockers=kids)
    assert await side.status(parent) == "blocked"
    async with running(worker):
        await eventually(lambda: side.done(parent))
    assert (await side.chain(parent)).output == 14
    assert saw == [("child", 1), ("child", 4), ("child", 9)], "in blocker order"


# ---------------------------------------------------------------- retries


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_retries_with_the_types_backoff_then_success(db: Db, side: Side, mode: str) -> None:
    await side.set_type("flaky", backoff_initial=timedelta(milliseconds=20), backoff_multiplier=1.0)
    worker = fast(db, mode=mode)
    errors_seen: list[str | None] = []

    @worker.handler("flaky")
    async def flaky(job: JobContext[Any]) -> Any:
        errors_seen.append(job.last_attempt_error)
        if job.attempt < 3:
            raise RuntimeError(f"boom {job.attempt}")
        return {"ok": job.attempt}

    chain = await side.start("flaky", {"x": 1})
    async with running(worker):
        await eventually(lambda: side.done(chain))
    job = await side.job(chain)
    assert job["attempt"] == 3 and job["output"] == {"ok": 3}
    assert errors_seen[0] is None and (errors_seen[1] or "").startswith("RuntimeError: boom 1")
    assert "Traceback" in (errors_seen[2] or "") and "boom 2" in (errors_seen[2] or "")
    assert worker.stats.failed == 2 and worker.stats.completed == 1


async def test_max_attempts_ends_in_failed(db: Db, side: Side) -> None:
    await side.set_type("doomed", max_attempts=2, backoff_initial=timedelta(milliseconds=10))
    worker = fast(db)
    calls = 0

    @worker.handler("doomed")
    def doomed(job: JobContext[Any]) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("never works")

    @worker.handler("marker")
    def marker(job: JobContext[Any]) -> None:
        return None

    chain = await side.start("doomed")
    async with running(worker):
        await eventually(lambda: side.status_is(chain, "failed"))
        # a job started after the failure runs: the worker went on, and
        # would have claimed the doomed job again had it been pending
        later = await side.start("marker")
        await eventually(lambda: side.done(later))
    job = await side.job(chain)
    assert job["attempt"] == 2 and calls == 2
    assert job["last_attempt_error"].startswith("ValueError: never works")


async def test_a_handler_asks_for_its_retry_time(db: Db, side: Side) -> None:
    worker = fast(db)
    attempts: list[datetime] = []

    @worker.handler("later")
    async def later(job: JobContext[Any]) -> Any:
        attempts.append(datetime.now(timezone.utc))
        if job.attempt == 1:
            return queuert.RetryAt(timedelta(milliseconds=400), "not yet")
        if job.attempt == 2:
            raise queuert.RetryAt(timedelta(0), "again now")
        return "done"

    chain = await side.start("later")
    async with running(worker):
        await eventually(lambda: side.done(chain))
    job = await side.job(chain)
    assert job["attempt"] == 3 and job["output"] == "done" and job["last_attempt_error"] == "again now"
    assert attempts[1] - attempts[0] >= timedelta(milliseconds=400), "not before the time it asked for"


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_a_refused_continuation_fails_only_its_job(db: Db, side: Side, mode: str) -> None:
    """An engine error on one acknowledgement (QU002) must not sink the
    other acknowledgements of the same batch (staged) or the next claim
    sent in the same round trip (atomic)."""
    await side.set_type("bad-cont", max_attempts=1)
    worker = fast(db, concurrency=10 if mode == "staged" else 1, mode=mode)

    @worker.handler("bad-cont")
    async def bad(job: JobContext[Any]) -> Any:
        return job.continue_with("child", 1, blockers=[UUID(int=7)])

    @worker.handler("fine")
    async def fine(job: JobContext[Any]) -> Any:
        return job.input

    bad_id = await side.start("bad-cont")
    fine_ids = [await side.start("fine", i) for i in range(10)]
    async with running(worker):
        await eventually(lambda: side.status_is(bad_id, "failed"))
        await eventually(lambda: side.done(*fine_ids))
    bad_job = await side.job(bad_id)
    assert "not found" in bad_job["last_attempt_error"] and bad_job["continued_to"] is None
    assert worker.stats.failed == 1 and worker.stats.completed == 10


# ---------------------------------------------------------------- atomic mode


async def test_an_atomic_failure_rolls_back_the_handlers_writes(db: Db, side: Side) -> None:
    await side.execute("CREATE TABLE side_effect (job_id TEXT, attempt INTEGER)")
    await side.set_type("write", backoff_initial=timedelta(milliseconds=10))
    worker = fast(db, mode="atomic")

    @worker.handler("write")
    def write(job: JobContext[Any]) -> Any:
        app_execute(db, job, "INSERT INTO side_effect VALUES (%s, %s)", (str(job.id), job.attempt))
        if job.attempt == 1:
            raise RuntimeError("after writing")
        return "ok"

    chain = await side.start("write")
    async with running(worker):
        await eventually(lambda: side.done(chain))
    assert await side.execute("SELECT job_id, attempt FROM side_effect") == [(str(chain), 2)]
    job = await side.job(chain)
    assert job["attempt"] == 2 and job["last_attempt_error"].startswith("RuntimeError: after writing")


async def test_an_atomic_handler_runs_inside_its_claims_transaction(db: Db, side: Side) -> None:
    worker = fast(db, mode="atomic")
    seen: dict[str, Any] = {}
    inside = threading.Event()
    release = threading.Event()

    @worker.handler("tx")
    def tx(job: JobContext[Any]) -> Any:
        table = "queuert_job" if db.name == "sqlite" else "queuert.job"
        seen["inside"] = app_execute(db, job, f"SELECT status FROM {table} WHERE id = %s", (str(job.id),))[0][0]
        inside.set()
        release.wait(20)
        return 1

    chain = await side.start("tx")
    async with running(worker):
        assert await asyncio.to_thread(inside.wait, 20)
        seen["outside"] = await side.status(chain)
        release.set()
        await eventually(lambda: side.done(chain))
    assert seen == {"inside": "running", "outside": "pending"}


# ---------------------------------------------------------------- leases


async def test_lease_loss_stops_the_handler_and_discards_its_outcome(db: Db, side: Side) -> None:
    worker = fast(db, lease=timedelta(seconds=5), renew_interval=0.1, concurrency=2)
    cancelled = asyncio.Event()
    sync_saw: list[str | None] = []
    started: set[str] = set()

    @worker.handler("long-async")
    async def long_async(job: JobContext[Any]) -> Any:
        started.add("async")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "should not complete"

    @worker.handler("long-sync")
    def long_sync(job: JobContext[Any]) -> Any:
        started.add("sync")
        if job.lease_lost.wait(30):
            sync_saw.append(job.lease_lost.reason)
        return "discarded"

    a = await side.start("long-async")
    s = await side.start("long-sync")
    async with running(worker):
        await eventually(lambda: started == {"async", "sync"})
        await side.cancel(a)
        await side.cancel(s)
        await asyncio.wait_for(cancelled.wait(), 10)
        await eventually(lambda: bool(sync_saw))
        await eventually(lambda: worker.stats.lost == 2)
    assert "finished" in (sync_saw[0] or "")
    assert [(await side.job(j))["status"] for j in (a, s)] == ["cancelled", "cancelled"]
    assert worker.stats.completed == 0


async def test_leases_are_renewed_while_a_job_runs_long(db: Db, side: Side) -> None:
    # a 3 s lease renewed every 0.1 s: a loaded 2-core machine can starve
    # the event loop for a second, so a 1 s lease could expire for real and
    # be reaped (that case is test_worker_faults.py's); here the lease must
    # outlive its first term because it was renewed
    worker = fast(db, lease=timedelta(seconds=3), renew_interval=0.1)
    other = fast(db, reap_interval=0.1)  # reaps expired leases eagerly
    finish = asyncio.Event()

    @worker.handler("slow")
    async def slow(job: JobContext[Any]) -> Any:
        await finish.wait()
        return job.attempt

    @other.handler("unrelated")
    async def unrelated(job: JobContext[Any]) -> None:
        return None

    chain = await side.start("slow")
    async with running(other), running(worker):
        await eventually(lambda: side.status_is(chain, "running"))
        first = (await side.job(chain))["leased_until"]
        # the first term and a second more pass while the other worker reaps
        # (a lease renewed at claim + x seconds ends x seconds after the first)
        await eventually(lambda: _lease_moved_past(side, chain, first + timedelta(seconds=4)))
        finish.set()
        await eventually(lambda: side.done(chain))
    assert (await side.job(chain))["output"] == 1, "never reaped: one attempt"
    assert other.stats.reaped == 0


async def _lease_moved_past(side: Side, job_id: UUID, when: datetime) -> bool:
    until = (await side.job(job_id))["leased_until"]
    return until is not None and until > when


async def test_an_expired_lease_is_reaped_and_the_job_runs_again(db: Db, side: Side) -> None:
    chain = await side.start("orphan", {"v": 1})

    def claim_and_die(conn: Any) -> None:  # a worker that crashed holding it
        if db.name == "sqlite":
            qs.claim(conn, "dead-worker", ["orphan"], lease=timedelta(milliseconds=200))
        else:
            conn.execute("SELECT * FROM queuert.claim('dead-worker', ARRAY['orphan'], lease => '200 ms')").fetchall()

    await side._do(claim_and_die)
    worker = fast(db, reap_interval=0.1)

    @worker.handler("orphan")
    async def orphan(job: JobContext[Any]) -> Any:
        return {"attempt": job.attempt, "error": job.last_attempt_error}

    async with running(worker):
        await eventually(lambda: side.done(chain))
    output = (await side.chain(chain)).output
    assert output["attempt"] == 2 and "dead-worker" in output["error"]
    assert worker.stats.reaped >= 1


# ---------------------------------------------------------------- wake-ups


async def test_an_idle_worker_runs_a_scheduled_job_at_its_time(db: Db, side: Side) -> None:
    """Nothing is due: the worker sleeps until the next due time (not until
    its poll interval, 30 s here) and claims the job then, not before."""
    due = datetime.now(timezone.utc) + timedelta(milliseconds=800)
    chain = await side.start("timed", None, schedule_at=due)
    worker = fast(db, poll_interval=30)
    ran_at: list[datetime] = []

    @worker.handler("timed")
    async def timed(job: JobContext[Any]) -> Any:
        ran_at.append(datetime.now(timezone.utc))
        return None

    async with running(worker):
        await eventually(lambda: side.done(chain), timeout=25)
    assert ran_at[0] >= due, "not before its time"


async def test_the_in_process_notifier_wakes_the_worker_after_commit_only(db: Db, side: Side) -> None:
    notifier = InProcessNotifier()
    worker = fast(db, notifier=notifier, poll_interval=30)
    ran = asyncio.Event()

    @worker.handler("ping")
    async def ping(job: JobContext[Any]) -> None:
        ran.set()

    def start_in_hooks(commit: bool) -> None:
        conn = db.connect()
        try:
            with queuert.transaction_hooks(notifier):
                queuert.start_chain(conn, "ping", None)
                conn.commit() if commit else conn.rollback()
        finally:
            conn.close()

    async with running(worker):
        await eventually(lambda: asleep(worker, until=10))  # past its first claim: idle until the poll
        await asyncio.to_thread(start_in_hooks, False)
        await asyncio.to_thread(start_in_hooks, True)
        await asyncio.wait_for(ran.wait(), 10)
    assert worker.stats.completed == 1 and db.count_jobs() == 1, "the rolled-back job never existed"


@pytest.mark.parametrize("broker", ["redis", "nats"])
async def test_a_broker_carries_another_connections_job_to_an_idle_worker(db: Db, side: Side, broker: str) -> None:
    """The application (another connection, in another thread: another
    process as far as the worker can tell) starts a chain inside
    transaction_hooks with its own notifier on the broker; the idle worker,
    polling only every 30 s, runs it at once. On SQLite this is how workers
    of other processes learn of new jobs without polling."""
    prefix = unique_prefix()
    url = REDIS_URL if broker == "redis" else NATS_URL
    worker_notifier = notifier_from_url(url, prefix=prefix)
    app_notifier = notifier_from_url(url, prefix=prefix)
    worker = fast(db, notifier=worker_notifier, poll_interval=30)
    ran = asyncio.Event()

    @worker.handler("ping")
    async def ping(job: JobContext[Any]) -> None:
        ran.set()

    def start_in_hooks() -> None:
        conn = db.connect()
        try:
            with queuert.transaction_hooks(app_notifier):
                queuert.start_chain(conn, "ping", None)
                conn.commit()
        finally:
            conn.close()

    try:
        async with running(worker):
            await eventually(lambda: asleep(worker, until=10))  # past its first, empty claim: asleep until its poll
            await asyncio.to_thread(start_in_hooks)
            await asyncio.wait_for(ran.wait(), 10)
    finally:
        await app_notifier.close()
        await worker_notifier.close()
    assert worker.stats.completed == 1


# ---------------------------------------------------------------- stop


async def test_stop_lets_in_flight_jobs_finish(db: Db, side: Side) -> None:
    worker = fast(db, concurrency=3, grace_period=10)
    started = asyncio.Event()

    @worker.handler("work")
    async def work(job: JobContext[Any]) -> Any:
        started.set()
        await asyncio.sleep(0.3)
        return job.input

    chains = [await side.start("work", i) for i in range(3)]
    task = asyncio.create_task(worker.run_async())
    await asyncio.wait_for(started.wait(), 10)
    worker.stop()
    await asyncio.wait_for(task, 20)
    assert await side.done(*chains)
    assert [(await side.chain(c)).output for c in chains] == [0, 1, 2], "their outputs kept"


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_stop_gives_back_jobs_that_outlive_the_grace_period(db: Db, side: Side, mode: str) -> None:
    worker = fast(db, mode=mode, grace_period=0.2, lease=timedelta(seconds=60))
    started = asyncio.Event()

    @worker.handler("stuck")
    async def stuck(job: JobContext[Any]) -> Any:
        started.set()
        await asyncio.sleep(60)

    chain = await side.start("stuck")
    task = asyncio.create_task(worker.run_async())
    await asyncio.wait_for(started.wait(), 10)
    worker.stop()
    await asyncio.wait_for(task, 20)
    job = await side.job(chain)
    assert job["status"] == "pending" and job["leased_by"] is None, "due again at once, not after its lease"
    if mode == "atomic":
        assert job["attempt"] == 0, "the whole attempt rolled back, its claim too"
    else:
        assert job["attempt"] == 1 and "shutting down" in job["last_attempt_error"]


async def test_prefetch_claims_ahead_but_never_runs_more_than_concurrency(db: Db, side: Side) -> None:
    worker = fast(db, concurrency=2, prefetch=3)
    running_now = 0
    most = 0

    @worker.handler("p")
    async def p(job: JobContext[Any]) -> Any:
        nonlocal running_now, most
        running_now += 1
        most = max(most, running_now)
        await asyncio.sleep(0.02)
        running_now -= 1
        return None

    chains = [await side.start("p", i) for i in range(20)]
    async with running(worker):
        await eventually(lambda: side.done(*chains))
    assert most == 2 and worker.stats.largest_claim > 2, "claimed ahead, ran two at a time"


async def test_stop_releases_claimed_ahead_jobs_without_spending_an_attempt(db: Db, side: Side) -> None:
    worker = fast(db, concurrency=1, prefetch=5, grace_period=0.2)
    started = asyncio.Event()

    @worker.handler("hold")
    async def hold(job: JobContext[Any]) -> Any:
        started.set()
        await asyncio.sleep(60)

    chains = [await side.start("hold", i) for i in range(4)]
    task = asyncio.create_task(worker.run_async())
    await asyncio.wait_for(started.wait(), 10)
    await eventually(lambda: worker.stats.claimed == 4)
    worker.stop()
    await asyncio.wait_for(task, 20)
    jobs = [await side.job(c) for c in chains]
    assert {j["status"] for j in jobs} == {"pending"}
    assert sorted(j["attempt"] for j in jobs) == [0, 0, 0, 1], "only the started one spent an attempt"


async def test_awkward_text_survives_the_acknowledgements(db: Db, side: Side) -> None:
    await side.set_type("echo-fail", max_attempts=1)
    worker = fast(db)
    text = "quote ' double \" backslash \\ nul-free ünïcödé 🎉 %s ? :name $1 {}"

    @worker.handler("echo")
    async def echo(job: JobContext[Any]) -> Any:
        return {"text": job.input["text"]}

    @worker.handler("echo-fail")
    async def echo_fail(job: JobContext[Any]) -> Any:
        raise RuntimeError(job.input["text"])

    ok = await side.start("echo", {"text": text})
    bad = await side.start("echo-fail", {"text": text})
    async with running(worker):
        await eventually(lambda: side.done(ok))
        await eventually(lambda: side.status_is(bad, "failed"))
    assert (await side.chain(ok)).output == {"text": text}
    assert text in (await side.job(bad))["last_attempt_error"]


# ---------------------------------------------------------------- SQLite's write lock


@pytest.mark.backend("sqlite", reason="the file's single write lock, held by another connection")
async def test_a_writer_holding_the_file_delays_the_worker_and_nothing_escapes(
    db: Db, side: Side, caplog: pytest.LogCaptureFixture
) -> None:
    """Another connection holds SQLite's write lock for longer than the
    worker's busy timeout: the worker says so in a warning (no bare
    "database is locked"), keeps its loop running, and processes the job
    once the lock is free."""
    chain = await side.start("after-lock", None)
    holder = sqlite3.connect(db.target, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    worker = queuert.Worker(f"sqlite:///{db.target}?busy_timeout=0.2", poll_interval=0.1, reap_interval=0.1)
    ticks = 0

    @worker.handler("after-lock")
    async def after_lock(job: JobContext[Any]) -> Any:
        return "ran"

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    tick = asyncio.create_task(ticker())
    try:
        async with running(worker):
            await eventually(lambda: "locked by another connection" in caplog.text)
            seen = ticks
            await eventually(lambda: ticks > seen + 20)  # the event loop is not blocked
            assert await side.status(chain) == "pending"
            holder.execute("ROLLBACK")
            await eventually(lambda: side.done(chain))
    finally:
        tick.cancel()
        if holder.in_transaction:
            holder.execute("ROLLBACK")
        holder.close()
    assert "OperationalError" not in caplog.text and "Traceback" not in caplog.text, "no bare sqlite3 error"
    assert (await side.chain(chain)).output == "ran"


@pytest.mark.backend("sqlite", reason="the SQLite engine has no schedules and no prune (PostgreSQL only, for now)")
async def test_a_worker_on_sqlite_runs_no_postgresql_only_service(
    db: Db, side: Side, caplog: pytest.LogCaptureFixture
) -> None:
    """Schedules are on by default: on SQLite the worker simply has none to
    tick (no connection attempts, no warnings); prune_after is refused
    before the run starts, with the reason."""
    worker = fast(db)

    @worker.handler("plain")
    async def plain(job: JobContext[Any]) -> Any:
        return "ok"

    chain = await side.start("plain")
    async with running(worker):
        await eventually(lambda: side.done(chain))
        # no own-connection service was started (no ticker, no pruner), so
        # none can try to connect later: nothing to wait for
        assert worker._run is not None and worker._run.loopers == []
    assert [r.getMessage() for r in caplog.records if r.levelname in ("WARNING", "ERROR")] == []
    pruning = fast(db, prune_after=timedelta(days=7))
    pruning.handler("plain", plain)
    with pytest.raises(ValueError, match="no prune"):
        await pruning.run_async()
