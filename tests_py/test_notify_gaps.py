"""Every path that makes jobs ready publishes through the configured notifier,
after its commit, and publishes nothing when it rolls back (issue 11, item 4).

Real Redis and NATS, a unique prefix per test. The worker that must hear of
the jobs sleeps on a poll a minute away, so only the broker can wake it. A
listener on the same broker records what was published; "nothing was
published" is read after a later, committed publication from the same
publisher arrived (a broker delivers one connection's messages in order),
never after a sleep.

The paths: a workerless ``complete_chain`` that unblocks a fan-in (and
completes a chain); what an atomic handler does on ``job.conn`` (start a
chain, complete a blocker), async and sync; the schedule ticker; the
dashboard's actions; SQLite's atomic handlers; and a producer's
transaction in a broker hooks block sends no engine NOTIFY. And the other way round:
``cancel_chains`` publishes ``job_lost`` for the running job it took.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

import queuert
import queuert._sqlite as qs
from queuert import aio
from queuert._worker.schedule_ticker import ScheduleTicker
from queuert.dashboard import create_dashboard
from queuert.job import JobContext
from queuert.notify import NotifyEvent
from queuert.notify.broker import BrokerNotifier
from queuert.notify.nats import NatsNotifier
from queuert.notify.redis import RedisNotifier

from notify_brokers import NATS_URL, REDIS_URL, broker_notifiers, unique_prefix
from test_notify_worker import asleep
from test_worker import DB, db, eventually, fast, running  # noqa: F401 - fixture


@pytest.fixture(params=["redis", "nats"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[[], BrokerNotifier]]:
    with broker_notifiers(request.param) as factory:
        yield factory


class Heard:
    """What a listener on the broker heard, in order."""

    def __init__(self) -> None:
        self.events: list[NotifyEvent] = []

    async def listen(self, notifier: BrokerNotifier) -> None:
        await notifier.subscribe(self.events.append, kinds=("job_ready", "chain_completed", "job_lost"))
        await eventually(lambda: self.payloads("resync"), timeout=30)  # the subscription is live

    def payloads(self, kind: str) -> list[str]:
        return [e.payload for e in self.events if e.kind == kind]


# -- the producer's transaction sends no engine NOTIFY -----------------------


@pytest.mark.parametrize("autocommit", [False, True])
async def test_broker_hooks_turn_the_engine_notify_off_in_the_callers_transaction(
    make: Callable[[], BrokerNotifier], dsn: str, db: DB, autocommit: bool
) -> None:
    """Inside ``transaction_hooks(broker)`` the client's calls make the
    engine send no NOTIFY (the broker carries the news, and a NOTIFY would
    serialise the commit), with no role or database setting: per
    transaction (``SET LOCAL``, riding with the first call), so the
    connection's next transaction notifies again. A LISTEN on the database
    hears only the later start made without hooks."""
    heard = Heard()
    await heard.listen(make())
    listener = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=autocommit)
    try:
        await listener.execute("LISTEN queuert_job_ready")
        producer = make()
        async with queuert.transaction_hooks(producer):
            if autocommit:  # each call its own transaction
                await aio.start_chain(conn, "quiet", 1)
                await aio.start_chain(conn, "quiet", 2)
            else:
                async with conn.transaction():
                    await aio.start_chain(conn, "quiet", 1)
                    await aio.start_chain(conn, "quiet", 2)
        await aio.start_chain(conn, "loud", 3)  # no hooks: the engine notifies
        if not autocommit:
            await conn.commit()
        notes = []
        async for note in listener.notifies(timeout=30):
            notes.append(note.payload)
            if note.payload == "loud":
                break
        await eventually(lambda: heard.payloads("job_ready"), timeout=30)
    finally:
        await listener.close()
        await conn.close()
    assert notes == ["loud"]
    assert heard.payloads("job_ready") == ["quiet"]


# -- a workerless complete_chain ---------------------------------------------


async def test_workerless_completion_publishes_the_fan_in_it_unblocks(
    make: Callable[[], BrokerNotifier], dsn: str, db: DB
) -> None:
    """complete_chain from outside a worker (an approval, say) that completes
    a fan-in's last blocker: the hooks publish chain_completed for the
    approval and job_ready for the fan-in's type after the commit, which
    wakes the sleeping worker; a rolled-back completion publishes neither."""
    heard = Heard()
    await heard.listen(make())
    approvals = [await aio.start_chain(db.conn, "approval", i) for i in range(2)]
    fan_in = await aio.start_chain(db.conn, "gather", None, blockers=[a.chain_id for a in approvals])
    worker = fast(dsn, notifier=make(), poll_interval=60)
    ran = asyncio.Event()

    @worker.handler("gather")
    async def gather(job: JobContext[None]) -> list[str]:
        ran.set()
        return sorted(str(b.output) for b in job.blockers)

    producer = make()
    async with running(worker):
        await eventually(lambda: asleep(worker), timeout=30)
        with pytest.raises(RuntimeError):
            async with queuert.transaction_hooks(producer):
                async with db.conn.transaction():
                    for approval in approvals:
                        await aio.complete_chain(db.conn, approval.chain_id, "rolled back")
                    raise RuntimeError("the transaction rolls back")
        # the first approval alone: its chain completes, nothing is unblocked yet
        async with queuert.transaction_hooks(producer):
            async with db.conn.transaction():
                await aio.complete_chain(db.conn, approvals[0].chain_id, "a")
        await eventually(lambda: heard.payloads("chain_completed"), timeout=30)
        assert heard.payloads("chain_completed") == [str(approvals[0].chain_id)]
        assert heard.payloads("job_ready") == []
        assert not ran.is_set()
        # the last one: the fan-in becomes pending and the broker wakes the worker
        async with queuert.transaction_hooks(producer):
            async with db.conn.transaction():
                await aio.complete_chain(db.conn, approvals[1].chain_id, "b")
        await asyncio.wait_for(ran.wait(), 30)
        done = await aio.wait_for_chain(db.conn, fan_in.chain_id, timeout=30, poll_interval=0.05)
    assert done.output == ["a", "b"]
    assert heard.payloads("job_ready") == ["gather"]
    assert heard.payloads("chain_completed")[:2] == [str(a.chain_id) for a in approvals]


# -- cancel_chains: job_lost to the worker running the job -------------------


async def test_cancel_publishes_job_lost_to_the_worker_running_the_job(
    make: Callable[[], BrokerNotifier], dsn: str, db: DB
) -> None:
    """Cancelling a chain whose job is running publishes job_lost (the job's
    id) after the commit: its worker stops the handler at once, not at its
    next lease renewal (half a minute away here). A rolled-back cancel
    publishes nothing and the handler runs on."""
    heard = Heard()
    await heard.listen(make())
    worker = fast(dsn, notifier=make(), renew_interval=30)
    started = asyncio.Event()
    stopped: list[str] = []

    @worker.handler("long")
    async def long(job: JobContext[None]) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            stopped.append(str(job.lease_lost.reason))
            raise

    chain = await aio.start_chain(db.conn, "long", None)
    producer = make()
    async with running(worker):
        await asyncio.wait_for(started.wait(), 30)
        with pytest.raises(RuntimeError):
            async with queuert.transaction_hooks(producer):
                async with db.conn.transaction():
                    await aio.cancel_chains(db.conn, [chain.chain_id])
                    raise RuntimeError("the transaction rolls back")
        # nothing was published: a marker sent after it through the same
        # publisher is the first job_lost heard (one connection keeps order)
        await producer.publish_job_lost(["marker"])
        await eventually(lambda: heard.payloads("job_lost"), timeout=30)
        assert heard.payloads("job_lost") == ["marker"]
        async with queuert.transaction_hooks(producer):
            async with db.conn.transaction():
                assert await aio.cancel_chains(db.conn, [chain.chain_id]) == [chain.chain_id]
        await eventually(lambda: stopped, timeout=20)
        # the worker's subscription heard it; the listener's is another
        # connection, which may hear it later
        await eventually(lambda: len(heard.payloads("job_lost")) > 1, timeout=30)
    assert heard.payloads("job_lost") == ["marker", str(chain.chain_id)]  # the root is the running job
    assert (await db.job(chain.chain_id))["status"] == "cancelled"
    assert worker.stats.lost == 1


# -- an atomic handler's calls on job.conn -----------------------------------


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_atomic_handler_work_is_published_after_the_attempt_commits(
    make: Callable[[], BrokerNotifier], dsn: str, db: DB, kind: str
) -> None:
    """An atomic handler starts a chain and completes a fan-in's blocker on
    ``job.conn``, inside its attempt's transaction: once the attempt
    commits, its worker publishes the new job's type, the fan-in's type and
    the completed chain, which wake another worker asleep on its poll. An
    attempt that fails is rolled back to its savepoint, and what its handler
    did is published by nobody."""
    heard = Heard()
    await heard.listen(make())
    await aio.set_job_type(db.conn, "parent", max_attempts=1)
    approval = await aio.start_chain(db.conn, "approval", None)
    fan_in = await aio.start_chain(db.conn, "gather", None, blockers=[approval.chain_id])
    parents = fast(dsn, notifier=make(), mode="atomic", concurrency=1)
    children = fast(dsn, notifier=make(), poll_interval=60)
    seen: list[Any] = []

    if kind == "async":

        @parents.handler("parent")
        async def parent_async(job: JobContext[dict[str, Any]]) -> None:
            await aio.start_chain(job.conn, "child", job.input["n"])
            await aio.complete_chain(job.conn, approval.chain_id, job.input["n"])
            if job.input["fail"]:
                raise RuntimeError("the attempt fails: its transaction rolls back")

    else:

        @parents.handler("parent")
        def parent_sync(job: JobContext[dict[str, Any]]) -> None:
            queuert.start_chain(job.conn, "child", job.input["n"])
            queuert.complete_chain(job.conn, approval.chain_id, job.input["n"])
            if job.input["fail"]:
                raise RuntimeError("the attempt fails: its transaction rolls back")

    @children.handler("child")
    async def child(job: JobContext[int]) -> None:
        seen.append(("child", job.input))

    @children.handler("gather")
    async def gather(job: JobContext[None]) -> None:
        seen.append(("gather", [b.output for b in job.blockers]))

    async with running(children):
        await eventually(lambda: asleep(children), timeout=30)
        async with running(parents):
            failing = await aio.start_chain(db.conn, "parent", {"n": 0, "fail": True})

            async def failed() -> bool:
                return (await db.job(failing.id))["status"] == "failed"

            await eventually(failed, timeout=30)
            good = await aio.start_chain(db.conn, "parent", {"n": 1, "fail": False})
            await aio.wait_for_chain(db.conn, good.chain_id, timeout=30, poll_interval=0.05)
            await eventually(lambda: len(seen) == 2, timeout=30)
            # the parents' worker publishes in commit order: the good
            # attempt's news comes after anything the failed one had sent
            await eventually(lambda: str(good.chain_id) in heard.payloads("chain_completed"), timeout=30)
    assert sorted(seen, key=str) == [("child", 1), ("gather", [1])]
    # the failed attempt's chain and completion were rolled back, and never published
    ready = heard.payloads("job_ready")
    assert ready.count("child") == 1 and ready.count("gather") == 1, ready
    assert heard.payloads("chain_completed").count(str(approval.chain_id)) == 1
    assert (await db.one("SELECT count(*) FROM queuert.job WHERE type_name = 'child'"))[0] == 1
    done = await aio.get_chain(db.conn, fan_in.chain_id)
    assert done.status == "completed"


# -- the schedule ticker -----------------------------------------------------


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_schedule_ticks_are_published_after_their_round_commits(
    make: Callable[[], BrokerNotifier], dsn: str, db: DB
) -> None:
    """The worker's schedule ticker starts a chain for a due tick and its
    worker publishes the chain's type through the broker, which wakes the
    worker itself (its poll is a minute away). A round that fails (a
    schedule whose cron the engine cannot read) rolls back as a whole and
    publishes nothing."""
    heard = Heard()
    await heard.listen(make())
    await aio.set_schedule(db.conn, "yearly", "0 0 1 1 *", "tick", {"n": 1})
    worker = fast(dsn, notifier=make(), poll_interval=60)
    ran: list[Any] = []

    @worker.handler("tick")
    async def tick(job: JobContext[dict[str, int]]) -> None:
        ran.append(job.input)

    warnings = _Warnings()
    logging.getLogger("queuert.schedules").addHandler(warnings)
    try:
        async with running(worker):
            await eventually(lambda: asleep(worker), timeout=30)
            assert worker._run is not None
            (ticker,) = [s for s in worker._run.loopers if isinstance(s, ScheduleTicker)]
            await db.conn.execute(
                "UPDATE queuert.schedule SET cron = 'not a cron', next_tick_at = now() - interval '1 minute'"
            )
            ticker.wake()
            await eventually(lambda: warnings.messages, timeout=30)
            assert (await db.one("SELECT count(*) FROM queuert.job"))[0] == 0  # the round rolled back
            await db.conn.execute("UPDATE queuert.schedule SET cron = '0 0 1 1 *'")
            ticker.wake()
            await eventually(lambda: ran, timeout=30)
            await eventually(lambda: heard.payloads("job_ready"), timeout=30)
    finally:
        logging.getLogger("queuert.schedules").removeHandler(warnings)
    assert ran == [{"n": 1}]
    assert heard.payloads("job_ready") == ["tick"]
    assert ticker.fired == 1


# -- the dashboard's actions -------------------------------------------------


async def test_dashboard_actions_publish_through_the_notifier(
    make: Callable[[], BrokerNotifier], dsn: str, db: DB
) -> None:
    """A job triggered from the dashboard (created with the workers'
    notifier) wakes a worker asleep until its poll; a refused action
    (one of its ids does not exist: nothing was changed) publishes nothing."""
    heard = Heard()
    await heard.listen(make())
    later = await aio.start_chain(db.conn, "later", 7, schedule_after=timedelta(hours=1))
    worker = fast(dsn, notifier=make(), poll_interval=60)
    ran = asyncio.Event()

    @worker.handler("later")
    async def run_later(job: JobContext[int]) -> int:
        ran.set()
        return job.input

    dashboard = create_dashboard(dsn, notifier=make())
    try:
        transport = httpx.ASGITransport(app=dashboard)
        async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
            token = (await client.get("/api/csrf")).json()["csrf_token"]
            headers = {"X-CSRF-Token": token}
            async with running(worker):
                await eventually(lambda: asleep(worker), timeout=30)
                refused = await client.post(
                    "/api/jobs/trigger", json={"job_ids": [str(later.id), str(uuid.uuid4())]}, headers=headers
                )
                assert refused.status_code == 404, refused.text
                triggered = await client.post("/api/jobs/trigger", json={"job_ids": [str(later.id)]}, headers=headers)
                assert triggered.status_code == 200, triggered.text
                await asyncio.wait_for(ran.wait(), 30)
                done = await aio.wait_for_chain(db.conn, later.chain_id, timeout=30, poll_interval=0.05)
                await eventually(lambda: heard.payloads("job_ready"), timeout=30)
    finally:
        await dashboard.aclose()
    assert done.output == 7
    assert heard.payloads("job_ready") == ["later"]


# -- SQLite: an atomic handler's calls on job.conn ---------------------------


async def test_sqlite_atomic_handler_work_is_published_after_the_attempt_commits(
    tmp_path: Path, make: Callable[[], BrokerNotifier]
) -> None:
    """The same on SQLite: an atomic handler that starts a chain on
    ``job.conn`` has it published through the broker after its attempt
    commits (another SQLite worker asleep on its poll runs it), and a failed
    attempt's chain is neither written nor published."""
    path = tmp_path / "app.db"
    qs.migrate(str(path))
    dsn = f"sqlite:///{path}"
    heard = Heard()
    await heard.listen(make())
    parents = fast(dsn, notifier=make(), mode="atomic", concurrency=1)
    children = fast(dsn, notifier=make(), poll_interval=60)
    seen: list[int] = []

    @parents.handler("parent")
    def parent(job: JobContext[dict[str, Any]]) -> None:
        queuert.start_chain(job.conn, "child", job.input["n"])
        if job.input["fail"]:
            raise RuntimeError("the attempt fails: its transaction rolls back")

    @children.handler("child")
    async def child(job: JobContext[int]) -> None:
        seen.append(job.input)

    async with running(children):
        await eventually(lambda: asleep(children), timeout=30)
        conn = sqlite3.connect(path, isolation_level=None)  # each call its own transaction
        try:
            queuert.set_job_type(conn, "parent", max_attempts=1)
            async with running(parents):
                failing = queuert.start_chain(conn, "parent", {"n": 0, "fail": True})
                await eventually(lambda: parents.stats.failed == 1, timeout=30)
                queuert.start_chain(conn, "parent", {"n": 1, "fail": False})
                await eventually(lambda: seen, timeout=30)
                await eventually(lambda: heard.payloads("job_ready"), timeout=30)
            assert queuert.get_chain(conn, failing.chain_id).status == "failed"
            children_of_type = queuert.list_chains(conn, type_name="child").items
        finally:
            conn.close()
    assert seen == [1] and len(children_of_type) == 1
    assert heard.payloads("job_ready") == ["child"]
