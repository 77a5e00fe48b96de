"""The SQLite engine's notifications: the events PostgreSQL sends with
pg_notify (job_ready, chain_completed, job_lost) go to the active
transaction hooks, published after commit, dropped on rollback."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

import queuert._sqlite as qs
from queuert import transaction_hooks
from queuert.notify.base import NotifyEvent
from queuert.notify.inprocess import InProcessNotifier


def test_each_operation_announces_what_pg_notify_would(db_path: str) -> None:
    conn = qs.connect(db_path)
    with transaction_hooks() as hooks:
        blocker = qs.start_chain(conn, "child")["id"]
        qs.start_chain(conn, "later", schedule_after=timedelta(hours=1))
        qs.start_chain(conn, "parent", blockers=[blocker])
        qs.start_chains(conn, [{"type_name": "batch"}] * 3)
        _callbacks, ready, completed, lost = hooks.pending
    assert ready == ["child", "later", "batch"], "pending jobs, due now or later; not the blocked one"
    assert completed == [] and lost == []

    with transaction_hooks() as hooks:
        qs.claim(conn, "w", ["child"])
        qs.complete(conn, blocker, "w", "done")
        _callbacks, ready, completed, lost = hooks.pending
    assert ready == ["parent"], "the dependent a completion unblocked"
    assert completed == [str(blocker)]

    with transaction_hooks() as hooks:
        running = qs.claim(conn, "w", ["batch"])[0]["id"]
        qs.fail(conn, running, None, "stop")
        other = qs.claim(conn, "w", ["batch"])[0]["id"]
        qs.cancel_chains(conn, [other])
        _callbacks, ready, completed, lost = hooks.pending
    assert lost == [str(running), str(other)], "running jobs failed or cancelled from outside"
    assert ready == ["batch"]


def test_reap_and_release_announce_lost_and_ready_jobs(db_path: str) -> None:
    conn = qs.connect(db_path)
    qs.start_chains(conn, [{"type_name": "t"}, {"type_name": "u"}])
    reaped = qs.claim(conn, "w", ["t"], lease=timedelta(microseconds=1))[0]["id"]
    released = qs.claim(conn, "w", ["u"])[0]["id"]
    with transaction_hooks() as hooks:
        assert [r["job_id"] for r in qs.reap(conn)] == [reaped]
        qs.release_jobs(conn, "w", [released])
        _callbacks, ready, _completed, lost = hooks.pending
    assert lost == [str(reaped)] and ready == ["t", "u"]


async def test_a_notifier_gets_them_after_commit_and_nothing_after_rollback(db_path: str) -> None:
    notifier = InProcessNotifier()
    seen: list[tuple[str, str]] = []
    arrived = asyncio.Event()

    def listen(event: NotifyEvent) -> None:
        if event.kind != "resync":
            seen.append((event.kind, event.payload))
            arrived.set()

    await notifier.subscribe(listen)
    conn = qs.connect(db_path)
    with pytest.raises(RuntimeError):
        async with transaction_hooks(notifier):
            with qs.transaction(conn):
                qs.start_chain(conn, "rolled-back")
                raise RuntimeError("the signup failed")
    async with transaction_hooks(notifier):
        with qs.transaction(conn):
            qs.start_chain(conn, "committed")
    await asyncio.wait_for(arrived.wait(), 10)
    assert seen == [("job_ready", "committed")]
