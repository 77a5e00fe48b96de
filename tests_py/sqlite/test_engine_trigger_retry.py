"""trigger_jobs (tests_sql/trigger_jobs.sql), retry_jobs
(tests_sql/retry_jobs.sql) and next_due_at (tests_sql/next_due_at.sql)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from .sqlite_backends import U, Engine, pick

from queuert.errors import InvalidArgumentError, InvalidJobStatusError, JobNotFoundError


def _trigger_arranged(engine: Engine) -> None:
    engine.start_chain("t", id=U(1), schedule_after=timedelta(hours=1))
    engine.start_chain("t", id=U(2), schedule_after=timedelta(days=1))
    engine.start_chain("t", id=U(3))
    engine.set_job(U(3), scheduled_at=engine.now - timedelta(minutes=1))
    engine.start_chain("t", id=U(4), schedule_after=timedelta(hours=1), blockers=[U(3)])
    engine.start_chain("r", id=U(5))
    engine.claim("w", ["r"])


def test_trigger_refusals_change_nothing(engine: Engine) -> None:
    _trigger_arranged(engine)
    with pytest.raises(JobNotFoundError) as e:
        engine.trigger_jobs([U(1), U(99)])
    assert e.value.message == "job 00000000-0000-0000-0000-000000000099 not found"
    with pytest.raises(InvalidJobStatusError) as e2:
        engine.trigger_jobs([U(1), U(4)])
    assert e2.value.message == "cannot trigger job 00000000-0000-0000-0000-000000000004: it is blocked, not pending"
    with pytest.raises(InvalidJobStatusError) as e2:
        engine.trigger_jobs([U(5), U(1)])
    assert e2.value.message == "cannot trigger job 00000000-0000-0000-0000-000000000005: it is running, not pending"
    for bad in (None, [U(1), None]):
        with pytest.raises(InvalidArgumentError):
            engine.trigger_jobs(bad)
    assert engine.job(U(1))["scheduled_at"] == engine.now + timedelta(hours=1)  # type: ignore[index]


def test_trigger_makes_pending_jobs_due_now(engine: Engine) -> None:
    now = engine.now
    _trigger_arranged(engine)
    assert engine.trigger_jobs([U(2), U(3), U(1), U(2)]) == [U(2), U(3), U(1)], "distinct, in input order"
    assert [pick(engine.job(U(i)), "status", "scheduled_at") for i in (1, 2, 3)] == [
        {"status": "pending", "scheduled_at": now}, {"status": "pending", "scheduled_at": now},
        {"status": "pending", "scheduled_at": now - timedelta(minutes=1)},
    ], "future jobs are due now; an overdue job keeps its earlier time"
    assert engine.next_due_at(["t"]) == now - timedelta(minutes=1)
    assert len(engine.claim("x", ["t"], 10)) == 3
    assert engine.trigger_jobs([]) == []


def _retry_arranged(engine: Engine) -> None:
    now = engine.now
    engine.set_job_type("once", max_attempts=1)
    engine.start_chain("once", id=U(1), schedule_at=now + timedelta(hours=1))
    engine.set_job(U(1), scheduled_at=now)
    engine.claim("w", ["once"])
    engine.fail(U(1), "w", "boom")
    engine.start_chain("c", id=U(2), schedule_after=timedelta(days=1))
    engine.cancel_chains([U(2)])
    engine.start_chain("p", id=U(3))
    engine.start_chain("done", id=U(4))
    engine.complete(U(4), None)


def test_retry_refusals_change_nothing(engine: Engine) -> None:
    _retry_arranged(engine)
    assert engine.job(U(1))["status"] == "failed"  # type: ignore[index]
    with pytest.raises(JobNotFoundError):
        engine.retry_jobs([U(1), U(99)])
    with pytest.raises(InvalidJobStatusError) as e:
        engine.retry_jobs([U(1), U(3)])
    assert e.value.message == (
        "cannot retry job 00000000-0000-0000-0000-000000000003: it is pending, not failed or cancelled"
    )
    with pytest.raises(InvalidJobStatusError) as e:
        engine.retry_jobs([U(4), U(1)])
    assert e.value.message == (
        "cannot retry job 00000000-0000-0000-0000-000000000004: it is completed, not failed or cancelled"
    )
    for bad in (None, [None, U(1)]):
        with pytest.raises(InvalidArgumentError):
            engine.retry_jobs(bad)
    assert pick(engine.job(U(1)), "status", "attempt") == {"status": "failed", "attempt": 1}


def test_retry_runs_failed_and_cancelled_jobs_again(engine: Engine) -> None:
    now = engine.now
    _retry_arranged(engine)
    assert engine.retry_jobs([U(2), U(1), U(2)]) == [U(2), U(1)]
    assert [pick(engine.job(U(i)), "status", "attempt", "scheduled_at", "leased_by", "last_attempt_error")
            for i in (1, 2)] == [
        {"status": "pending", "attempt": 0, "scheduled_at": now, "leased_by": None, "last_attempt_error": "boom"},
        {"status": "pending", "attempt": 0, "scheduled_at": now, "leased_by": None, "last_attempt_error": None},
    ]
    assert engine.chain(U(2))["status"] == "pending"  # type: ignore[index]
    assert [(r["id"], r["attempt"]) for r in engine.claim("w", ["once"])] == [(U(1), 1)]
    assert engine.fail(U(1), "w", "boom again")["status"] == "failed", "max_attempts applies afresh"


def test_a_retried_dependent_is_blocked_again_on_incomplete_blockers(engine: Engine) -> None:
    engine.start_chain("blk", id=U(10))
    engine.start_chain("blk", id=U(11))
    engine.start_chain("dep", id=U(12), blockers=[U(10), U(11)])
    engine.cancel_chains([U(12), U(10), U(11)])
    engine.retry_jobs([U(10), U(11)])
    engine.complete(U(10), None)
    assert engine.job(U(12))["status"] == "cancelled"  # type: ignore[index]
    assert engine.retry_jobs([U(12)]) == [U(12)]
    assert pick(engine.job(U(12)), "status", "open_blockers") == {"status": "blocked", "open_blockers": 1}
    engine.complete(U(11), None)
    assert pick(engine.job(U(12)), "status", "open_blockers", "scheduled_at") == {
        "status": "pending", "open_blockers": 0, "scheduled_at": engine.now,
    }


def test_a_failed_blocker_holds_its_dependent_until_retried(engine: Engine) -> None:
    engine.set_job_type("once", max_attempts=1)
    engine.start_chain("once", id=U(20))
    engine.start_chain("dep", id=U(21), blockers=[U(20)])
    engine.claim("w", ["once"])
    engine.fail(U(20), "w", "x")
    assert engine.job(U(21))["status"] == "blocked"  # type: ignore[index]
    engine.retry_jobs([U(20)])
    engine.claim("w", ["once"])
    engine.complete(U(20), "w")
    assert engine.job(U(21))["status"] == "pending"  # type: ignore[index]


def test_next_due_at(engine: Engine) -> None:
    now = engine.now
    assert engine.next_due_at() is None
    engine.start_chain("a", id=U(1), schedule_after=timedelta(minutes=10))
    engine.start_chain("a", id=U(2), schedule_after=timedelta(minutes=5), priority=-10)
    engine.start_chain("b", id=U(3), schedule_after=timedelta(minutes=2))
    engine.start_chain("c", id=U(4))
    engine.start_chain("d", id=U(5), blockers=[U(1)])
    engine.set_job(U(5), scheduled_at=now - timedelta(days=1))
    assert engine.next_due_at() == now
    assert engine.next_due_at(["a"]) == now + timedelta(minutes=5), "whatever its priority"
    assert engine.next_due_at(["a", "b"]) == now + timedelta(minutes=2)
    assert engine.next_due_at(["d"]) is None, "a blocked job is never due"
    assert engine.next_due_at(["zzz"]) is None
    assert engine.next_due_at([]) is None
    engine.claim("w", ["c"])
    assert engine.next_due_at(["c"]) is None, "a running job is not pending"
    assert engine.next_due_at() == now + timedelta(minutes=2)
    engine.set_job(U(1), scheduled_at=now - timedelta(hours=1))
    assert engine.next_due_at(["a"]) == now - timedelta(hours=1)
