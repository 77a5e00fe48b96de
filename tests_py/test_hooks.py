"""Transaction hooks: after-commit callbacks and notifications, dropped on rollback."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
import pytest

import queuert
from queuert import aio
from queuert.hooks import current_hooks
from queuert.notify import InProcessNotifier, NotifyEvent


def job_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM queuert.job").fetchone()
    assert row is not None
    return int(row[0])


def test_callbacks_run_after_commit_in_order(conn: psycopg.Connection[Any]) -> None:
    seen: list[Any] = []
    with queuert.transaction_hooks() as hooks:
        assert current_hooks() is hooks
        with conn.transaction():
            queuert.start_chain(conn, "hooked", {"a": 1})
            hooks.add(lambda: seen.append(("first", job_count_other(conn))))
            hooks.add(lambda: seen.append("second"))
            assert seen == []
        assert seen == []  # committed, but the hooks block is still open
    assert current_hooks() is None
    assert seen == [("first", 1), "second"]


def job_count_other(conn: psycopg.Connection[Any]) -> int:
    # read from a fresh connection: the row must be committed already
    with psycopg.connect(conn.info.dsn) as other:
        return job_count(other)


def test_rollback_drops_callbacks_and_notifications(conn: psycopg.Connection[Any]) -> None:
    seen: list[str] = []
    with pytest.raises(RuntimeError):
        with queuert.transaction_hooks() as hooks:
            with conn.transaction():
                queuert.start_chain(conn, "hooked")
                hooks.add(lambda: seen.append("ran"))
                hooks.job_ready("hooked")
                raise RuntimeError("rollback")
    assert seen == []
    assert hooks.pending == ([], [], [], [])
    assert job_count(conn) == 0


def test_nested_blocks_defer_to_the_outermost(conn: psycopg.Connection[Any]) -> None:
    seen: list[str] = []
    with queuert.transaction_hooks() as outer:
        with conn.transaction():
            with queuert.transaction_hooks() as inner:
                inner.add(lambda: seen.append("inner"))
            assert seen == []  # the outer transaction has not committed yet
            with pytest.raises(ValueError):
                with queuert.transaction_hooks() as failed:
                    failed.add(lambda: seen.append("dropped"))
                    raise ValueError
            assert current_hooks() is outer
            outer.add(lambda: seen.append("outer"))
    assert seen == ["inner", "outer"]


def test_a_failing_callback_does_not_stop_the_others(
    conn: psycopg.Connection[Any], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def boom() -> None:
        raise KeyError("nope")

    with caplog.at_level(logging.ERROR, logger="queuert.hooks"):
        with queuert.transaction_hooks() as hooks:
            hooks.add(boom)
            hooks.add(lambda: seen.append("after"))
    assert seen == ["after"]
    assert any("after-commit callback" in r.getMessage() for r in caplog.records)


async def test_async_block_awaits_async_callbacks_and_publishes(dsn: str) -> None:
    notifier = InProcessNotifier()
    events: list[NotifyEvent] = []
    sub = await notifier.subscribe(events.append, kinds=("job_ready", "chain_completed"))
    await asyncio.sleep(0.01)
    events.clear()  # the initial resync
    seen: list[str] = []

    async def cb() -> None:
        await asyncio.sleep(0)
        seen.append("async")

    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        async with queuert.transaction_hooks(notifier) as hooks:
            async with conn.transaction():
                for i in range(3):  # one notification per type, not per row
                    await aio.start_chain(conn, "typed-a", i)
                await aio.start_chain(conn, "typed-b")
                hooks.add(cb)
                hooks.chain_completed("00000000-0000-0000-0000-000000000001")
            assert events == [] and seen == []
        await asyncio.sleep(0.01)
    finally:
        await conn.close()
        await sub.close()
    assert seen == ["async"]
    assert [(e.kind, e.payload) for e in events] == [
        ("job_ready", "typed-a"),
        ("job_ready", "typed-b"),
        ("chain_completed", "00000000-0000-0000-0000-000000000001"),
    ]


async def test_sync_block_inside_a_running_loop_publishes_in_the_background(
    conn: psycopg.Connection[Any],
) -> None:
    notifier = InProcessNotifier()
    events: list[NotifyEvent] = []
    sub = await notifier.subscribe(events.append, kinds=("job_ready",))
    with queuert.transaction_hooks(notifier):
        with conn.transaction():
            queuert.start_chain(conn, "from-sync")
    for _ in range(100):
        if any(e.kind == "job_ready" for e in events):
            break
        await asyncio.sleep(0.01)
    await sub.close()
    assert [e.payload for e in events if e.kind == "job_ready"] == ["from-sync"]


def test_sync_block_without_loop_runs_async_callbacks_to_completion() -> None:
    seen: list[str] = []

    async def cb() -> None:
        seen.append("done")

    with queuert.transaction_hooks() as hooks:
        hooks.add(cb)
    assert seen == ["done"]
