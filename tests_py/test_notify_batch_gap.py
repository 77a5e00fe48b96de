"""Broker notifiers space their batches of hints ``batch_gap`` apart: a hint
after a quiet spell goes out at once, hints that follow a batch within the
gap go out together at its end (one message per type, the budget counts
added up). Redis standalone through the direct writer thread, Redis Cluster
and NATS through the I/O thread's pump."""

from __future__ import annotations

import asyncio
import time

from notify_brokers import budget_answer
from test_notify_brokers import Make, cluster_ports, make, of, until  # noqa: F401  (fixtures)

from queuert.notify import NotifyEvent
from queuert.notify.redis import RedisNotifier

GAP = 4.0  # long enough that "at once" cannot be the gap's end


async def test_hints_within_the_gap_go_out_as_one_batch(make: Make) -> None:
    publisher, listener = make(batch_gap=GAP), make()
    got: list[NotifyEvent] = []
    await listener.subscribe(got.append, kinds=("job_ready",), type_names=["first", "burst"])
    if isinstance(publisher, RedisNotifier) and publisher._direct is not None:
        # the writer's connection is made on first use (that hint takes the
        # I/O thread's way): have it before, so that every hint below takes one path
        await publisher.publish_job_ready({"warm-up": 1})
        await until(lambda: publisher._direct is not None and publisher._direct.connected)
    await publisher.publish_job_ready({"first": 1})
    # a quiet spell before it: sent at once, not at a gap's end
    await until(lambda: of(got, "job_ready") == ["first"], timeout=GAP - 0.5)
    for _ in range(5):  # within the gap of "first"'s batch, yet apart (no gap: five batches)
        await asyncio.sleep(0.05)
        await publisher.publish_job_ready({"burst": 1})
    assert await publisher.flush(GAP + 30)
    await until(lambda: "burst" in of(got, "job_ready"))
    assert of(got, "job_ready") == ["first", "burst"]  # one message for the five
    # ... and their units added up (asked by the publisher, which listens to nothing)
    assert [await budget_answer(publisher, ["burst"]) for _ in range(6)] == [True] * 5 + [False]


async def test_a_stream_of_hints_widens_the_gap_and_a_quiet_gap_narrows_it(make: Make) -> None:
    base, most = 0.04, 0.64
    publisher, listener = make(batch_gap=base, max_batch_gap=most), make()
    got: list[NotifyEvent] = []
    arrived: dict[str, float] = {}

    def record(event: NotifyEvent) -> None:
        got.append(event)
        arrived.setdefault(event.payload, time.monotonic())

    await listener.subscribe(record, kinds=("job_ready",), type_names=["stream", "after", "after2"])
    if isinstance(publisher, RedisNotifier) and publisher._direct is not None:
        await publisher.publish_job_ready({"warm-up": 1})  # the writer's connection first (as above)
        await until(lambda: publisher._direct is not None and publisher._direct.connected)
    published, end = 0, time.monotonic() + 1.2
    while time.monotonic() < end:  # a stream: a hint every 10 ms
        await publisher.publish_job_ready({"stream": 1})
        published += 1
        await asyncio.sleep(0.01)
    assert await publisher.flush(30)
    # a fixed 40 ms gap: a message per 40 ms (about 30); doubling to 0.64 s:
    # 0.04 + 0.08 + 0.16 + 0.32 + 0.64 s cover the stream in about six
    await until(lambda: len(of(got, "job_ready")) >= 2)
    messages = of(got, "job_ready").count("stream")
    assert 2 <= messages <= 12, messages
    # every unit arrived all the same (asked by the publisher, which listens to nothing)
    answers = [await budget_answer(publisher, ["stream"]) for _ in range(published + 1)]
    assert answers == [True] * published + [False]
    # a quiet gap: the next hint goes at once, and the one after it waits the
    # base gap again, not the widest
    await asyncio.sleep(most + 0.3)
    await publisher.publish_job_ready({"after": 1})
    await asyncio.sleep(0.01)
    await publisher.publish_job_ready({"after2": 1})
    await until(lambda: "after2" in arrived)
    assert arrived["after2"] - arrived["after"] < most - 0.2
