"""A broker notifier's subscriptions are read on the subscribers' own event
loops (queuert.notify._loop_listeners): one broker subscription per loop,
shared by that loop's listeners, each listener called on its loop's thread
without a hop through the notifier's I/O thread; a loop's subscriber may
leave from another loop, the notifier's close stops every loop's
subscription, and a forked child subscribes afresh. Real servers: Redis,
Redis Cluster (three nodes of our own) and NATS with JetStream."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from queuert.notify import NotifyEvent
from queuert.notify.broker import BrokerNotifier

from test_notify_brokers import Make, cluster_ports, make, of  # noqa: F401  (fixtures)


async def until_async(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    async def checked() -> bool:
        return check()

    await until_async(checked, timeout)


def listeners_on_broker(notifier: BrokerNotifier) -> Callable[[], Awaitable[int | None]]:
    """How many job_ready subscriptions the broker has (PUBSUB NUMSUB over
    the nodes, or a NATS roll call), asked on the notifier's I/O loop."""

    async def count() -> int | None:
        return await notifier._on_io(notifier._count_listeners())

    return count


class LoopThread:
    """An event loop running in a thread of its own (a second worker thread)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="second-loop", daemon=True)
        self.thread.start()

    async def run(self, coro: Awaitable[Any]) -> Any:
        async def wrapped() -> Any:
            return await coro

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(wrapped(), self.loop))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def test_each_loop_reads_its_own_subscription_on_its_own_thread(make: Make) -> None:
    publisher, notifier = make(), make()
    count = listeners_on_broker(publisher)
    second = LoopThread()
    here: list[tuple[NotifyEvent, threading.Thread]] = []
    there: list[tuple[NotifyEvent, threading.Thread]] = []
    try:
        await notifier.subscribe(lambda e: here.append((e, threading.current_thread())), kinds=("job_ready",))
        await notifier.subscribe(lambda e: here.append((e, threading.current_thread())), kinds=("job_ready",))
        sub_there = await second.run(
            notifier.subscribe(lambda e: there.append((e, threading.current_thread())), kinds=("job_ready",))
        )
        # one connection per loop, shared by that loop's two listeners
        assert notifier.connections == 2
        await until_async(lambda: _equals(count, 2))
        await publisher.publish_job_ready(["t"])
        await until(lambda: of([e for e, _ in here], "job_ready") == ["t", "t"])
        await until(lambda: of([e for e, _ in there], "job_ready") == ["t"])
        # every listener ran on its own loop's thread, never the notifier's
        assert {t for _, t in here} == {threading.current_thread()}
        assert {t for _, t in there} == {second.thread}
        # the second loop's listener leaves, closed from this loop: its
        # loop's subscription goes (nobody there wants events), ours stays
        await sub_there.close()
        await until_async(lambda: _equals(count, 1))
        await publisher.publish_job_ready(["u"])
        await until(lambda: of([e for e, _ in here], "job_ready") == ["t", "t", "u", "u"])
        assert of([e for e, _ in there], "job_ready") == ["t"]
        # a listener that comes back to that loop gets a new subscription
        again: list[NotifyEvent] = []
        await second.run(notifier.subscribe(again.append, kinds=("job_ready",)))
        # (its first connection delivered resync before subscribe returned)
        assert notifier.connections == 3 and again == [NotifyEvent("resync", "")]
        await publisher.publish_job_ready(["v"])
        await until(lambda: of(again, "job_ready") == ["v"])
        # closing the notifier (from this loop) stops both loops' subscriptions
        await notifier.close()
        await until_async(lambda: _equals(count, 0))
        assert notifier._loop_listeners.get(second.loop) is None
    finally:
        await notifier.close()
        second.close()


async def _equals(count: Callable[[], Awaitable[int | None]], expected: int) -> bool:
    return await count() == expected


async def test_a_forked_child_subscribes_on_its_own_loop(make: Make) -> None:
    publisher, notifier = make(), make()
    got: list[NotifyEvent] = []
    await notifier.subscribe(got.append, kinds=("job_ready",))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's loop, thread and connections are not its own
        os.close(read)
        code = 1
        try:
            heard: list[NotifyEvent] = []

            async def child() -> None:
                await notifier.subscribe(heard.append, kinds=("job_ready",))
                os.write(write, b"s")  # subscribed: the parent publishes now
                await until(lambda: of(heard, "job_ready") == ["forked"], timeout=20)
                await notifier.close()

            # a thread of its own: the forking thread's loop still looks running here
            runner = threading.Thread(target=lambda: asyncio.run(child()))
            runner.start()
            runner.join(30)
            code = 0 if of(heard, "job_ready") == ["forked"] and heard[0].kind == "resync" else 2
        finally:
            os._exit(code)
    os.close(write)
    try:
        ready = await asyncio.get_running_loop().run_in_executor(None, os.read, read, 1)
        assert ready == b"s", "the child did not subscribe"
        await publisher.publish_job_ready(["forked"])
        _, status = await asyncio.get_running_loop().run_in_executor(None, os.waitpid, pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # the parent's subscription was left alone by the child
        await until(lambda: of(got, "job_ready") == ["forked"])
    finally:
        os.close(read)
