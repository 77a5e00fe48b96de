"""A publisher whose broker counts no job_ready listener holds its job_ready
hints and drops them while the counts keep saying so
(queuert.notify._audience); a listener that comes is woken within
``audience_every`` plus one count, and a worker that starts meanwhile loses
no job: its subscription's resync poll finds what was created before, the
hints resume for what comes after. Real Redis (standalone and Cluster) and
NATS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import psycopg

import queuert
from queuert.job import JobContext
from queuert.notify import NotifyEvent
from queuert.notify.broker import BrokerNotifier

from notify_brokers import budget_answer
from test_notify_brokers import Make, cluster_ports, make, of, until  # noqa: F401  (fixtures)
from test_worker import fast
from worker_helpers import asleep, eventually, running

EVERY = 0.3  # seconds between counts: short, so the bound below is too


async def quiet_publisher(make: Make) -> BrokerNotifier:
    """A publisher that has heard from its broker that nobody listens."""
    publisher = make(audience_every=EVERY)
    await publisher.publish_job_ready({"first": 1})  # a fresh notifier sends, and counts
    assert await publisher.flush(30)
    await until(lambda: publisher._audience.quiet)
    return publisher


async def test_nobody_listening_the_hints_are_held_and_dropped(make: Make) -> None:
    publisher = await quiet_publisher(make)
    sent, rounds = publisher.published, publisher._audience.rounds
    for _ in range(20):  # a stream of commits, over several counts
        await publisher.publish_job_ready({"nobody": 1})
        await asyncio.sleep(0.05)
    await until(lambda: publisher._audience.idle)  # the next count judged the last ones
    assert publisher.published == sent  # not one of them went out
    assert publisher.skipped >= 3  # one type per count that found nobody
    assert publisher.dropped == 0
    assert 3 <= publisher._audience.rounds - rounds <= 10  # counted while they came, not per hint
    # no budget either: nobody was there to take it
    assert await budget_answer(publisher, ["nobody"]) is False
    # flush sends what is held, listeners or not
    await publisher.publish_job_ready({"flushed": 2})
    assert publisher._audience.held == 1
    assert await publisher.flush(30)
    assert publisher.published == sent + 1
    assert [await budget_answer(publisher, ["flushed"]) for _ in range(3)] == [True, True, False]
    # ids go as before (their listeners are not job_ready's)
    await publisher.publish_chain_completed(["c1"])
    assert publisher._audience.held == 0
    assert await publisher.flush(30)
    assert publisher.published == sent + 2


async def test_a_listener_that_comes_hears_within_the_bound(make: Make) -> None:
    publisher = await quiet_publisher(make)
    await publisher.publish_job_ready({"held": 1})  # held: nobody listens
    listener = make()
    got: list[NotifyEvent] = []
    arrived: dict[str, float] = {}

    def record(event: NotifyEvent) -> None:
        got.append(event)
        arrived.setdefault(event.payload, time.monotonic())

    await listener.subscribe(record, kinds=("job_ready",))
    assert [e.kind for e in got] == ["resync"]  # it polls: "held" is found there
    assert publisher._audience.quiet  # the publisher does not know yet
    published = time.monotonic()
    await publisher.publish_job_ready({"after": 2})
    # the next count sees the listener: the hint and its budget go out
    await until(lambda: "after" in of(got, "job_ready"), timeout=10)
    assert arrived["after"] - published < EVERY + 1.0, arrived["after"] - published
    assert not publisher._audience.quiet
    assert await publisher.flush(30)  # NATS: a lone listener's event goes before its budget
    assert [await budget_answer(listener, ["after"]) for _ in range(3)] == [True, True, False]
    # from now on a hint goes at once
    await publisher.publish_job_ready({"next": 1})
    await until(lambda: "next" in of(got, "job_ready"), timeout=EVERY)


async def test_a_subscriber_of_the_publisher_itself_ends_holding_at_once(make: Make) -> None:
    publisher = await quiet_publisher(make)
    await publisher.publish_job_ready({"held": 1})
    assert publisher._audience.held == 1
    got: list[NotifyEvent] = []
    await publisher.subscribe(got.append, kinds=("job_ready",))
    assert not publisher._audience.quiet and publisher._audience.held == 0  # sent
    await until(lambda: "held" in of(got, "job_ready"), timeout=EVERY)


async def test_a_worker_that_starts_late_misses_no_job(
    make: Callable[..., BrokerNotifier], dsn: str
) -> None:
    """Chains started while no worker listened (their hints dropped), then a
    worker whose poll is a minute away: its subscription's resync finds the
    first ones, the publisher's hints wake it for the later ones, each
    within the bound, not the poll."""
    publisher = await quiet_publisher(make)
    worker = fast(dsn, notifier=make(), poll_interval=60)
    ran: dict[str, float] = {}

    @worker.handler("late")
    async def late(job: JobContext[str]) -> str:
        ran[job.input] = time.monotonic()
        return job.input

    with psycopg.connect(dsn, autocommit=True) as conn:

        def start(name: str) -> float:
            with queuert.transaction_hooks(publisher):
                queuert.start_chain(conn, "late", name)
            return time.monotonic()

        for i in range(3):
            start(f"before{i}")
        await until(lambda: publisher._audience.idle)
        assert publisher.skipped >= 1  # nobody listened: dropped
        async with running(worker):
            await eventually(lambda: len(ran) == 3, timeout=10)  # the resync's poll
            await eventually(lambda: asleep(worker))
            started = [start(f"after{i}") for i in range(3)]
            try:
                await eventually(lambda: len(ran) == 6, timeout=10)
            except AssertionError:
                a = publisher._audience
                raise AssertionError((sorted(ran), a.quiet, a.held, a.rounds, a.skipped, worker.stats.as_dict()))
    for i, at in enumerate(started):
        assert ran[f"after{i}"] - at < EVERY + 1.5, (ran[f"after{i}"] - at, publisher._audience.rounds)
