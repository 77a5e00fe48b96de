"""An atomic slot on SQLite picks its job and writes the claim only when it
matters (queuert/_worker/sqlite_slots.py): a completion whose handler never
used ``job.conn`` is one UPDATE with the end state of claim + completion; a
handler that uses ``job.conn`` sees its job running first; any other
outcome writes the claim, then the outcome; and a job that is no longer as
it was picked is reported lost, never written."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import timedelta
from typing import Any
from uuid import UUID

import queuert._sqlite as qs
from queuert._worker.outcomes import Ack, Completed, Failed
from queuert._worker.sqlite_store import SqliteStore
from queuert.job import JobContext

#: the columns a completion leaves (ids, times and seq differ between jobs)
_END = (
    "status, attempt, output, completed_by, leased_by, leased_until, last_attempt_error,"
    " chain_completed_at IS NOT NULL, completed_at IS NOT NULL, open_blockers"
)


def _store(path: str) -> SqliteStore:
    return SqliteStore(
        f"sqlite:///{path}", schema="queuert", worker_id="w1", type_names=["t"], lease=timedelta(seconds=30)
    )


def _job(row: tuple[Any, ...]) -> JobContext[Any]:
    job: JobContext[Any] = JobContext()
    job.id, job.type_name, job.chain_id = row[0], row[1], row[2]
    job.attempt = row[7]
    return job


def _row(conn: sqlite3.Connection, job_id: UUID, columns: str = _END) -> tuple[Any, ...]:
    found = conn.execute(f"SELECT {columns} FROM queuert_job WHERE id = ?", (str(job_id),)).fetchone()
    assert found is not None
    return tuple(found)


def test_a_completion_without_job_conn_is_one_update_with_the_claims_end_state(db_path: str) -> None:
    conn = qs.connect(db_path)
    by_slot = qs.start_chain(conn, "t", None)
    by_engine = qs.start_chain(conn, "u", None)
    # the engine's two steps, as the slot wrote them before: claim, then complete
    with qs.transaction(conn):
        (claimed,) = qs.claim(conn, "w1", ["u"])
        qs.complete_jobs(conn, "w1", [claimed["id"]], ["done"], attempts=[claimed["attempt"]])

    async def main() -> None:
        session = await _store(db_path).open_atomic()
        ran: list[str] = []
        session.wc.conn.set_trace_callback(ran.append)
        _, row = await session.open_attempt(["t"], None)
        assert row is not None and row[0] == by_slot["id"] and row[7] == 1
        assert _row(conn, by_slot["id"], "status, attempt") == ("pending", 0), "nothing is written yet"
        job = _job(row)
        session.lend(job)
        written = await session.acknowledge(Ack(job, Completed('"done"')), False)
        assert [a.job.id for a in written.done] == [job.id]
        assert written.chains == [str(by_slot["chain_id"])]
        code = [" ".join(line for line in s.splitlines() if not line.lstrip().startswith("--")) for s in ran]
        assert [s.split()[0].upper() for s in code] == ["BEGIN", "SELECT", "UPDATE", "COMMIT"], code
        await session.close()

    asyncio.run(main())
    assert _row(conn, by_slot["id"]) == _row(conn, by_engine["id"])
    assert _row(conn, by_slot["id"])[:4] == ("completed", 1, '"done"', "w1")


def test_a_handler_using_job_conn_sees_its_job_running(db_path: str) -> None:
    conn = qs.connect(db_path)
    started = qs.start_chain(conn, "t", None)

    async def main() -> None:
        session = await _store(db_path).open_atomic()
        _, row = await session.open_attempt(["t"], None)
        assert row is not None
        job = _job(row)
        session.lend(job)
        seen = _row(job.conn, job.id, "status, attempt, leased_by, leased_until")
        leased_until = row[10]
        assert seen[:3] == ("running", 1, "w1")
        assert seen[3] == (leased_until - qs._values.EPOCH) // timedelta(microseconds=1), "the lease the claim gave"
        written = await session.acknowledge(Ack(job, Completed(None)), False)
        assert [a.job.id for a in written.done] == [job.id]
        await session.close()

    asyncio.run(main())
    assert _row(conn, started["id"], "status, attempt, leased_by") == ("completed", 1, None)


def test_a_failure_writes_the_claim_then_the_failure(db_path: str) -> None:
    conn = qs.connect(db_path)
    started = qs.start_chain(conn, "t", None)

    async def main() -> None:
        session = await _store(db_path).open_atomic()
        _, row = await session.open_attempt(["t"], None)
        assert row is not None
        job = _job(row)
        session.lend(job)
        written = await session.acknowledge(Ack(job, Failed("boom", None, timedelta(hours=1))), True)
        assert [a.job.id for a in written.done] == [job.id]
        await session.close()

    asyncio.run(main())
    assert _row(conn, started["id"], "status, attempt, leased_by, last_attempt_error") == (
        "pending", 1, None, "boom"
    ), "the attempt is spent, as with the claim written first"


def test_a_picked_job_changed_meanwhile_is_reported_lost_and_left_alone(db_path: str) -> None:
    """A handler that kept an earlier attempt's ``job.conn`` changes the next
    job behind the slot's back (no first-use hook fires for it): the
    completion finds the job not as picked and writes nothing."""
    conn = qs.connect(db_path)
    first = qs.start_chain(conn, "t", None)
    second = qs.start_chain(conn, "t", None)

    async def main() -> None:
        session = await _store(db_path).open_atomic()
        _, row = await session.open_attempt(["t"], None)
        assert row is not None and row[0] == first["id"]
        job = _job(row)
        session.lend(job)
        kept = job.conn  # the handler keeps it past its attempt
        await session.acknowledge(Ack(job, Completed(None)), False)

        _, row = await session.open_attempt(["t"], None)
        assert row is not None and row[0] == second["id"]
        job = _job(row)
        session.lend(job)
        qs.cancel_chains(kept, [second["chain_id"]])  # in the slot's open transaction
        written = await session.acknowledge(Ack(job, Completed('"late"')), False)
        assert written.done == [] and [(a.job.id, why) for a, why in written.lost] == [(job.id, "finished")]
        await session.close()

    asyncio.run(main())
    assert _row(conn, second["id"], "status, attempt, output") == ("cancelled", 0, None)



def test_a_dependent_added_after_the_pick_is_resolved_by_the_completion(db_path: str) -> None:
    """The completion trusts what the pick read of the job's chain (is it
    waited on?) only while nothing was written on the connection since: a
    handler that kept an earlier attempt's ``job.conn`` and starts a chain
    waiting on this job's chain makes it read again, and the dependent is
    unblocked with the completion."""
    conn = qs.connect(db_path)
    qs.start_chain(conn, "t", None)
    second = qs.start_chain(conn, "t", None)

    async def main() -> UUID:
        session = await _store(db_path).open_atomic()
        _, row = await session.open_attempt(["t"], None)
        assert row is not None
        job = _job(row)
        session.lend(job)
        kept = job.conn
        await session.acknowledge(Ack(job, Completed(None)), False)

        _, row = await session.open_attempt(["t"], None)
        assert row is not None and row[0] == second["id"]
        job = _job(row)
        session.lend(job)
        waiting = qs.start_chain(kept, "report", None, blockers=[second["chain_id"]])
        assert waiting["status"] == "blocked"
        written = await session.acknowledge(Ack(job, Completed(None)), False)
        assert [a.job.id for a in written.done] == [job.id] and written.unblocked == {"report": 1}
        await session.close()
        return UUID(str(waiting["id"]))

    waiting_id = asyncio.run(main())
    assert _row(conn, waiting_id, "status, open_blockers") == ("pending", 0)


def test_an_async_slot_runs_awaiting_and_failing_handlers_on_the_short_path(db_path: str) -> None:
    """The worker's short path (queuert/_worker/atomic_lean.py): a handler
    that awaits is resumed in its slot with its attempt's hooks block still
    current; one that fails takes the usual path (the claim written, the
    failure recorded); the rest complete in one UPDATE each."""
    import queuert
    from queuert.hooks import current_hooks

    conn = qs.connect(db_path)
    qs.set_job_type(conn, "t", backoff_initial=timedelta(hours=1))
    chains = [qs.start_chain(conn, "t", {"i": i})["chain_id"] for i in range(30)]
    worker = queuert.Worker(f"sqlite:///{db_path}", mode="atomic", concurrency=1, poll_interval=0.05)
    seen: list[bool] = []

    @worker.handler("t")
    async def handle(job: queuert.JobContext[Any]) -> Any:
        i = job.input["i"]
        if i % 3 == 1:
            before = current_hooks()
            await asyncio.sleep(0.005)
            seen.append(before is not None and current_hooks() is before)
        if i % 3 == 2:
            raise ValueError(f"no {i}")
        return {"i": i}

    async def run() -> None:
        task = asyncio.create_task(worker.run_async())
        for _ in range(400):
            if worker.stats.completed + worker.stats.failed >= 30:
                break
            await asyncio.sleep(0.025)
        worker.stop()
        await task

    asyncio.run(run())
    assert seen == [True] * 10
    assert (worker.stats.completed, worker.stats.failed) == (20, 10)
    rows = {
        r[0]: r[1:]
        for r in conn.execute("SELECT chain_id, status, attempt, output, last_attempt_error FROM queuert_job")
    }
    for i, chain_id in enumerate(chains):
        status, attempt, output, error = rows[str(chain_id)]
        if i % 3 == 2:
            assert (status, attempt, output) == ("pending", 1, None) and error.startswith(f"ValueError: no {i}")
        else:
            assert (status, attempt, json.loads(output), error) == ("completed", 1, {"i": i}, None)
