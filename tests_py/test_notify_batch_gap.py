"""Broker notifiers space their batches of hints ``batch_gap`` apart: a hint
after a quiet spell goes out at once, hints that follow a batch within the
gap go out together at its end (one message per type, the budget counts
added up). Redis standalone through the direct writer thread, Redis Cluster
and NATS through the I/O thread's pump."""

from __future__ import annotations

import asyncio

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
