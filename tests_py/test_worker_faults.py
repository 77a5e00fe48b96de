"""Staged-mode workers under real faults: nothing here writes an engine row
or a worker attribute to stage a failure. A lease really expires (its
renewal is held up on the wire by tests_py/faults.py's proxy) and another
worker really reaps it; a claim really commits while its reply is lost; the
notification publisher's connection is really cut with a batch in hand.
Only public API, database reads, logs and faults are used.

The kill -9 of a staged worker with hundreds of jobs in flight is in
test_worker_process_faults.py (it needs a process to kill).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

import queuert
from faults import FaultProxy
from queuert import aio
from queuert.job import JobContext
from test_worker import DB, db, eventually, fast, running  # noqa: F401 - fixture
from test_worker_notify import listening, notifications_settled


async def _fired(fault: Any, timeout: float = 30.0) -> bool:
    return await asyncio.to_thread(fault.wait, timeout)


async def _leased_by(db: DB, ids: list[UUID], worker_id: str | None) -> bool:
    rows = await db.all("SELECT leased_by FROM queuert.job WHERE id = ANY(%s)", (ids,))
    return len(rows) == len(ids) and all(r[0] == worker_id for r in rows)


async def test_a_lease_that_expires_for_real_is_reaped_elsewhere_and_renewal_answers_taken(
    dsn: str, db: DB
) -> None:
    """Worker A's lease renewal is held on the wire (the server renewed once,
    A never hears back and cannot renew again), so its leases run out for
    real. Worker B reaps them and runs the jobs. When the wire flows again,
    A's next renewal answers ``taken``: A cancels its async handler, its sync
    handler sees ``job.lease_lost``, and the late outcome it returns is
    discarded. B's outcome is the one that stays."""
    b_started: dict[str, int] = {}
    b_gate = asyncio.Event()
    a_started: set[str] = set()
    a_cancelled = asyncio.Event()
    a_sync_reason: list[str | None] = []
    a_sync_returned = threading.Event()

    with FaultProxy(dsn) as proxy:
        renewal_held = proxy.stall_replies(b"renew_leases(")
        # prefetch 0 and two slots for two jobs: A claims nothing else while
        # its handlers hold the slots (it cannot take the jobs back from B)
        a = fast(proxy.dsn(dsn), concurrency=2, prefetch=0, lease=timedelta(seconds=2), renew_interval=0.2)
        b = fast(dsn, concurrency=2, lease=timedelta(seconds=60), reap_interval=0.2)

        @a.handler("lease-async")
        async def a_async(job: JobContext[Any]) -> Any:
            a_started.add("async")
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                a_cancelled.set()
                raise
            return "never"

        @a.handler("lease-sync")
        def a_sync(job: JobContext[Any]) -> Any:
            a_started.add("sync")
            try:
                job.lease_lost.wait(120)
                a_sync_reason.append(job.lease_lost.reason)
                return "late outcome of A"  # must be discarded
            finally:
                a_sync_returned.set()

        async def b_handler(job: JobContext[Any]) -> Any:
            b_started[job.type_name] = job.attempt
            await b_gate.wait()
            return f"B at attempt {job.attempt}"

        b.handler("lease-async", b_handler)
        b.handler("lease-sync", b_handler)

        ids = [await db.start("lease-async"), await db.start("lease-sync")]
        async with running(a):
            await eventually(lambda: a_started == {"async", "sync"})
            assert await _fired(renewal_held)  # A's renewal went out; its answer is held
            async with running(b):
                # A cannot renew: the leases expire, B reaps and claims them
                await eventually(lambda: len(b_started) == 2, timeout=30)
                assert await _leased_by(db, ids, b.worker_id)
                assert not a_cancelled.is_set() and not a_sync_returned.is_set()
                renewal_held.release()  # A hears the stale answer, then renews again
                await asyncio.wait_for(a_cancelled.wait(), 30)
                assert await asyncio.to_thread(a_sync_returned.wait, 30)
                assert a_sync_reason == ["lease renewal: taken"]
                b_gate.set()
                for chain in ids:
                    await eventually(lambda chain=chain: _completed(db, chain))
    rows = await db.all(
        "SELECT type_name, status::text, attempt, completed_by, output FROM queuert.job ORDER BY type_name"
    )
    assert rows == [
        ("lease-async", "completed", 2, b.worker_id, "B at attempt 2"),
        ("lease-sync", "completed", 2, b.worker_id, "B at attempt 2"),
    ]
    assert b.stats.reaped == 2  # the reap was B's: A's maintenance connection was held up
    # A lost both once and wrote nothing: an outcome sent and refused would
    # count as lost a second time
    assert a.stats.lost == 2 and a.stats.completed == 0 and a.stats.failed == 0


async def _completed(db: DB, chain_id: UUID) -> bool:
    return await db.chain_status(chain_id) == "completed"


