"""Workers driven by a broker notifier, through the public Worker API only:
``Worker(dsn, notifier=RedisNotifier(...))`` (and NATS, Redis Cluster)
completes chains with continuations and fan-in, and a producer's
transaction hooks wake it through the broker (its poll is a minute away)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

import queuert
from queuert import aio
from queuert.job import JobContext
from queuert.notify.broker import BrokerNotifier
from queuert.notify.nats import NatsNotifier
from queuert.notify.redis import RedisNotifier

from notify_brokers import NATS_URL, REDIS_URL, redis_cluster, unique_prefix
from test_worker import DB, db, fast, running  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    with redis_cluster() as ports:
        yield ports


@pytest.fixture(params=["redis", "redis-cluster", "nats"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[[], BrokerNotifier]]:
    prefix = unique_prefix()
    made: list[BrokerNotifier] = []

    def factory() -> BrokerNotifier:
        notifier: BrokerNotifier
        if request.param == "redis":
            notifier = RedisNotifier(REDIS_URL, prefix=prefix)
        elif request.param == "redis-cluster":
            port = request.getfixturevalue("cluster_ports")[len(made) % 3]
            notifier = RedisNotifier(f"redis://127.0.0.1:{port}", prefix=prefix, cluster=True)
        else:
            notifier = NatsNotifier(NATS_URL, prefix=prefix)
        made.append(notifier)
        return notifier

    yield factory
    for notifier in made:
        asyncio.run(notifier.close())
    if request.param == "nats":
        from test_notify_brokers import drop_bucket

        asyncio.run(drop_bucket(f"{prefix}-wake-hints"))


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
        await asyncio.sleep(0.2)  # the worker's first claim found nothing: asleep
        conn = await psycopg.AsyncConnection.connect(dsn)
        try:
            async with queuert.transaction_hooks(producer):
                async with conn.transaction():
                    await aio.start_chain(conn, "ping", "hi")
            await asyncio.wait_for(ran.wait(), 30)
        finally:
            await conn.close()
    assert worker.stats.as_dict()["completed"] == 1
