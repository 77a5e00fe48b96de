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

from notify_brokers import NATS_URL, REDIS_URL, budget_answer, unique_prefix
from test_notify_brokers import Make, cluster_ports, drop_bucket, make, of, until  # noqa: F401  (fixtures)


async def test_a_lone_listener_claims_at_once_and_the_unit_is_still_taken(make: Make) -> None:
    publisher, worker = make(), make()
    worker._listeners.trust_for = 60.0  # not 5 s: a loaded machine must not age the count between takes
    got: list[NotifyEvent] = []
    await worker.subscribe(got.append, kinds=("job_ready",))
    await publisher.publish_job_ready({"solo": 1})
    await until(lambda: of(got, "job_ready") == ["solo"])
    # the first take asks the broker, or, when the count the subscription
    # started is already in, is the first lone take: either way it gets the unit
    assert await worker.take_wake_hint(["solo"]) is True
    await until(lambda: worker._listeners.value == 1 and not worker._lone.busy)
    done = worker._lone.settled
    # alone: the budget is spent, yet the worker claims (nobody to leave it to)
    assert await worker.take_wake_hint(["solo"]) is True
    await until(lambda: worker._lone.settled == done + 1)
    # with a unit there, the lone worker's background take gets it all the same
    await publisher.publish_job_ready({"solo": 1})
    assert await publisher.flush()
    assert await worker.take_wake_hint(["solo"]) is True
    await until(lambda: worker._lone.settled == done + 2)
    assert await publisher.take_wake_hint(["solo"]) is False


async def test_a_second_listener_makes_takes_ask_the_budget_again(make: Make) -> None:
    publisher, first, second = make(), make(), make()
    first._listeners.trust_for = 60.0  # not 5 s: a loaded machine must not age the count before the lone take
    await first.subscribe(lambda e: None, kinds=("job_ready",))
    # nothing there: the broker says so (asked at once, or, when the count the
    # subscription started came first, by the lone take in the background)
    assert await budget_answer(first, ["t"]) is False
    await until(lambda: first._listeners.value == 1)
    done = first._lone.settled
    assert await first.take_wake_hint(["t"]) is True  # alone now
    # its unit is taken in the background: let that take land on the empty
    # budget before the unit below is published, or it could take that unit
    await until(lambda: first._lone.settled == done + 1 and not first._lone.busy)
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


async def test_redis_direct_writer_coalesces_a_burst_into_fewer_batches() -> None:
    """Callers only hand their hints to the writer thread; a burst of 1,000
    commits' hints goes out in fewer batches (one job_ready event per type
    per batch), with every unit in the budget and every id delivered."""
    prefix = unique_prefix()
    publisher, subscriber = RedisNotifier(REDIS_URL, prefix=prefix), RedisNotifier(REDIS_URL, prefix=prefix)
    admin = aioredis.Redis.from_url(REDIS_URL)
    got: list[NotifyEvent] = []
    try:
        await subscriber.subscribe(got.append, kinds=("job_ready", "chain_completed"))
        publisher.publish_nowait(["warm"], [], [])  # connects the direct path
        await until(lambda: publisher._direct is not None and publisher._direct.connected)
        assert await publisher.flush()
        await until(lambda: of(got, "job_ready") == ["warm"])

        def burst() -> None:  # a producer thread committing 1,000 times
            for i in range(1000):
                publisher.publish_nowait({"burst": 1}, [f"c-{i}"], [])

        await asyncio.to_thread(burst)
        assert await publisher.flush()
        assert int(await admin.get(publisher.budget_key("burst")) or 0) == 1000
        await until(lambda: len(of(got, "chain_completed")) == 1000)
        events = of(got, "job_ready").count("burst")
        assert 1 <= events < 1000, events  # coalesced: one event per batch
        assert publisher.published == 1 + events + 1000 and publisher.dropped == 0
    finally:
        await publisher.close()
        await subscriber.close()
        await admin.delete(f"{{{prefix}}}:hint:burst", f"{{{prefix}}}:hint:warm")
        await admin.aclose()


async def test_nats_budget_writes_stay_exact_when_a_remembered_revision_is_stale() -> None:
    """A NATS publisher that wrote a budget last tops it up at the revision
    it remembers (one JetStream round trip); when a worker took a unit in
    between, the server refuses that revision and the publisher reads the
    key first: no unit is lost or doubled either way."""
    prefix = unique_prefix()
    publisher, worker = NatsNotifier(NATS_URL, prefix=prefix), NatsNotifier(NATS_URL, prefix=prefix)
    try:
        for _ in range(3):  # the first creates the key; the next two at the remembered revision
            await publisher.publish_job_ready({"t": 1})
            assert await publisher.flush()
        assert await worker.take_wake_hint(["t"]) is True  # 2 left, a revision the publisher did not write
        await publisher.publish_job_ready({"t": 2})  # refused at the old revision: read, then 4
        assert await publisher.flush()
        await publisher.publish_job_ready({"t": 1})  # read first for a while after a miss: 5
        assert await publisher.flush()
        assert publisher.dropped == 0
        assert [await worker.take_wake_hint(["t"]) for _ in range(6)] == [True] * 5 + [False]
    finally:
        await publisher.close()
        await worker.close()
        await drop_bucket(f"{prefix}-wake-hints")


async def test_nats_publisher_keeps_sending_the_event_first_across_count_renewals() -> None:
    """A NATS publisher that counted one listener sends each job_ready before
    its budget top-up, and keeps doing so while its count is renewed in the
    background (every second, a roll call of a quarter second): the count is
    trusted as long as the lone listener trusts its own. Before, every
    renewal sent a quarter second of events budget first (two JetStream
    round trips ahead of the event)."""
    prefix = unique_prefix()
    publisher, worker = NatsNotifier(NATS_URL, prefix=prefix), NatsNotifier(NATS_URL, prefix=prefix)
    got: list[NotifyEvent] = []
    try:
        await worker.subscribe(got.append, kinds=("job_ready",))
        await publisher.publish_job_ready({"x": 1})  # no count yet: budget first; starts one
        assert await publisher.flush()
        await until(lambda: publisher._listeners.value == 1)
        first = publisher.events_first
        started = time.monotonic()
        sent = 0
        while time.monotonic() - started < 2.6:  # two renewals at least
            await publisher.publish_job_ready({"x": 1})
            assert await publisher.flush()
            sent += 1
            await asyncio.sleep(0.02)
        assert publisher.events_first - first == sent
        await until(lambda: of(got, "job_ready").count("x") == sent + 1)
        # every unit is there all the same, budget after the event
        assert [await publisher.take_wake_hint(["x"]) for _ in range(sent + 2)] == [True] * (sent + 1) + [False]
    finally:
        await publisher.close()
        await worker.close()
        await drop_bucket(f"{prefix}-wake-hints")
