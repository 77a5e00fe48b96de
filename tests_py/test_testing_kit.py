"""queuert.testing, used the way an application's tests use it: the plugin's
``queuert_dsn`` / ``queuert_conn`` fixtures, ``drain`` and the assertions.

Every feature the kit claims has a test here: a fresh migrated database per
test, a handler that fails (retried in a later round, retried at once with a
zero backoff, exhausted), a continuation (immediate and scheduled), a drain
that times out, atomic mode, the async twins, and the assertions inside and
outside a transaction (with savepoints).
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from typing import Any

import psycopg
import pydantic
import pytest

import queuert
from queuert import JobContext, JobType
from queuert.testing import (
    DrainTimeout,
    aassert_chain_started,
    aassert_no_chain_started,
    adrain,
    assert_chain_started,
    assert_no_chain_started,
    drain,
    started_chains,
)


@dataclasses.dataclass
class Signup:
    user_id: int


class Sent(pydantic.BaseModel):
    message_id: str


welcome = JobType("welcome", input=Signup, continues_with=lambda: [follow_up])
follow_up = JobType("follow-up", input=Signup, output=Sent)
flaky = JobType("flaky", input=int, output=int)

Conn = psycopg.Connection[Any]


def make_worker(**options: Any) -> queuert.Worker:
    worker = queuert.Worker(poll_interval=0.2, **options)

    @worker.handler(welcome)
    async def send_welcome(job: JobContext[Signup]) -> queuert.Continuation:
        return job.continue_with(follow_up, job.input)

    @worker.handler(follow_up)
    def send_follow_up(job: JobContext[Signup]) -> Sent:
        return Sent(message_id=f"m-{job.input.user_id}")

    return worker


def flaky_worker(fail_until: int, **options: Any) -> queuert.Worker:
    """``flaky`` fails its first ``fail_until - 1`` attempts, then doubles its input."""
    worker = queuert.Worker(poll_interval=0.2, **options)

    @worker.handler(flaky)
    async def run(job: JobContext[int]) -> int:
        if job.attempt < fail_until:
            raise RuntimeError(f"boom {job.attempt}")
        return job.input * 2

    return worker


def start(conn: Conn, job_type: JobType[Any, Any], value: Any, **kw: Any) -> queuert.StartedChain:
    with conn.transaction():
        return queuert.start_chain(conn, job_type, value, **kw)


def set_type(conn: Conn, name: str, **policy: Any) -> None:
    args = ", ".join(f"{k} => %({k})s" for k in policy)
    with conn.transaction():
        conn.execute(f"SELECT queuert.set_job_type(%(name)s, {args})", {"name": name, **policy})


# -- fixtures -------------------------------------------------------------------


def test_each_test_gets_a_fresh_migrated_database(queuert_dsn: str, queuert_conn: Conn) -> None:
    assert queuert_conn.info.dbname == psycopg.conninfo.conninfo_to_dict(queuert_dsn)["dbname"]
    assert not queuert_conn.autocommit
    assert queuert_conn.execute("SELECT count(*) FROM queuert.job").fetchone() == (0,)
    landed = queuert_conn.execute("SELECT count(*) FROM queuert.schema_migration").fetchone()
    assert landed is not None and landed[0] >= 2
    start(queuert_conn, welcome, Signup(1))  # left behind on purpose: the next test must not see it


def test_the_next_test_starts_empty(queuert_conn: Conn) -> None:
    assert queuert_conn.execute("SELECT count(*) FROM queuert.job").fetchone() == (0,)


# -- drain: continuations ----------------------------------------------------------


def test_drain_runs_a_chain_through_its_continuation(queuert_dsn: str, queuert_conn: Conn) -> None:
    chain = start(queuert_conn, welcome, Signup(7))
    worker = make_worker()

    result = drain(worker, dsn=queuert_dsn)

    assert result.outcomes == [("welcome", "continued"), ("follow-up", "completed")]
    first, second = result.attempts
    assert first.chain_id == second.chain_id == chain.chain_id
    assert first.continued_to == second.job_id and second.chain_index == 1
    assert second.output == {"message_id": "m-7"} and second.number == 1
    assert result.rounds == 1
    assert result.stats["completed"] == 1 and result.stats["continued"] == 1
    assert result.job(second.job_id).status == "completed"
    assert worker.conninfo is None  # the dsn was the worker's for the drain only
    assert not worker.running
    assert queuert.get_chain(queuert_conn, chain.chain_id).output == {"message_id": "m-7"}


def test_drain_leaves_scheduled_continuations_unless_asked(queuert_dsn: str, queuert_conn: Conn) -> None:
    later = JobType("later", input=int)
    worker = queuert.Worker(queuert_dsn, poll_interval=0.2)

    @worker.handler(later)
    async def run_later(job: JobContext[int]) -> queuert.Continuation | None:
        if job.input > 0:
            return job.continue_with(later, job.input - 1, schedule_after=timedelta(hours=3))
        return None

    start(queuert_conn, later, 1)
    first = drain(worker)
    assert first.outcomes == [("later", "continued")]  # the next step waits three hours

    second = drain(worker, with_scheduled=True)
    assert second.outcomes == [("later", "completed")]
    assert second.attempts[0].chain_index == 1
    assert drain(worker).attempts == ()  # nothing left


def test_drain_runs_jobs_of_its_types_only(queuert_dsn: str, queuert_conn: Conn) -> None:
    start(queuert_conn, welcome, Signup(1))
    start(queuert_conn, flaky, 2)
    result = drain(flaky_worker(fail_until=1), dsn=queuert_dsn)
    assert result.outcomes == [("flaky", "completed")]
    assert result.attempts[0].output == 4
    assert [j.type_name for j in started_chains(queuert_conn, in_transaction=False)] == ["welcome", "flaky"]
    assert queuert_conn.execute("SELECT status::text FROM queuert.job WHERE type_name = 'welcome'").fetchone() == (
        "pending",
    )


# -- drain: failing handlers -------------------------------------------------------


def test_a_failing_handler_waits_for_its_backoff_then_with_retries_runs_again(
    queuert_dsn: str, queuert_conn: Conn
) -> None:
    start(queuert_conn, flaky, 21)
    worker = flaky_worker(fail_until=2)

    first = drain(worker, dsn=queuert_dsn)  # default backoff: 10 s, so one attempt
    (failed,) = first.attempts
    assert failed.outcome == "failed" and failed.number == 1
    assert failed.error is not None and failed.error.startswith("RuntimeError: boom 1")
    assert failed.retry_at is not None
    assert first.stats["failed"] == 1

    second = drain(worker, dsn=queuert_dsn, with_retries=True)
    assert second.outcomes == [("flaky", "completed")]
    assert second.attempts[0].number == 2 and second.attempts[0].output == 42


def test_with_retries_every_attempt_and_its_error_is_reported(queuert_dsn: str, queuert_conn: Conn) -> None:
    start(queuert_conn, flaky, 5)
    result = drain(flaky_worker(fail_until=4), dsn=queuert_dsn, with_retries=True)
    assert result.outcomes == [("flaky", "failed")] * 3 + [("flaky", "completed")]
    assert [a.number for a in result.attempts] == [1, 2, 3, 4]
    assert [a.error.split("\n")[0] if a.error else None for a in result.attempts] == [
        "RuntimeError: boom 1", "RuntimeError: boom 2", "RuntimeError: boom 3", None,
    ]
    assert result.rounds == 4


def test_zero_backoff_retries_run_in_one_round(queuert_dsn: str, queuert_conn: Conn) -> None:
    set_type(queuert_conn, "flaky", backoff_initial=timedelta(0))
    start(queuert_conn, flaky, 5)
    result = drain(flaky_worker(fail_until=3), dsn=queuert_dsn)
    assert result.rounds == 1
    assert result.outcomes == [("flaky", "failed"), ("flaky", "failed"), ("flaky", "completed")]
    # the row keeps only the latest error: the first one is not known any more
    assert result.attempts[0].error is None
    assert result.attempts[1].error is not None and result.attempts[1].error.startswith("RuntimeError: boom 2")


def test_a_handler_that_uses_up_its_attempts_ends_failed(queuert_dsn: str, queuert_conn: Conn) -> None:
    set_type(queuert_conn, "flaky", max_attempts=2)
    chain = start(queuert_conn, flaky, 1)
    result = drain(flaky_worker(fail_until=99), dsn=queuert_dsn, with_retries=True)
    assert result.outcomes == [("flaky", "failed"), ("flaky", "failed")]
    assert result.attempts[0].retry_at is not None and result.attempts[1].retry_at is None
    assert result.job(chain.id).status == "failed"


def test_a_drain_that_never_settles_times_out_with_what_ran(queuert_dsn: str, queuert_conn: Conn) -> None:
    set_type(queuert_conn, "flaky", backoff_initial=timedelta(0))
    start(queuert_conn, flaky, 1)
    worker = flaky_worker(fail_until=10**9, grace_period=5)
    with pytest.raises(DrainTimeout) as caught:
        drain(worker, dsn=queuert_dsn, timeout=1.0)
    assert caught.value.result.attempts  # it did run
    assert {a.outcome for a in caught.value.result.attempts} == {"failed"}
    assert not worker.running


def test_drain_refuses_a_running_event_loop(queuert_dsn: str) -> None:
    async def inside() -> None:
        drain(make_worker(), dsn=queuert_dsn)

    with pytest.raises(RuntimeError, match="adrain"):
        asyncio.run(inside())


# -- atomic mode and async ------------------------------------------------------------


def test_drain_runs_an_atomic_worker(queuert_dsn: str, queuert_conn: Conn) -> None:
    queuert_conn.execute("CREATE TABLE ledger (job_id uuid, cents int)")
    queuert_conn.commit()
    charge = JobType("charge", input=int)
    worker = queuert.Worker(queuert_dsn, mode="atomic", poll_interval=0.2)

    @worker.handler(charge)
    def do_charge(job: JobContext[int]) -> None:
        job.conn.execute("INSERT INTO ledger VALUES (%s, %s)", (job.id, job.input))

    start(queuert_conn, charge, 250)
    assert drain(worker).outcomes == [("charge", "completed")]
    assert queuert_conn.execute("SELECT cents FROM ledger").fetchall() == [(250,)]


async def test_adrain_and_the_async_assertions(queuert_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(queuert_dsn) as conn:
        async with conn.transaction():
            await queuert.aio.start_chain(conn, welcome, Signup(3))
            await aassert_chain_started(conn, welcome, Signup(3))
            await aassert_no_chain_started(conn, follow_up)
        result = await adrain(make_worker(), dsn=queuert_dsn)
        assert result.outcomes == [("welcome", "continued"), ("follow-up", "completed")]
        async with conn.transaction():  # a new transaction started nothing
            await aassert_no_chain_started(conn)


# -- assertions ------------------------------------------------------------------------


def test_assert_chain_started_in_this_transaction(queuert_conn: Conn) -> None:
    start(queuert_conn, welcome, Signup(1))  # committed earlier: not this transaction
    with queuert_conn.transaction():
        with queuert_conn.transaction():  # a savepoint counts as this transaction
            queuert.start_chain(queuert_conn, welcome, Signup(2))
        job = assert_chain_started(queuert_conn, welcome, Signup(2))
        assert job.input == {"user_id": 2} and job.status == "pending"
        assert_chain_started(queuert_conn, welcome, count=1)
        assert_chain_started(queuert_conn, welcome, input_contains={"user_id": 2})
        assert_no_chain_started(queuert_conn, welcome, Signup(1))
        assert_no_chain_started(queuert_conn, follow_up)

        with pytest.raises(AssertionError) as caught:
            assert_chain_started(queuert_conn, welcome, Signup(3))
        assert "with input Signup(user_id=3) started in this transaction" in str(caught.value)
        assert "('welcome', {'user_id': 2})" in str(caught.value)
        with pytest.raises(AssertionError, match="found 1"):
            assert_chain_started(queuert_conn, welcome, count=2)
        with pytest.raises(AssertionError, match=r"expected no chain of type 'welcome'"):
            assert_no_chain_started(queuert_conn, welcome)
    # after the commit, on a connection outside a transaction: the whole database
    queuert_conn.autocommit = True
    assert_chain_started(queuert_conn, welcome, count=2)
    assert [j.input for j in started_chains(queuert_conn, welcome)] == [{"user_id": 1}, {"user_id": 2}]


def test_a_rolled_back_start_leaves_nothing_to_find(queuert_conn: Conn) -> None:
    with pytest.raises(ZeroDivisionError):
        with queuert_conn.transaction():
            queuert.start_chain(queuert_conn, welcome, Signup(9))
            assert_chain_started(queuert_conn, welcome, Signup(9))
            1 / 0
    assert_no_chain_started(queuert_conn, welcome, in_transaction=False)


def test_input_is_compared_after_validation_with_the_job_type(queuert_conn: Conn) -> None:
    with queuert_conn.transaction():
        queuert.start_chain(queuert_conn, welcome, Signup(4))
        assert_chain_started(queuert_conn, welcome, {"user_id": 4})  # a dict validates too
        assert_chain_started(queuert_conn, "welcome", {"user_id": 4})  # by name: plain JSON
        with pytest.raises(queuert.PayloadValidationError):
            assert_chain_started(queuert_conn, welcome, {"user_id": "four"})
