"""The worker's batched notifications (``batch_notifications=True``, the
default): its acknowledging transactions send no job_ready / chain_completed
NOTIFY (``queuert.notify = 'job_lost,job_ready_unblocked'``: the engine
still announces dependents a completion unblocked); it publishes the rest
itself after the commit, several commits' worth per statement."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import psycopg
import pytest

import queuert
from queuert import aio
from queuert._worker.pg_store import PgAnnouncer
from queuert.job import JobContext

from test_worker import DB, db, eventually, fast, running  # noqa: F401 - fixture

CHANNELS = ("queuert_job_ready", "queuert_chain_completed")


class Listener:
    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.got: list[tuple[str, str]] = []

    async def collect(self) -> None:
        async for n in self.conn.notifies():
            self.got.append((n.channel, n.payload))

    def payloads(self, channel: str) -> list[str]:
        return [p for c, p in self.got if c == channel]


@contextlib.asynccontextmanager
async def listening(dsn: str) -> AsyncIterator[Listener]:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    for ch in CHANNELS:
        await conn.execute(f"LISTEN {ch}")
    listener = Listener(conn)
    task = asyncio.create_task(listener.collect())
    try:
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        await conn.close()


async def notifications_settled(conn: psycopg.AsyncConnection[Any], listener: Listener) -> None:
    """Until every notification committed before this call has reached
    ``listener``: PostgreSQL delivers notifications in commit order, so once
    our own (committed now) arrives, all earlier ones have. The marker is
    taken out of ``listener.got``."""
    marker = f"settled-{uuid.uuid4()}"
    await conn.execute("SELECT pg_notify(%s, %s)", (CHANNELS[1], marker))
    await eventually(lambda: (CHANNELS[1], marker) in listener.got, timeout=30)
    listener.got.remove((CHANNELS[1], marker))


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_notifications_are_published_once_after_commit(dsn: str, db: DB, mode: str) -> None:
    worker = fast(dsn, mode=mode, concurrency=4)

    @worker.handler("first")
    async def first(job: JobContext[Any]) -> Any:
        return job.continue_with("second", job.input)

    @worker.handler("second")
    async def second(job: JobContext[Any]) -> Any:
        return {"n": job.input}

    @worker.handler("parent")
    async def parent(job: JobContext[Any]) -> Any:
        return len(job.blockers)

    n = 20
    async with listening(dsn) as listener:
        chains = [(await aio.start_chain(db.conn, "first", i)).chain_id for i in range(n)]
        dep = (await aio.start_chain(db.conn, "parent", None, blockers=chains)).chain_id
        async with running(worker):
            done = await aio.wait_for_chain(db.conn, dep, timeout=30)
            assert done.output == n
        await notifications_settled(db.conn, listener)  # the stopped worker sent its last batch
        run = worker._run
        assert run is not None and run.publisher is not None
        sent = run.publisher.sent
    completed = listener.payloads("queuert_chain_completed")
    # exactly one per chain: the engine's own NOTIFY in the worker's
    # transactions would be a second one (a different transaction)
    assert sorted(completed) == sorted(str(c) for c in [*chains, dep])
    ready = listener.payloads("queuert_job_ready")
    assert "second" in ready  # continuations that became pending
    assert "parent" in ready  # a dependent the completions unblocked
    # every job_ready for these types came from the publisher's statements
    assert 1 <= ready.count("second") <= sent
    assert ready.count("parent") == 1
    assert sent < 2 * n + 1  # batched: fewer statements than notifications


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_without_batching_the_engine_notifies_in_the_worker_transactions(
    dsn: str, db: DB, mode: str
) -> None:
    worker = fast(dsn, mode=mode, concurrency=2, batch_notifications=False)

    @worker.handler("one")
    async def one(job: JobContext[Any]) -> Any:
        return job.input

    async with listening(dsn) as listener:
        chains = [(await aio.start_chain(db.conn, "one", i)).chain_id for i in range(5)]
        async with running(worker):
            for c in chains:
                await aio.wait_for_chain(db.conn, c, timeout=30)
        await notifications_settled(db.conn, listener)
        assert worker._run is not None and worker._run.publisher is None
    assert sorted(listener.payloads("queuert_chain_completed")) == sorted(str(c) for c in chains)


async def test_rolled_back_atomic_job_publishes_nothing(dsn: str, db: DB) -> None:
    worker = fast(dsn, mode="atomic", concurrency=1, grace_period=0.2)
    started = asyncio.Event()

    @worker.handler("slow")
    async def slow(job: JobContext[Any]) -> Any:
        started.set()
        await asyncio.sleep(30)
        return 1

    async with listening(dsn) as listener:
        chain = await aio.start_chain(db.conn, "slow", None)
        async with running(worker):
            await asyncio.wait_for(started.wait(), 10)
            await notifications_settled(db.conn, listener)  # the start's own job_ready is in
            listener.got.clear()
            worker.stop(immediate=True)
        await notifications_settled(db.conn, listener)  # anything it sent has arrived
        assert worker._run is not None and worker._run.publisher is not None
        assert worker._run.publisher.sent == 0
    assert listener.got == []
    job = await db.one("SELECT status, attempt FROM queuert.job WHERE chain_id = %s", (chain.chain_id,))
    assert job[0] == "pending"  # rolled back, claimable again


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_a_non_postgres_notifier_gets_the_published_events_too(dsn: str, db: DB, mode: str) -> None:
    notifier = queuert.InProcessNotifier()
    events: list[tuple[str, str]] = []
    sub = await notifier.subscribe(lambda e: events.append((e.kind, e.payload)), kinds=("chain_completed",))
    worker = fast(dsn, mode=mode, concurrency=2, notifier=notifier)

    @worker.handler("one")
    async def one(job: JobContext[Any]) -> Any:
        return job.input

    async with listening(dsn) as listener:
        chain = await aio.start_chain(db.conn, "one", 1)
        async with running(worker):
            await aio.wait_for_chain(db.conn, chain.chain_id, timeout=30)
            await eventually(lambda: ("chain_completed", str(chain.chain_id)) in events, timeout=30)
            await eventually(lambda: listener.payloads("queuert_chain_completed"), timeout=30)
        await notifications_settled(db.conn, listener)  # a second one would be in by now
    await sub.close()
    assert listener.payloads("queuert_chain_completed") == [str(chain.chain_id)]
    assert isinstance(chain.chain_id, UUID)


async def test_completions_back_to_back_share_announcements_and_none_is_lost(dsn: str, db: DB) -> None:
    """Atomic at concurrency 1 acknowledges job after job, each in its own
    commit: completed chains alone wait up to ``coalesce`` after the last
    announcement, so announcements come at most once per ``coalesce`` (not
    once per job, a round trip and a transaction each), and still every
    chain's chain_completed arrives, once."""
    worker = fast(dsn, mode="atomic", concurrency=1)

    @worker.handler("one")
    async def one(job: JobContext[Any]) -> Any:
        return None

    n = 300
    async with listening(dsn) as listener:
        chains = [
            c.chain_id
            for c in await aio.start_chains(db.conn, [queuert.ChainSpec("one", i) for i in range(n)])
        ]
        await notifications_settled(db.conn, listener)
        listener.got.clear()
        loop = asyncio.get_running_loop()
        async with running(worker):
            t0 = loop.time()
            await eventually(lambda: len(listener.payloads("queuert_chain_completed")) == n, timeout=60)
            elapsed = loop.time() - t0
        await notifications_settled(db.conn, listener)  # the stopped worker sent its last batch
        run = worker._run
        assert run is not None and run.publisher is not None
        sent, coalesce = run.publisher.sent, run.publisher.coalesce
    assert sorted(listener.payloads("queuert_chain_completed")) == sorted(str(c) for c in chains)
    # before: one announcement per 2 ms linger and its send, about one per job
    assert 1 <= sent <= 2 + elapsed / coalesce, (sent, elapsed)


