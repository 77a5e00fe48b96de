"""A lone listener's wake-ups keep the worker's stats right: it claims at
once and its unit of the wake budget is taken in the background; the worker
counts that take when the broker answers, ``wake_hints_taken`` when a unit
was there and ``wake_hints_declined`` when the budget was spent (it claimed
all the same: nobody else listens). Real Redis and NATS, the public Worker
API, a ``job_ready`` with no budget behind it sent as a bare broker message
(a duplicated or late hint, as a broker may deliver one).

Before, the lone path counted every wake-up as taken and never a declined
one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import nats
import pytest
import redis.asyncio as aioredis

import queuert
from queuert import aio
from queuert.job import JobContext
from queuert.notify.broker import BrokerNotifier
from queuert.notify.nats import NatsNotifier
from queuert.notify.redis import RedisNotifier

from notify_brokers import NATS_URL, REDIS_URL, unique_prefix
from test_notify_brokers import drop_bucket
from test_worker import DB, db, eventually, fast  # noqa: F401 - fixture
from worker_helpers import asleep, running


async def _bare_redis(notifier: BrokerNotifier, type_name: str) -> None:
    assert isinstance(notifier, RedisNotifier)
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        await client.publish(notifier.channels["job_ready"], type_name)
    finally:
        await client.aclose()


async def _bare_nats(notifier: BrokerNotifier, type_name: str) -> None:
    assert isinstance(notifier, NatsNotifier)
    nc = await nats.connect(NATS_URL)
    try:
        await nc.publish(notifier.subjects["job_ready"], type_name.encode())
        await nc.flush()
    finally:
        await nc.close()


BROKERS: dict[str, tuple[Callable[[str], BrokerNotifier], Callable[[BrokerNotifier, str], Awaitable[None]]]] = {
    "redis": (lambda prefix: RedisNotifier(REDIS_URL, prefix=prefix), _bare_redis),
    "nats": (lambda prefix: NatsNotifier(NATS_URL, prefix=prefix), _bare_nats),
}


@pytest.mark.parametrize("broker", sorted(BROKERS))
async def test_a_lone_listener_counts_its_background_takes(broker: str, dsn: str, db: DB) -> None:
    new, bare = BROKERS[broker]
    prefix = unique_prefix()
    notifier, producer = new(prefix), new(prefix)
    notifier.hint_timeout = 30.0
    # the count of listeners is trusted for a minute, not 5 s: on a loaded
    # machine the seconds between the count coming in and the next event's
    # take would otherwise make the worker ask the broker, not claim alone
    notifier._listeners.trust_for = 60.0
    worker = fast(dsn, notifier=notifier, poll_interval=60)
    ran: list[Any] = []

    @worker.handler("lone")
    def lone(job: JobContext[Any]) -> None:
        ran.append(job.input)

    stats = worker.stats
    try:
        async with running(worker):
            await eventually(lambda: asleep(worker), timeout=30)
            # a bare event, no budget: asked (no listener count yet), declined
            await bare(notifier, "lone")
            await eventually(lambda: stats.wake_hints_declined == 1, timeout=30)
            # the background count comes in: one subscription, ours
            await eventually(lambda: notifier._listeners.value == 1, timeout=30)
            await eventually(lambda: asleep(worker), timeout=30)
            claims = stats.claim_calls

            # alone now: the worker claims at once (nothing there) and the
            # background take finds the budget spent: declined, not taken
            await bare(notifier, "lone")
            await eventually(lambda: stats.claim_calls > claims, timeout=30)
            await eventually(lambda: stats.wake_hints_declined == 2, timeout=30)
            assert stats.wake_hints_taken == 0

            # a real job, its unit published: the lone take finds it, taken
            await eventually(lambda: asleep(worker) and notifier._listeners.alone(), timeout=30)
            async with queuert.transaction_hooks(producer):
                async with db.conn.transaction():
                    started = await aio.start_chain(db.conn, "lone", "go")
            await aio.wait_for_chain(db.conn, started.chain_id, timeout=30, poll_interval=0.05)
            await eventually(lambda: stats.wake_hints_taken == 1, timeout=30)
            # nothing else is left to settle: every event was answered and
            # no background take of the notifier is in flight (was: a 0.2 s
            # sleep, which proved nothing about a late one)
            await eventually(lambda: not notifier._lone.busy)
        assert ran == ["go"]
        assert (stats.wake_hints_taken, stats.wake_hints_declined) == (1, 2)
    finally:
        await notifier.close()
        await producer.close()
        if broker == "nats":
            await drop_bucket(f"{prefix}-wake-hints")
