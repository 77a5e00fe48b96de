"""Transaction hooks drive every notifier after commit: notifiers that can
take hints without awaiting (broker, in-process) get them straight from a
sync caller (no event loop per transaction); any other notifier through its
coroutines."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

import psycopg

import queuert
from queuert.notify import InProcessNotifier, Notifier, NotifyEvent, NullNotifier, PostgresNotifier
from queuert.notify.base import ReadyTypes, ready_counts
from queuert.notify.redis import RedisNotifier

from notify_brokers import REDIS_URL, unique_prefix


class Recording(Notifier):
    """A third-party notifier with only the coroutines: records what it got
    and on which thread."""

    def __init__(self) -> None:
        super().__init__()
        self.got: list[tuple[str, Any, threading.Thread]] = []

    async def publish_job_ready(self, type_names: ReadyTypes) -> None:
        self.got.append(("job_ready", ready_counts(type_names), threading.current_thread()))

    async def publish_chain_completed(self, chain_ids: Iterable[str]) -> None:
        self.got.append(("chain_completed", list(chain_ids), threading.current_thread()))

    async def publish_job_lost(self, job_ids: Iterable[str]) -> None:
        self.got.append(("job_lost", list(job_ids), threading.current_thread()))


def test_a_coroutine_only_notifier_is_driven_from_sync_hooks(conn: psycopg.Connection[Any]) -> None:
    notifier = Recording()
    assert notifier.publish_nowait(["x"], [], []) is False  # the default: use the coroutines
    with queuert.transaction_hooks(notifier):
        with conn.transaction():
            started = queuert.start_chain(conn, "recorded")
            queuert.start_chain(conn, "recorded")
    with queuert.transaction_hooks(notifier):
        with conn.transaction():
            queuert.complete_chain(conn, started.chain_id, None)
    assert [(k, v) for k, v, _ in notifier.got] == [
        ("job_ready", {"recorded": 2}),  # one event, a budget of the two jobs started
        ("chain_completed", [str(started.chain_id)]),
    ]


def test_hooks_publish_how_many_jobs_became_ready(conn: psycopg.Connection[Any]) -> None:
    """The job_ready budget is the number of jobs the transaction made
    pending, per type: batches count each chain, nested blocks add theirs on
    success, a failed nested block (its savepoint rolled back) adds nothing,
    and a deduplicated start adds nothing."""
    notifier = InProcessNotifier()
    with queuert.transaction_hooks(notifier) as hooks:
        with conn.transaction():
            queuert.start_chains(conn, [queuert.ChainSpec("bulk", i) for i in range(5)])
            queuert.start_chain(conn, "one", None, dedup_key="k")
            queuert.start_chain(conn, "one", None, dedup_key="k")  # deduplicated: nothing new
            with queuert.transaction_hooks(notifier):
                with conn.transaction():
                    queuert.start_chain(conn, "bulk", 5)
            try:
                with queuert.transaction_hooks(notifier):
                    with conn.transaction():
                        queuert.start_chain(conn, "bulk", 6)
                        raise RuntimeError("roll the savepoint back")
            except RuntimeError:
                pass
            assert hooks.ready_counts == {"bulk": 6, "one": 1}
            assert hooks.pending[1] == ["bulk", "one"]
    taken = [asyncio.run(notifier.take_wake_hint(["bulk"])) for _ in range(7)]
    assert taken == [True] * 6 + [False]
    assert asyncio.run(notifier.take_wake_hint(["one"])) is True
    assert asyncio.run(notifier.take_wake_hint(["one"])) is False


def test_sync_hooks_hand_hints_to_a_broker_without_awaiting(conn: psycopg.Connection[Any]) -> None:
    publisher = RedisNotifier(REDIS_URL, prefix=unique_prefix())
    listener = InProcessNotifier()
    seen: list[NotifyEvent] = []
    try:
        for notifier in (publisher, listener):
            assert notifier.publish_nowait([], [], []) is True
        # they carry nothing (the engine's NOTIFY, or polling): taken at
        # once, no event loop started per commit for their empty coroutines
        for notifier in (NullNotifier(), PostgresNotifier("dbname=unused")):
            assert notifier.publish_nowait(["x"], ["c"], ["j"]) is True

        async def subscribe() -> None:
            await listener.subscribe(seen.append, kinds=("job_ready",))

        loop = asyncio.new_event_loop()
        loop.run_until_complete(subscribe())
        for notifier in (publisher, listener):
            with queuert.transaction_hooks(notifier):
                with conn.transaction():
                    queuert.start_chain(conn, "nowait")
        assert asyncio.run(publisher.flush())
        assert publisher.published == 1 and publisher.dropped == 0
        assert asyncio.run(publisher.take_wake_hint(["nowait"])) is True
        loop.run_until_complete(asyncio.sleep(0.05))  # the listener's loop runs its delivery
        assert [e.kind for e in seen] == ["resync", "job_ready"]
        assert asyncio.run(listener.take_wake_hint(["nowait"])) is True
        loop.close()
    finally:
        asyncio.run(publisher.close())


async def test_a_script_that_publishes_and_exits_still_sends_its_hint() -> None:
    """No close(), no flush(): the interpreter's exit sends what is buffered."""
    import subprocess
    import sys
    import textwrap

    prefix = unique_prefix()
    subscriber = RedisNotifier(REDIS_URL, prefix=prefix)
    seen: list[NotifyEvent] = []
    await subscriber.subscribe(seen.append, kinds=("job_ready",))
    script = textwrap.dedent(
        f"""
        import queuert
        from queuert.notify.redis import RedisNotifier

        notifier = RedisNotifier({REDIS_URL!r}, prefix={prefix!r})
        with queuert.transaction_hooks(notifier) as hooks:
            hooks.job_ready("from-a-script")
        """
    )
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stderr=subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"Task was destroyed" not in err
    try:
        for _ in range(500):
            if [e.payload for e in seen if e.kind == "job_ready"]:
                break
            await asyncio.sleep(0.01)
        assert [e.payload for e in seen if e.kind == "job_ready"] == ["from-a-script"]
    finally:
        await subscriber.close()
