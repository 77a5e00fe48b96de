"""The broker notifiers' fast paths, against the real shared servers: a lone
listener claims without asking the wake budget (the unit is still taken), and
the Redis notifier's callers write their hints themselves on a reply-less
connection, falling back to the I/O thread's path when Redis closed it."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from queuert.notify import NotifyEvent
from queuert.notify.nats import NatsNotifier
from queuert.notify.redis import RedisNotifier

from notify_brokers import NATS_URL, REDIS_URL, unique_prefix
from test_notify_brokers import Make, cluster_ports, drop_bucket, make, of, until  # noqa: F401  (fixtures)


async def test_a_lone_listener_claims_at_once_and_the_unit_is_still_taken(make: Make) -> None:
    publisher, worker = make(), make()
    got: list[NotifyEvent] = []
    await worker.subscribe(got.append, kinds=("job_ready",))
    await publisher.publish_job_ready({"solo": 1})
    await until(lambda: of(got, "job_ready") == ["solo"])
    # the first take asks the broker, or, when the count the subscription
    # started is already in, is the first lone take: either way it gets the unit
    assert await worker.take_wake_hint(["solo"]) is True
    await until(lambda: worker._listeners.value == 1 and not worker._background)
    done = worker._background_done
    # alone: the budget is spent, yet the worker claims (nobody to leave it to)
    assert await worker.take_wake_hint(["solo"]) is True
    await until(lambda: worker._background_done == done + 1)
    # with a unit there, the lone worker's background take gets it all the same
    await publisher.publish_job_ready({"solo": 1})
    assert await publisher.flush()
    assert await worker.take_wake_hint(["solo"]) is True
    await until(lambda: worker._background_done == done + 2)
    assert await publisher.take_wake_hint(["solo"]) is False


async def test_a_second_listener_makes_takes_ask_the_budget_again(make: Make) -> None:
    publisher, first, second = make(), make(), make()
    await first.subscribe(lambda e: None, kinds=("job_ready",))
    assert await first.take_wake_hint(["t"]) is False  # no count yet: asked, and spent
    await until(lambda: first._listeners.value == 1)
    assert await first.take_wake_hint(["t"]) is True  # alone now
    await second.subscribe(lambda e: None, kinds=("job_ready",))

    def recounted() -> bool:
        # a count older than refresh_after is renewed in the background
        if first._listeners.value != 2:
            first._listeners.at = min(first._listeners.at, time.monotonic() - first._listeners.refresh_after)
            first._listeners.alone()
        return first._listeners.value == 2

    await until(recounted)
    await publisher.publish_job_ready({"t": 1})
    assert await publisher.flush()
    assert [await first.take_wake_hint(["t"]), await first.take_wake_hint(["t"])] == [True, False]


async def test_redis_callers_write_hints_directly_and_survive_a_killed_connection() -> None:
    prefix = unique_prefix()
    publisher, subscriber = RedisNotifier(REDIS_URL, prefix=prefix), RedisNotifier(REDIS_URL, prefix=prefix)
    admin = aioredis.Redis.from_url(REDIS_URL)
    got: list[NotifyEvent] = []
    try:
        await subscriber.subscribe(got.append, kinds=("chain_completed",))
        await publisher.publish_chain_completed(["c-0"])  # the I/O thread's path; connects the direct one
        assert publisher._direct is not None
        await until(lambda: publisher._direct is not None and publisher._direct.connected)
        for i in range(1, 4):
            await publisher.publish_chain_completed([f"c-{i}"])  # written by this thread
        assert await publisher.flush()
        # c-0 went out on the I/O thread's connection, the rest on the direct
        # one: Redis keeps order per connection only
        await until(lambda: sorted(of(got, "chain_completed")) == [f"c-{i}" for i in range(4)])
        assert publisher.published == 4 and publisher.dropped == 0

        # Redis closes the direct connection (by its name: only ours)
        killed = 0
        for client in await admin.client_list():
            if client.get("name") == f"queuert-publish-{prefix}":
                killed += await admin.client_kill_filter(_id=client["id"])
        assert killed == 1
        # the next hints notice it and go the I/O thread's way: none is lost
        for i in range(4, 8):
            await publisher.publish_chain_completed([f"c-{i}"])
        assert await publisher.flush()
        await until(lambda: sorted(of(got, "chain_completed")) == sorted(f"c-{i}" for i in range(8)))
        assert publisher.dropped == 0
        # and the direct connection comes back
        await until(lambda: publisher._direct is not None and publisher._direct.connected, timeout=15)
    finally:
        await publisher.close()
        await subscriber.close()
        await admin.aclose()


async def test_nats_with_one_listener_the_budget_still_follows_the_event() -> None:
    """NATS sends the event before the top-up when a fresh count says one
    subscription listens; the unit is there all the same once flushed."""
    prefix = unique_prefix()
    publisher, worker = NatsNotifier(NATS_URL, prefix=prefix), NatsNotifier(NATS_URL, prefix=prefix)
    got: list[NotifyEvent] = []
    try:
        await worker.subscribe(got.append, kinds=("job_ready",))
        await publisher.publish_job_ready({"first": 1})  # no count yet: budget first; counts
        await until(lambda: publisher._listeners.value == 1)
        await publisher.publish_job_ready({"x": 2})
        assert await publisher.flush()
        await until(lambda: of(got, "job_ready") == ["first", "x"])
        assert [await publisher.take_wake_hint(["x"]) for _ in range(3)] == [True, True, False]
    finally:
        await publisher.close()
        await worker.close()
        await drop_bucket(f"{prefix}-wake-hints")
