"""Broker outages: each test runs its own redis-server / nats-server on a
spare port, stops it mid-run and starts it again. Publishing never raises
(a warning, the hints dropped), wake hints fall back to "claim", the
subscriber reconnects with backoff and sends ``resync``, and a worker loses
no job."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from queuert import aio
from queuert.job import JobContext
from queuert.notify import NotifyEvent
from queuert.notify.broker import BrokerNotifier
from queuert.notify.nats import NatsNotifier
from queuert.notify.redis import RedisNotifier

from notify_brokers import Server, budget_answer, own_nats, own_redis, unique_prefix
from test_worker import DB, db, fast, running  # noqa: F401 - fixture

BROKERS = ["redis", "nats"]


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> Iterator[tuple[Server, Callable[..., BrokerNotifier]]]:
    made: list[BrokerNotifier] = []
    prefix = unique_prefix()
    with (own_redis() if request.param == "redis" else own_nats()) as server:

        def factory(**options: Any) -> BrokerNotifier:
            options.setdefault("prefix", prefix)
            options.setdefault("reconnect_max", 0.5)
            notifier: BrokerNotifier
            if request.param == "redis":
                notifier = RedisNotifier(f"redis://127.0.0.1:{server.port}/0", **options)
            else:
                notifier = NatsNotifier(f"nats://127.0.0.1:{server.port}", **options)
            made.append(notifier)
            return notifier

        yield server, factory
        for notifier in made:
            asyncio.run(notifier.close())


async def until(check: Callable[[], Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def of(events: list[NotifyEvent], kind: str) -> list[str]:
    return [e.payload for e in events if e.kind == kind]


async def test_outage_drops_hints_quietly_and_the_subscriber_resyncs(
    broker: tuple[Server, Callable[..., BrokerNotifier]], caplog: pytest.LogCaptureFixture
) -> None:
    server, make = broker
    publisher, subscriber = make(), make()
    got: list[NotifyEvent] = []
    await subscriber.subscribe(got.append)
    await publisher.publish_job_ready(["before"])
    await until(lambda: of(got, "job_ready") == ["before"])
    assert await budget_answer(subscriber, ["before"]) is True

    caplog.set_level(logging.INFO, logger="queuert.notify")
    await asyncio.to_thread(server.stop)
    # publishing returns at once and never raises; the hint is dropped
    for i in range(5):
        await publisher.publish_job_ready([f"down-{i}"])
        await publisher.publish_chain_completed([f"chain-{i}"])
    assert await publisher.flush(30)
    await until(lambda: publisher.dropped >= 1)
    publish_warnings = [r for r in caplog.records if "publishing failed" in r.getMessage()]
    assert len(publish_warnings) == 1 and publish_warnings[0].levelno == logging.WARNING  # once per outage
    # no budget store: every woken worker claims (what the take itself
    # answered: a lone subscriber would claim without asking anyway)
    assert await budget_answer(subscriber, ["before"]) is True
    await until(lambda: any("subscription lost" in r.getMessage() for r in caplog.records))
    assert of(got, "resync") == [""]

    await asyncio.to_thread(server.start)
    await until(lambda: len(of(got, "resync")) == 2)  # back, and told to re-read
    assert subscriber.connections == 2
    assert not [e for e in got if e.payload.startswith(("down-", "chain-"))]
    await publisher.publish_job_ready({"after": 1})
    await until(lambda: "after" in of(got, "job_ready"))
    assert await budget_answer(subscriber, ["after"]) is True  # the unit is spent, even when alone
    # budgets are back too (asked by the publisher, which listens to nothing)
    assert await publisher.take_wake_hint(["after"]) is False
    assert any("publishing works again" in r.getMessage() for r in caplog.records)
    assert any("subscribed again" in r.getMessage() for r in caplog.records)


async def test_subscribing_while_the_broker_is_down_returns_and_connects_later(
    broker: tuple[Server, Callable[..., BrokerNotifier]],
) -> None:
    server, make = broker
    await asyncio.to_thread(server.stop)
    notifier = make()
    got: list[NotifyEvent] = []
    await asyncio.wait_for(notifier.subscribe(got.append), 30)  # returns after the first failed attempt
    assert got == [] and notifier.connections == 0
    await asyncio.to_thread(server.start)
    await until(lambda: of(got, "resync") == [""])
    await notifier.publish_job_lost(["j"])
    await until(lambda: of(got, "job_lost") == ["j"])


async def test_worker_loses_no_job_across_a_broker_restart(
    broker: tuple[Server, Callable[..., BrokerNotifier]], dsn: str, db: DB
) -> None:
    server, make = broker
    notifier = make()
    worker = fast(dsn, notifier=notifier, concurrency=4, poll_interval=0.5)
    done: list[int] = []

    @worker.handler("step")
    async def step(job: JobContext[int]) -> Any:
        return job.continue_with("last", job.input)

    @worker.handler("last")
    async def last(job: JobContext[int]) -> int:
        done.append(job.input)
        return job.input

    producer = make()
    chains = []
    async with running(worker):
        for i in range(10):
            chains.append((await aio.start_chain(db.conn, "step", i)).chain_id)
        await producer.publish_job_ready(["step"])
        await asyncio.to_thread(server.stop)
        for i in range(10, 20):  # started during the outage: found by polling
            chains.append((await aio.start_chain(db.conn, "step", i)).chain_id)
            await producer.publish_job_ready(["step"])
        for c in chains[:15]:
            await aio.wait_for_chain(db.conn, c, timeout=60)
        await asyncio.to_thread(server.start)
        await until(lambda: notifier.connections >= 2)
        for i in range(20, 30):
            chains.append((await aio.start_chain(db.conn, "step", i)).chain_id)
            await producer.publish_job_ready(["step"])
        for c in chains:
            await aio.wait_for_chain(db.conn, c, timeout=60)
    assert sorted(done) == list(range(30))
    rows = await db.all("SELECT status::text, count(*) FROM queuert.job GROUP BY 1")
    assert rows == [("completed", 60)]


async def test_a_take_waits_for_a_stalled_broker_as_long_as_hint_timeout_says(
    broker: tuple[Server, Callable[..., BrokerNotifier]],
) -> None:
    """hint_timeout beyond the client's own timeouts (Redis: send_timeout,
    the client's socket timeout; NATS: JetStream's 2 s) is honoured: the
    take waits that long for a stalled broker, then claims."""
    server, make = broker
    hint_timeout = 3.0
    notifier = make(send_timeout=1.0, hint_timeout=hint_timeout)
    assert await notifier.take_wake_hint(["stalled"]) is False  # connected, the budget empty
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)  # stalled: connections stay open, nothing answers
    await until(lambda: _state(server) == "T")
    try:
        started = time.monotonic()
        assert await notifier.take_wake_hint(["stalled"]) is True  # fail open: claim
        waited = time.monotonic() - started
    finally:
        server.proc.send_signal(signal.SIGCONT)
    assert hint_timeout - 0.3 <= waited < hint_timeout + 5.0, waited


def _state(server: Server) -> str:
    """The process state letter of a server (T: stopped)."""
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
