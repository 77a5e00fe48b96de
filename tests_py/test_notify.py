"""Notify adapters: PostgreSQL LISTEN/NOTIFY and in-process."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from queuert import aio
from queuert.notify import InProcessNotifier, NotifyEvent, PostgresNotifier


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def kinds(events: list[NotifyEvent], kind: str) -> list[str]:
    return [e.payload for e in events if e.kind == kind]


async def test_postgres_notifier_delivers_only_after_commit(dsn: str) -> None:
    notifier = PostgresNotifier(dsn, health_interval=0.5)
    events: list[NotifyEvent] = []
    await notifier.subscribe(events.append)
    await until(lambda: kinds(events, "resync") == [""])
    conn = await psycopg.AsyncConnection.connect(dsn)
    other = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        started = await aio.start_chain(conn, "pg-notified")
        # a chain committed after it: its notification arriving proves the
        # uncommitted one would have arrived by now, had it been sent
        await aio.start_chain(other, "marker")
        await until(lambda: kinds(events, "job_ready") == ["marker"])
        await conn.commit()
        await until(lambda: kinds(events, "job_ready") == ["marker", "pg-notified"])
        await aio.start_chain(conn, "rolled-back")
        await conn.rollback()
        # complete from outside: chain_completed
        await aio.complete_chain(conn, started.chain_id, {"done": True})
        await conn.commit()
        await until(lambda: kinds(events, "chain_completed") == [str(started.chain_id)])
        assert "rolled-back" not in kinds(events, "job_ready")
    finally:
        await conn.close()
        await other.close()
        await notifier.close()


async def test_postgres_notifier_job_lost_and_type_filter(dsn: str) -> None:
    notifier = PostgresNotifier(dsn)
    events: list[NotifyEvent] = []
    await notifier.subscribe(events.append, type_names=["wanted"])
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        await aio.start_chain(conn, "unwanted")
        job = await aio.start_chain(conn, "wanted")
        await until(lambda: kinds(events, "job_ready") == ["wanted"])
        cur = await conn.execute("SELECT id FROM queuert.claim('w1', ARRAY['wanted'])")
        assert (await cur.fetchone()) == (job.id,)
        await aio.cancel_chains(conn, [job.chain_id])
        await until(lambda: kinds(events, "job_lost") == [str(job.id)])
        assert kinds(events, "job_ready") == ["wanted"]
    finally:
        await conn.close()
        await notifier.close()


async def test_postgres_notifier_reconnects_and_resyncs(dsn: str) -> None:
    notifier = PostgresNotifier(dsn, reconnect_initial=0.01)
    events: list[NotifyEvent] = []
    sub = await notifier.subscribe(events.append)
    pid = notifier.listen_pid
    assert pid is not None
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await until(lambda: len(kinds(events, "resync")) == 2)
        assert notifier.connections == 2 and notifier.listen_pid not in (None, pid)
        await aio.start_chain(conn, "after-reconnect")
        await until(lambda: kinds(events, "job_ready") == ["after-reconnect"])
        await sub.close()
        assert notifier.listen_pid is None  # last subscriber gone: LISTEN closed
    finally:
        await conn.close()
        await notifier.close()


async def test_postgres_notifier_publish_is_a_no_op(dsn: str) -> None:
    notifier = PostgresNotifier(dsn)
    events: list[NotifyEvent] = []
    await notifier.subscribe(events.append)
    await notifier.publish_job_ready(["x"])
    await notifier.publish_chain_completed(["y"])
    await notifier.publish_job_lost(["z"])
    # a notification committed after the publish calls: once it is here,
    # anything they had sent would be here too
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await aio.start_chain(conn, "marker")
    await until(lambda: kinds(events, "job_ready") == ["marker"])
    await notifier.close()
    assert [(e.kind, e.payload) for e in events] == [("resync", ""), ("job_ready", "marker")]


async def test_in_process_notifier_delivers_on_the_subscriber_loop() -> None:
    notifier = InProcessNotifier()
    events: list[tuple[NotifyEvent, threading.Thread]] = []
    sub = await notifier.subscribe(
        lambda e: events.append((e, threading.current_thread())), kinds=("job_ready", "job_lost")
    )
    loop_thread = threading.current_thread()

    def publish_from_thread() -> None:
        asyncio.run(notifier.publish_job_ready(["a", "a", "b"]))

    t = threading.Thread(target=publish_from_thread)
    t.start()
    t.join()
    await notifier.publish_chain_completed(["filtered-out"])
    await notifier.publish_job_lost(["j1"])
    await until(lambda: len(events) == 4)
    assert [(e.kind, e.payload) for e, _ in events] == [
        ("resync", ""),
        ("job_ready", "a"),
        ("job_ready", "b"),
        ("job_lost", "j1"),
    ]
    assert all(th is loop_thread for _, th in events)
    witness: list[str] = []
    await notifier.subscribe(lambda e: witness.append(e.payload))
    await sub.close()
    await notifier.publish_job_ready(["after-close"])
    # delivered to the subscriber still open: the closed one was passed over
    await until(lambda: "after-close" in witness)
    assert len(events) == 4


async def test_subscribe_rejects_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="unknown notify event kinds"):
        await InProcessNotifier().subscribe(lambda e: None, kinds=("job_readyy",))


async def test_a_failing_listener_does_not_break_delivery(caplog: pytest.LogCaptureFixture) -> None:
    notifier = InProcessNotifier()
    good: list[str] = []
    bad_calls: list[str] = []

    def bad(e: NotifyEvent) -> None:
        bad_calls.append(e.kind)
        raise RuntimeError("listener bug")

    with caplog.at_level(logging.ERROR, logger="queuert.notify"):
        await notifier.subscribe(bad)
        await notifier.subscribe(lambda e: good.append(e.kind))
        await notifier.publish_job_ready(["t"])
        await notifier.publish_job_lost(["j"])
        await until(lambda: good == ["resync", "job_ready", "job_lost"])
    # the failing listener was called for every event (it stays subscribed
    # after raising), and each failure was logged, not swallowed silently
    assert bad_calls == ["resync", "job_ready", "job_lost"]
    failures = [r for r in caplog.records if "notify listener" in r.getMessage()]
    assert len(failures) == 3 and all(r.exc_info and "listener bug" in str(r.exc_info[1]) for r in failures)
    await notifier.close()