async def test_a_claim_whose_reply_is_lost_gives_its_jobs_back_without_spending_an_attempt(
    dsn: str, db: DB, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker's first claim commits, then its reply is dropped and the
    connection cut. The jobs it leased are running under this worker, which
    never heard of them; with a 60 s lease they would wait a minute. The
    worker reconnects, finds them by its id and gives them back with
    release_jobs (attempt taken back): each job runs once, at attempt 1,
    although its type allows only one attempt."""
    caplog.set_level(logging.INFO, logger="queuert.worker")
    await db.set_type("orphan", max_attempts=1)
    n = 12
    await aio.start_chains(db.conn, [queuert.ChainSpec("orphan", i) for i in range(n)])
    ran: list[tuple[int, int]] = []
    with FaultProxy(dsn) as proxy:
        lost = proxy.lose_commit_reply(b".claim(worker_id")
        worker = fast(proxy.dsn(dsn), concurrency=4, prefetch=0, lease=timedelta(seconds=60))

        @worker.handler("orphan")
        async def orphan(job: JobContext[Any]) -> Any:
            ran.append((job.input, job.attempt))
            return job.input

        async with running(worker):
            assert await _fired(lost)
            # far less than the 60 s lease: the jobs were given back, not reaped
            await eventually(lambda: worker.stats.completed == n, timeout=30)
        assert proxy.lost_replies == 1
    given_back = [r for r in caplog.records if "claimed before a lost connection" in r.getMessage()]
    assert given_back, "the lost claim leased no job: the fault proved nothing"
    assert sorted(ran) == [(i, 1) for i in range(n)]  # each ran once, as attempt 1
    rows = await db.all("SELECT status::text, attempt, last_attempt_error, count(*) FROM queuert.job GROUP BY 1, 2, 3")
    assert rows == [("completed", 1, None, n)]
    assert worker.stats.reconnects >= 1 and worker.stats.claimed == n and worker.stats.reaped == 0


async def test_the_publishers_connection_cut_with_a_batch_in_hand_sends_it_again(dsn: str, db: DB) -> None:
    """The connection carrying the publisher's first pg_notify statement is
    cut before the server reads it: the publisher reconnects and sends that
    batch again; every chain_completed arrives exactly once."""
    with FaultProxy(dsn) as proxy:
        cut = proxy.cut_before(b"pg_notify(")
        worker = fast(proxy.dsn(dsn), concurrency=2)

        @worker.handler("one")
        async def one(job: JobContext[Any]) -> Any:
            return job.input

        async with listening(dsn) as listener:
            chains = [(await aio.start_chain(db.conn, "one", i)).chain_id for i in range(6)]
            async with running(worker):
                for c in chains:
                    await aio.wait_for_chain(db.conn, c, timeout=30)
                assert await _fired(cut)
            # the worker stopped, its publisher sent what it had: once our
            # own later notification arrives, every earlier one has
            await notifications_settled(db.conn, listener)
        assert cut.fired.is_set() and proxy.accepted >= 2
    assert sorted(listener.payloads("queuert_chain_completed")) == sorted(str(c) for c in chains)


async def test_a_batch_the_publisher_cannot_send_is_dropped_as_a_hint_and_work_goes_on(
    dsn: str, db: DB, caplog: pytest.LogCaptureFixture
) -> None:
    """Both tries of one batch are cut: the publisher logs the loss (hints
    only) and the worker goes on; the next batch is sent on a new connection,
    and every job completes (nothing waits for a hint)."""
    caplog.set_level(logging.WARNING, logger="queuert.worker")
    with FaultProxy(dsn) as proxy:
        first, second = proxy.cut_before(b"pg_notify("), proxy.cut_before(b"pg_notify(")
        worker = fast(proxy.dsn(dsn), concurrency=2)

        @worker.handler("one")
        async def one(job: JobContext[Any]) -> Any:
            return job.input

        async with listening(dsn) as listener:
            async with running(worker):
                early = (await aio.start_chain(db.conn, "one", 0)).chain_id
                await aio.wait_for_chain(db.conn, early, timeout=30)
                assert await _fired(first) and await _fired(second)
                await eventually(lambda: _logged_publish_failure(caplog), timeout=10)
                later = [(await aio.start_chain(db.conn, "one", i)).chain_id for i in range(1, 6)]
                for c in later:
                    await aio.wait_for_chain(db.conn, c, timeout=30)
            await notifications_settled(db.conn, listener)
    completed = listener.payloads("queuert_chain_completed")
    assert set(completed) >= {str(c) for c in later}  # published after the failed batch
    assert str(early) not in completed  # its batch was the one dropped
    assert await db.all("SELECT status::text, count(*) FROM queuert.job GROUP BY 1") == [("completed", 6)]


def _logged_publish_failure(caplog: pytest.LogCaptureFixture) -> bool:
    return any("publishing" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)
