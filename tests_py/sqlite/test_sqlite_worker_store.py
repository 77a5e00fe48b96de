"""The worker's SQLite store (queuert._worker.sqlite_store) on a real file:
a flush writes every kind of acknowledgement and claims in one
transaction, refusals come back typed, an atomic attempt is one
transaction, and a wait for the write lock happens off the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest

import queuert._sqlite as qs
from queuert import continue_with
from queuert._worker.outcomes import Ack, Completed, Continued, Failed, Released
from queuert._worker.sqlite_store import SqliteStore
from queuert._worker.store import Conflict, ConnectionLost, JobLost, Rejected
from queuert.errors import ChainNotFoundError
from queuert.job import JobContext


def _store(path: str, *, worker_id: str = "w1", types: tuple[str, ...] = ("t",), busy: float = 5.0) -> SqliteStore:
    return SqliteStore(
        f"sqlite:///{path}?busy_timeout={busy}", schema="queuert", worker_id=worker_id,
        type_names=list(types), lease=timedelta(seconds=30),
    )


def _job(row: tuple[Any, ...]) -> JobContext[Any]:
    job: JobContext[Any] = JobContext()
    job.id, job.type_name, job.chain_id = row[0], row[1], row[2]
    job.attempt = row[7]
    return job


def _status(path: str, job_id: UUID) -> tuple[Any, ...]:
    c = sqlite3.connect(path)
    try:
        return c.execute(
            "SELECT status, attempt, leased_by, output FROM queuert_job WHERE id = ?", (str(job_id),)
        ).fetchone()
    finally:
        c.close()


def test_one_flush_writes_every_kind_and_claims(db_path: str) -> None:
    conn = qs.connect(db_path)
    qs.set_job_type(conn, "t", backoff_initial=timedelta(0))
    blocker = qs.start_chain(conn, "t", {"n": 0})
    waiting = qs.start_chain(conn, "later", None, blockers=[blocker["chain_id"]])
    for n in range(1, 6):
        qs.start_chain(conn, "t", {"n": n})

    async def main() -> None:
        store = _store(db_path)
        session = await store.open("main")
        first = await session.claim(4)
        assert [r[5] for r in first] == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}], "claim order"
        assert first[0][14] < first[1][14], "seq comes back for claim order"
        jobs = [_job(r) for r in first]
        written = await session.flush(
            [
                Ack(jobs[0], Completed('{"ok": 1}')),
                Ack(jobs[1], Continued(continue_with("t", {"n": 10}))),
                Ack(jobs[2], Failed("boom", None, timedelta(0))),
                Ack(jobs[3], Released()),
            ],
            2,
        )
        assert [a.job.id for a in written.done] == [j.id for j in jobs]
        assert written.lost == [] and written.chains == [str(jobs[0].chain_id)]
        assert written.unblocked == {"later": 1}, "the completion unblocked the fan-in"
        assert written.ready == {"t": 3}, "continuation, retry and release made three t jobs pending"
        assert len(written.claimed) == 2, "and claimed in the same transaction"
        await session.close()

    asyncio.run(main())
    assert _status(db_path, blocker["id"]) == ("completed", 1, None, '{"ok": 1}')
    assert _status(db_path, waiting["id"])[0] == "pending"


def test_lost_and_refused_acknowledgements(db_path: str) -> None:
    conn = qs.connect(db_path)
    for n in range(3):
        qs.start_chain(conn, "t", {"n": n})

    async def main() -> None:
        session = await _store(db_path).open("main")
        jobs = [_job(r) for r in await session.claim(3)]
        # another worker took the first one (reaped and reclaimed)
        conn.execute("UPDATE queuert_job SET leased_by = 'w2' WHERE id = ?", (str(jobs[0].id),))
        written = await session.flush([Ack(jobs[0], Completed(None)), Ack(jobs[1], Completed(None))], 0)
        assert [(a.job.id, why) for a, why in written.lost] == [(jobs[0].id, "taken")]
        assert [a.job.id for a in written.done] == [jobs[1].id]
        with pytest.raises(JobLost):
            await session.acknowledge(Ack(jobs[0], Continued(continue_with("t", None))))
        bad = Ack(jobs[2], Continued(continue_with("t", None, blockers=[UUID(int=5)])))
        with pytest.raises(Rejected) as refused:
            await session.flush([bad, Ack(jobs[1], Completed(None))], 1)
        assert isinstance(refused.value.error, ChainNotFoundError)
        assert _status(db_path, jobs[2].id)[0] == "running", "nothing of the refused flush was written"
        await session.close()

    asyncio.run(main())


def test_a_wait_for_the_write_lock_leaves_the_loop_free(db_path: str) -> None:
    qs.start_chain(qs.connect(db_path), "t", None)
    holder = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another process's writer, say

    async def main() -> None:
        session = await _store(db_path).open("main")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        tick = asyncio.create_task(ticker())
        claim = asyncio.create_task(session.claim(1))
        await asyncio.sleep(0.3)
        assert not claim.done(), "the claim waits for the lock"
        seen = ticks
        assert seen >= 10, "the loop kept running meanwhile"
        holder.execute("COMMIT")
        rows = await claim
        assert len(rows) == 1
        tick.cancel()
        await session.close()

    asyncio.run(main())


def test_the_lock_held_past_the_busy_timeout_is_a_conflict(db_path: str) -> None:
    qs.start_chain(qs.connect(db_path), "t", None)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")

    async def main() -> None:
        session = await _store(db_path, busy=0.2).open("main")
        t0 = time.monotonic()
        with pytest.raises(Conflict, match="locked by another connection"):
            await session.claim(1)
        assert time.monotonic() - t0 >= 0.2
        atomic = await _store(db_path, busy=0.1).open_atomic()
        assert await atomic.open_attempt(["t"], None) == (None, None), "an atomic slot finds nothing to do"
        await atomic.close()
        await session.close()

    asyncio.run(main())
    holder.execute("ROLLBACK")


def test_an_atomic_attempt_is_one_transaction(db_path: str) -> None:
    conn = qs.connect(db_path)
    conn.execute("CREATE TABLE effect (job_id TEXT, attempt INTEGER)")
    first = qs.start_chain(conn, "t", None)
    second = qs.start_chain(conn, "t", None)

    async def main() -> None:
        session = await _store(db_path).open_atomic()
        assert session.transaction_state() == "idle"
        _, row = await session.open_attempt(["t"], None)
        assert row is not None and row[0] == first["id"] and session.transaction_state() == "open"
        job = _job(row)
        session.lend(job)
        job.conn.execute("INSERT INTO effect VALUES (?, ?)", (str(job.id), job.attempt))
        assert _status(db_path, job.id)[0] == "pending", "nothing is visible before the commit"
        # a failure undoes the handler's write and is recorded in the same transaction
        written = await session.acknowledge(Ack(job, Failed("no", datetime.now(timezone.utc) + timedelta(hours=1))), True)
        assert [a.job.id for a in written.done] == [job.id]
        assert session.transaction_state() == "idle"
        assert _status(db_path, job.id)[:2] == ("pending", 1)

        _, row = await session.open_attempt(["t"], None)
        assert row is not None and row[0] == second["id"]
        job = _job(row)
        session.lend(job)
        job.conn.execute("INSERT INTO effect VALUES (?, ?)", (str(job.id), job.attempt))
        # the previous acknowledgement is carried into the next claim
        written, nothing = await session.open_attempt(["t"], (Ack(job, Completed('"done"')), False))
        assert written is not None and [a.job.id for a in written.done] == [job.id]
        assert nothing is None and session.transaction_state() == "idle"
        await session.close()

    asyncio.run(main())
    assert conn.execute("SELECT job_id FROM effect").fetchall() == [(str(second["id"]),)]
    assert _status(db_path, second["id"])[0] == "completed"


def test_a_sync_slot_interrupted_at_shutdown_commits_nothing(db_path: str) -> None:
    conn = qs.connect(db_path)
    conn.execute("CREATE TABLE effect (job_id TEXT)")
    started = qs.start_chain(conn, "t", None)
    store = _store(db_path)
    session = store.open_atomic_sync()
    row = session.open_attempt(["t"])
    assert row is not None
    job = _job(row)
    session.lend(job)
    job.conn.execute("INSERT INTO effect VALUES (?)", (str(row[0]),))

    async def shut() -> None:
        await store.interrupt([session.backend_id])

    done = threading.Event()
    threading.Thread(target=lambda: (asyncio.run(shut()), done.set())).start()
    assert done.wait(5)
    with pytest.raises(Exception, match="released at shutdown"):
        session.acknowledge(Ack(job, Completed(None)), False)
    session.close()
    assert _status(db_path, started["id"])[:2] == ("pending", 0), "the claim rolled back with the rest"
    assert conn.execute("SELECT count(*) FROM effect").fetchone() == (0,)


def test_a_missing_or_uninstalled_file_is_said_clearly(tmp_path: Any) -> None:
    async def main() -> None:
        with pytest.raises(ConnectionLost) as lost:  # the worker retries with backoff, saying why
            await _store(str(tmp_path / "nope.db")).open("main")
        assert "queuert migrate --dsn sqlite:///" in str(lost.value)
        assert not (tmp_path / "nope.db").exists(), "the worker creates no file"
        plain = tmp_path / "plain.db"
        sqlite3.connect(plain).execute("CREATE TABLE x (y)")
        with pytest.raises(ConnectionLost, match="not in WAL mode"):
            await _store(str(plain)).open("main")

    asyncio.run(main())


def test_the_handler_savepoint_and_busy_timeout_come_with_its_first_use_of_job_conn(db_path: str) -> None:
    """An attempt whose handler never touches job.conn runs no SAVEPOINT and
    no PRAGMA (nothing to undo, no lock to wait for); one that does gets
    both before its first statement: its writes are undone by a failure,
    and after ending the transaction itself it waits for the write lock
    within the busy timeout like any connection."""
    conn = qs.connect(db_path)
    conn.execute("CREATE TABLE effect (job_id TEXT)")
    quiet, used, committing = (qs.start_chain(conn, "t", None) for _ in range(3))

    async def main() -> None:
        session = await _store(db_path, busy=5.0).open_atomic()
        ran: list[str] = []
        session.wc.conn.set_trace_callback(ran.append)

        _, row = await session.open_attempt(["t"], None)
        assert row is not None and row[0] == quiet["id"]
        job = _job(row)
        session.lend(job)
        written = await session.acknowledge(Ack(job, Failed("no", None)), True)
        assert [a.job.id for a in written.done] == [job.id]
        assert not [s for s in ran if "SAVEPOINT" in s or "PRAGMA" in s], ran

        ran.clear()
        _, row = await session.open_attempt(["t"], None)
        assert row is not None and row[0] == used["id"]
        job = _job(row)
        session.lend(job)
        job.conn.execute("INSERT INTO effect VALUES (?)", (str(job.id),))
        assert job.conn.execute("PRAGMA busy_timeout").fetchone() == (5000,)
        await session.acknowledge(Ack(job, Failed("no", None)), True)
        assert "SAVEPOINT queuert_handler" in ran and "ROLLBACK TO queuert_handler" in ran
        assert conn.execute("SELECT count(*) FROM effect").fetchone() == (0,), "the failure undid the write"

        ran.clear()
        _, row = await session.open_attempt(["t"], None)
        assert row is not None and row[0] == committing["id"]
        assert "PRAGMA busy_timeout = 0" in ran, "the worker's own calls never wait on the loop"
        job = _job(row)
        session.lend(job)
        job.conn.execute("COMMIT")  # the handler ends the attempt's transaction itself
        holder = sqlite3.connect(db_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        outcome: list[object] = []

        def write() -> None:  # the handler's next statement, which needs the lock
            try:
                job.conn.execute("INSERT INTO effect VALUES (?)", (str(job.id),))
                outcome.append("written")
            except sqlite3.Error as e:
                outcome.append(e)

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(0.2)
        assert outcome == [], "it waits for the lock (a busy timeout of zero would have failed at once)"
        holder.execute("ROLLBACK")
        writer.join(10)
        assert outcome == ["written"]
        holder.close()
        await session.close()

    asyncio.run(main())
    assert conn.execute("SELECT job_id FROM effect").fetchall() == [(str(committing["id"]),)]
