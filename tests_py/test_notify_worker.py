"""Workers driven by a broker notifier, through the public Worker API only:
``Worker(dsn, notifier=RedisNotifier(...))`` (and NATS, Redis Cluster)
completes chains with continuations and fan-in, and a producer's
transaction hooks wake it through the broker (its poll is a minute away)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import queuert
from queuert import aio
from queuert.job import JobContext
from queuert.notify import NotifyEvent
from queuert.notify.broker import BrokerNotifier
from queuert.notify.nats import NatsNotifier
from queuert.notify.redis import RedisNotifier

from notify_brokers import NATS_URL, REDIS_URL, broker_notifiers, redis_cluster, unique_prefix
from test_worker import DB, db, eventually, fast, running  # noqa: F401 - fixture
from worker_helpers import asleep


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    with redis_cluster() as ports:
        yield ports


@pytest.fixture(params=["redis", "redis-cluster", "nats"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[..., BrokerNotifier]]:
    with broker_notifiers(request.param, lambda: request.getfixturevalue("cluster_ports")) as factory:
        yield factory


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_chains_with_continuation_and_fan_in_complete(
    make: Callable[[], BrokerNotifier], dsn: str, db: DB, mode: str
) -> None:
    worker = fast(dsn, mode=mode, concurrency=4, notifier=make())

    @worker.handler("first")
    async def first(job: JobContext[int]) -> Any:
        return job.continue_with("second", job.input + 1)

    @worker.handler("second")
    def second(job: JobContext[int]) -> int:
        return job.input * 10

    @worker.handler("total")
    async def total(job: JobContext[Any]) -> int:
        return sum(int(b.output) for b in job.blockers)

    async with running(worker):
        parts = [(await aio.start_chain(db.conn, "first", i)).chain_id for i in range(6)]
        fan_in = (await aio.start_chain(db.conn, "total", None, blockers=parts)).chain_id
        done = await aio.wait_for_chain(db.conn, fan_in, timeout=60)
    assert done.output == sum((i + 1) * 10 for i in range(6))


async def test_hooks_wake_an_idle_worker_through_the_broker(
    make: Callable[[], BrokerNotifier], dsn: str
) -> None:
    # poll a minute away: only the broker's job_ready can start the job soon
    worker = fast(dsn, notifier=make(), poll_interval=60)
    ran = asyncio.Event()

    @worker.handler("ping")
    async def ping(job: JobContext[str]) -> str:
        ran.set()
        return job.input

    producer = make()
    async with running(worker):
        await eventually(lambda: asleep(worker))  # its first claim found nothing
        conn = await psycopg.AsyncConnection.connect(dsn)
        try:
            async with queuert.transaction_hooks(producer):
                async with conn.transaction():
                    await aio.start_chain(conn, "ping", "hi")
            await asyncio.wait_for(ran.wait(), 30)
        finally:
            await conn.close()
    assert worker.stats.as_dict()["completed"] == 1


async def test_eight_idle_workers_one_job_one_claim(
    make: Callable[..., BrokerNotifier], dsn: str, db: DB
) -> None:
    """Wake budgets in the worker: eight idle workers (a notifier each, as
    eight processes have) all hear the job_ready of one started job; each
    takes a unit of the type's budget before it claims, so exactly one runs
    a claim, gets the job and runs it; the seven others find the budget spent
    and go back to sleep without a claim (their poll is a minute away)."""
    workers: list[queuert.Worker] = []
    ran: list[int] = []
    for i in range(8):
        # a slow broker answer must not read as "no budget kept" (a take that
        # fails claims by design): hint_timeout bounds the take, and the
        # client's socket timeout (send_timeout on Redis) must not cut it first
        # (a Cluster client retries a timed-out take: it spends two units)
        notifier = make(hint_timeout=30.0, send_timeout=60.0)
        worker = fast(dsn, notifier=notifier, poll_interval=60, concurrency=2)

        def solo(job: JobContext[None], i: int = i) -> None:
            ran.append(i)

        worker.handler("solo", solo)
        workers.append(worker)
    producer = make(send_timeout=30.0)  # its one job_ready must not be dropped by a stall
    async with contextlib.AsyncExitStack() as stack:
        for worker in workers:
            await stack.enter_async_context(running(worker))
        await eventually(lambda: all(asleep(w) for w in workers), timeout=30)
        claims_before = [w.stats.claim_calls for w in workers]
        assert all(n >= 1 for n in claims_before)  # each looked once at startup
        async with queuert.transaction_hooks(producer):
            async with db.conn.transaction():
                started = await aio.start_chain(db.conn, "solo", None)
        await aio.wait_for_chain(db.conn, started.chain_id, timeout=30, poll_interval=0.05)
        # every worker heard the event: one took the unit, seven found none
        try:
            await eventually(lambda: sum(w.stats.wake_hints_declined for w in workers) == 7, timeout=30)
        except AssertionError:  # say which worker did not decline, and what it did instead
            raise AssertionError([(w.stats.as_dict(), w.notifier.connections) for w in workers]) from None
        await eventually(lambda: all(asleep(w) for w in workers), timeout=30)
        claimed_since = [w.stats.claim_calls - n for w, n in zip(workers, claims_before)]
    assert len(ran) == 1
    winner = ran[0]
    assert [w.stats.claimed for w in workers] == [1 if i == winner else 0 for i in range(8)]
    assert [n > 0 for n in claimed_since] == [i == winner for i in range(8)], claimed_since
    assert [w.stats.wake_hints_declined for w in workers] == [0 if i == winner else 1 for i in range(8)]


async def test_a_reaped_job_is_published_through_the_notifier(
    make: Callable[[], BrokerNotifier], dsn: str, db: DB
) -> None:
    """A job whose worker died (lease expired) is reaped by a live worker,
    which publishes job_lost (its id) and job_ready (its type) through its
    broker, so idle workers wake for it at once: here the reaper itself,
    whose poll is a minute away and whose database sends no NOTIFY."""
    started = await aio.start_chain(db.conn, "orphan", 7)
    rows = await db.all(
        "SELECT id FROM queuert.claim(worker_id => 'ghost', type_names => ARRAY['orphan'], "
        "max_jobs => 1, lease => interval '1 millisecond')"
    )
    assert [r[0] for r in rows] == [started.id]
    heard: list[NotifyEvent] = []
    listener = make()
    await listener.subscribe(heard.append, kinds=("job_lost", "job_ready"))
    worker = fast(dsn, notifier=make(), poll_interval=60, reap_interval=0.2)
    ran: list[int] = []

    @worker.handler("orphan")
    async def orphan(job: JobContext[int]) -> int:
        ran.append(job.attempt)
        return job.input

    async with running(worker):
        done = await aio.wait_for_chain(db.conn, started.chain_id, timeout=30, poll_interval=0.05)
        await eventually(lambda: [e.payload for e in heard if e.kind == "job_lost"] == [str(started.id)])
        # Channels carry no order between them (on a Cluster they can live on
        # different nodes): wait for job_ready too, never assume it came first.
        await eventually(lambda: "orphan" in [e.payload for e in heard if e.kind == "job_ready"])
    assert done.output == 7 and ran == [2] and worker.stats.reaped == 1


async def test_jobs_released_at_stop_wake_an_idle_worker_through_the_broker(
    make: Callable[[], BrokerNotifier], dsn: str, db: DB
) -> None:
    """A stopping worker gives back the jobs it claimed ahead (release_jobs)
    and publishes their job_ready through the broker: an idle worker whose
    poll is a minute away picks them up at once."""
    for i in range(4):
        await aio.start_chain(db.conn, "held", i)
    first = fast(dsn, notifier=make(), concurrency=1, prefetch=3)
    second = fast(dsn, notifier=make(), concurrency=4, poll_interval=60)
    holding = asyncio.Event()
    finish = asyncio.Event()
    by_first: list[int] = []
    by_second: list[int] = []

    @first.handler("held")
    async def held_first(job: JobContext[int]) -> int:
        by_first.append(job.input)
        holding.set()
        await finish.wait()
        return job.input

    @second.handler("held")
    async def held_second(job: JobContext[int]) -> int:
        by_second.append(job.input)
        return job.input

    async with running(first):
        await asyncio.wait_for(holding.wait(), 30)

        async def all_running() -> bool:
            return bool((await db.one("SELECT count(*) = 4 FROM queuert.job WHERE status = 'running'"))[0])

        await eventually(all_running, timeout=30)
        async with running(second):
            await eventually(lambda: asleep(second, until=10), timeout=30)
            first.stop()  # graceful: the three held ahead go back now, the running one finishes
            await eventually(lambda: len(by_second) == 3, timeout=30)
            finish.set()
    # which job the first one ran depends on which of its two claims came back first
    assert len(by_first) == 1 and sorted(by_first + by_second) == [0, 1, 2, 3]
    assert second.stats.claimed == 3
    rows = await db.all("SELECT status::text, count(*) FROM queuert.job GROUP BY 1")
    assert rows == [("completed", 4)]
