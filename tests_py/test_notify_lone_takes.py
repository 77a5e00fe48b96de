"""Broker work kept off a wake-up's claim: a lone listener's units are owed
and taken together, later (queuert.notify._lone_takes), a NATS producer's
top-up follows its event later (queuert.notify._later_top_ups), and counts
of listeners start a moment after the hint that asked (COUNT_AFTER); against
the real shared servers and a Redis Cluster of our own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from queuert.notify._alone import COUNT_AFTER
from queuert.notify.broker import BrokerNotifier
from queuert.notify.nats import NatsNotifier

from notify_brokers import NATS_URL, unique_prefix
from test_notify_brokers import Make, cluster_ports, drop_bucket, make, until  # noqa: F401  (fixtures)


@pytest.fixture
async def nats_pair() -> AsyncIterator[tuple[NatsNotifier, NatsNotifier]]:
    """A NATS publisher and a lone listener on this test's prefix."""
    prefix = unique_prefix()
    publisher, listener = NatsNotifier(NATS_URL, prefix=prefix), NatsNotifier(NATS_URL, prefix=prefix)
    publisher._listeners.trust_for = 60.0
    try:
        await alone(listener)
        await publisher.publish_job_ready({"t": 1})  # counts the listeners meanwhile
        assert await publisher.flush()
        await until(lambda: publisher._listeners.value == 1)
        assert await listener._on_io(listener._take_up_to(["t"], 10)) == 1
        yield publisher, listener
    finally:
        await publisher.close()
        await listener.close()
        await drop_bucket(f"{prefix}-wake-hints")


async def alone(worker: BrokerNotifier) -> None:
    """Subscribed, and its own count says it is the only listener."""
    worker._listeners.trust_for = 60.0  # a loaded machine must not age the count
    await worker.subscribe(lambda e: None, kinds=("job_ready",))

    def counted() -> bool:
        worker._listeners.alone()  # starts the count when there is none yet
        return worker._listeners.value == 1

    await until(counted)


def count_calls(owner: Any, name: str, started: list[float] | None = None) -> list[tuple[Any, ...]]:
    """The arguments of every call of ``owner.<name>`` (a coroutine function)
    from now on, and when each started in ``started``."""
    calls: list[tuple[Any, ...]] = []
    real = getattr(owner, name)

    async def spy(*args: Any) -> Any:
        if started is not None:
            started.append(time.monotonic())
        calls.append(args)
        return await real(*args)

    setattr(owner, name, spy)
    return calls


async def test_take_up_to_takes_the_first_types_units_first(make: Make) -> None:
    notifier = make()
    await notifier.publish_job_ready({"a": 1, "b": 3})
    assert await notifier.flush()
    assert await notifier._on_io(notifier._take_up_to(["a", "b"], 3)) == 3
    assert await notifier._on_io(notifier._take_up_to(["a", "b"], 5)) == 1  # b's last
    assert await notifier._on_io(notifier._take_up_to(["a", "b"], 1)) == 0
    assert await notifier.take_wake_hint(["a", "b"]) is False


async def test_lone_wake_ups_owe_their_units_and_one_call_takes_them(make: Make) -> None:
    publisher, worker = make(), make(lone_take_delay=0.3)
    await alone(worker)
    await publisher.publish_job_ready({"t": 2})
    assert await publisher.flush()
    calls = count_calls(worker, "_take_up_to")
    said: list[bool] = []
    # three wake-ups within the delay: each claims at once, nothing asked yet
    answers = [await worker.take_wake_hint_or_defer(["t"], said.append) for _ in range(3)]
    assert answers == [None, None, None]
    assert said == [] and worker._lone.busy
    await until(lambda: len(said) == 3 and not worker._lone.busy)
    # one broker call for the three; the budget had two units
    assert calls == [(["t"], 3)]
    assert said == [True, True, False]
    assert await publisher.take_wake_hint(["t"]) is False


async def test_flush_takes_what_a_lone_listener_owes_at_once(make: Make) -> None:
    publisher, worker = make(), make(lone_take_delay=60.0)
    await alone(worker)
    await publisher.publish_job_ready({"t": 1})
    assert await publisher.flush()
    said: list[bool] = []
    assert await worker.take_wake_hint_or_defer(["t"], said.append) is None
    assert await worker.flush()  # not 60 s later
    assert said == [True]
    assert await publisher.take_wake_hint(["t"]) is False