async def test_the_announcers_connection_keeps_none_of_its_one_off_texts(dsn: str, db: DB) -> None:
    """Every announcement is a new text (its chain ids are in it). psycopg
    tallies each single-statement text a connection runs, ``prepare=False``
    or not, and keeps its last 100 (``prepared_max``): over a long drain the
    worker's memory grew by 100 announcements (0.8 MiB at 20,000 jobs/s,
    more with more chains per announcement). The announcer's connection runs
    without prepared statements, so psycopg keeps none; the worker's other
    connections keep the worker's ``prepare_threshold``."""
    worker = fast(dsn, mode="staged", concurrency=4)

    @worker.handler("one")
    async def one(job: JobContext[Any]) -> Any:
        return None

    started = await aio.start_chains(db.conn, [queuert.ChainSpec("one", i) for i in range(50)])
    chains = [c.chain_id for c in started]
    async with running(worker):
        for c in chains:
            await aio.wait_for_chain(db.conn, c, timeout=30)
        run = worker._run
        assert run is not None and run.publisher is not None
        await eventually(lambda: run.publisher is not None and run.publisher.sent >= 1, timeout=30)
        announcer = run.publisher.announcer
        assert isinstance(announcer, PgAnnouncer)
        assert not announcer.closed
        assert announcer.conn.prepare_threshold is None
    assert worker.prepare_threshold == 5  # the default, for every other connection