async def test_a_closing_notifier_takes_what_it_owes(make: Make) -> None:
    publisher, worker = make(), make(lone_take_delay=60.0)
    await alone(worker)
    await publisher.publish_job_ready({"t": 2})
    assert await publisher.flush()
    said: list[bool] = []
    assert await worker.take_wake_hint_or_defer(["t"], said.append) is None
    await worker.close()
    assert said == [True]
    assert await publisher.take_wake_hint(["t"]) is True  # the other unit, left
    assert await publisher.take_wake_hint(["t"]) is False


async def test_nats_events_go_first_and_their_top_ups_follow_together(
    nats_pair: tuple[NatsNotifier, NatsNotifier],
) -> None:
    publisher, listener = nats_pair
    top_ups = count_calls(publisher, "_top_up_later")
    first = publisher.events_first
    for _ in range(5):
        await publisher.publish_job_ready({"t": 1})
        await asyncio.sleep(0.001)
    assert await publisher.flush()  # every batch sent, and what its top-ups owe
    assert publisher.events_first >= first + 1 and not publisher._later.pending
    # the events went first (one batch or more); their units followed in
    # fewer top-ups (one per 10 ms window) and none was lost
    assert 1 <= len(top_ups) < 5
    assert sum(ready["t"] for (ready,) in top_ups) == 5
    assert await listener._on_io(listener._take_up_to(["t"], 10)) == 5


async def test_nats_flush_sends_a_top_up_that_waits(nats_pair: tuple[NatsNotifier, NatsNotifier]) -> None:
    publisher, listener = nats_pair
    publisher._later.delay = 60.0
    first = publisher.events_first
    await publisher.publish_job_ready({"t": 1})
    assert await publisher.flush()  # sends it now, not in a minute
    assert publisher.events_first == first + 1
    assert await listener._on_io(listener._take_up_to(["t"], 10)) == 1


async def test_background_counts_start_after_the_wake_up_that_asked(make: Make) -> None:
    """A count of listeners (the publisher's audience, a listener's own) is
    asked for by a hint going out or a worker waking; it starts COUNT_AFTER
    later, not beside that wake-up's claim."""
    publisher, listener = make(), make()
    started: list[float] = []
    count_calls(publisher._audience, "_count", started)
    asked = time.monotonic()
    await publisher.publish_job_ready({"t": 1})  # the first hint arms a count
    await until(lambda: started)
    assert started[0] - asked >= COUNT_AFTER

    await listener.subscribe(lambda e: None, kinds=("job_ready",))
    counts = listener._listeners
    await until(lambda: counts.alone() or counts.value is not None)
    counted: list[float] = []
    count_calls(counts, "_count", counted)
    await until(lambda: not counts._refreshing)
    counts.at -= 10.0  # stale: the next take asks for a new count
    asked = time.monotonic()
    counts.alone()
    await until(lambda: counted)
    assert counted[0] - asked >= COUNT_AFTER


async def test_a_process_that_exits_owing_units_takes_them() -> None:
    """No close(): the interpreter's exit takes what a lone listener owes,
    so the budget it leaves behind is right."""
    import subprocess
    import sys
    import textwrap

    from queuert.notify.redis import RedisNotifier

    from notify_brokers import REDIS_URL

    prefix = unique_prefix()
    publisher = RedisNotifier(REDIS_URL, prefix=prefix)
    script = textwrap.dedent(
        f"""
        import asyncio
        from queuert.notify.redis import RedisNotifier

        notifier = RedisNotifier({REDIS_URL!r}, prefix={prefix!r}, lone_take_delay=60.0)

        async def main() -> None:
            notifier._listeners.trust_for = 60.0
            await notifier.subscribe(lambda e: None, kinds=("job_ready",))
            while not notifier._listeners.alone():
                await asyncio.sleep(0.01)
            assert await notifier.take_wake_hint_or_defer(["t"], lambda taken: None) is None
            assert notifier._lone.busy

        asyncio.run(main())
        """
    )
    try:
        await publisher.publish_job_ready({"t": 1})
        assert await publisher.flush()
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert await publisher.take_wake_hint(["t"]) is False  # taken at the child's exit
    finally:
        await publisher.close()
