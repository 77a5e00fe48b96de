"""fail (tests_sql/fail.sql) and fail_jobs (tests_sql/fail_jobs.sql):
backoff arithmetic, max_attempts, retry_at, fencing, failures from outside,
the batched failure's outcomes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from .sqlite_backends import U, Engine, pick

from queuert.errors import InvalidArgumentError, InvalidJobStatusError, JobNotFoundError, JobTakenError


def _flaky(engine: Engine) -> None:
    engine.set_job_type(
        "flaky", max_attempts=3, backoff_initial=timedelta(seconds=10), backoff_multiplier=2,
        backoff_max=timedelta(seconds=25),
    )
    engine.start_chain("flaky", id=U(1))
    engine.claim("w1", ["flaky"])


def test_refusals(engine: Engine) -> None:
    _flaky(engine)
    with pytest.raises(JobTakenError) as e:
        engine.fail(U(1), "w2", "x")
    assert e.value.message == "cannot fail job 00000000-0000-0000-0000-000000000001: it is held by worker w1, not w2"
    with pytest.raises(JobTakenError) as e:
        engine.fail(U(1), "w1", "x", attempt=0)
    assert e.value.message == (
        "cannot fail job 00000000-0000-0000-0000-000000000001: attempt 0 is stale, the job is at attempt 1"
    )
    with pytest.raises(JobNotFoundError):
        engine.fail(U(99), "w1", "x")


def test_backoff_then_max_attempts(engine: Engine) -> None:
    now = engine.now
    _flaky(engine)
    assert engine.fail(U(1), "w1", "boom 1", attempt=1) == {
        "id": U(1), "status": "pending", "scheduled_at": now + timedelta(seconds=10), "attempt": 1,
    }, "attempt 1: pending again after backoff_initial"
    assert pick(
        engine.job(U(1)), "status", "last_attempt_error", "last_attempt_at", "leased_by", "leased_until", "attempt"
    ) == {
        "status": "pending", "last_attempt_error": "boom 1", "last_attempt_at": now, "leased_by": None,
        "leased_until": None, "attempt": 1,
    }
    with pytest.raises(InvalidJobStatusError) as e:
        engine.fail(U(1), "w1", "again")
    assert e.value.message == "cannot fail job 00000000-0000-0000-0000-000000000001: it is pending, not running"

    engine.trigger_jobs([U(1)])
    engine.claim("w1", ["flaky"])
    assert pick(engine.fail(U(1), "w1", "boom 2"), "status", "scheduled_at", "attempt") == {
        "status": "pending", "scheduled_at": now + timedelta(seconds=20), "attempt": 2,
    }, "attempt 2: backoff_initial * multiplier"

    engine.trigger_jobs([U(1)])
    engine.claim("w1", ["flaky"])
    engine.set_job(U(1), scheduled_at=now - timedelta(seconds=5))
    assert pick(engine.fail(U(1), "w1", "boom 3", attempt=3), "status", "scheduled_at", "attempt") == {
        "status": "failed", "scheduled_at": now - timedelta(seconds=5), "attempt": 3,
    }, "attempt 3 of 3: failed, scheduled_at kept"
    assert pick(engine.job(U(1)), "status", "last_attempt_error", "leased_by") == {
        "status": "failed", "last_attempt_error": "boom 3", "leased_by": None,
    }
    assert engine.claim("w1", ["flaky"]) == [], "a failed job is not claimed"
    with pytest.raises(InvalidJobStatusError) as e:
        engine.fail(U(1), None, "x")
    assert e.value.message == "cannot fail job 00000000-0000-0000-0000-000000000001 from outside: it is failed"


def test_the_cap_and_huge_attempt_counts(engine: Engine) -> None:
    now = engine.now
    engine.set_job_type(
        "capped", backoff_initial=timedelta(seconds=10), backoff_multiplier=2, backoff_max=timedelta(seconds=25)
    )
    engine.start_chain("capped", id=U(2))
    engine.claim("w1", ["capped"])
    engine.set_job(U(2), attempt=3)
    assert pick(engine.fail(U(2), "w1", "x"), "status", "scheduled_at") == {
        "status": "pending", "scheduled_at": now + timedelta(seconds=25),
    }, "backoff capped at backoff_max"
    engine.trigger_jobs([U(2)])
    engine.claim("w1", ["capped"])
    engine.set_job(U(2), attempt=100000)
    assert pick(engine.fail(U(2), "w1", "x"), "status", "scheduled_at", "attempt") == {
        "status": "pending", "scheduled_at": now + timedelta(seconds=25), "attempt": 100000,
    }, "NULL max_attempts retries forever, saturating at the cap"


def test_fractional_multiplier_and_default_policy(engine: Engine) -> None:
    now = engine.now
    engine.set_job_type(
        "frac", backoff_initial=timedelta(seconds=2), backoff_multiplier=1.5, backoff_max=timedelta(hours=1)
    )
    engine.start_chain("frac", id=U(3))
    engine.claim("w1", ["frac"])
    engine.set_job(U(3), attempt=3)
    assert engine.fail(U(3), "w1", "x")["scheduled_at"] == now + timedelta(seconds=4.5)

    engine.start_chain("plain", id=U(4))
    engine.claim("w1", ["plain"])
    assert engine.fail(U(4), "w1", "x")["scheduled_at"] == now + timedelta(seconds=10)
    engine.set_job(U(4), status="running", leased_by="w1", leased_until=engine.clock() + timedelta(minutes=1), attempt=6)
    assert engine.fail(U(4), "w1", "x")["scheduled_at"] == now + timedelta(minutes=5), "320 s capped at 5 min"

    engine.trigger_jobs([U(4)])
    engine.claim("w1", ["plain"])
    assert engine.fail(U(4), "w1", "x", retry_at=now + timedelta(hours=3))["scheduled_at"] == now + timedelta(hours=3)
    engine.trigger_jobs([U(4)])
    engine.claim("w1", ["plain"])
    assert engine.fail(U(4), "w1", "x", retry_at=now - timedelta(hours=3))["scheduled_at"] == now, "clamped"


def test_failures_from_outside(engine: Engine) -> None:
    now = engine.now
    _flaky(engine)
    engine.start_chain("flaky", id=U(5))
    assert pick(engine.fail(U(5), None, "bad input"), "status", "scheduled_at", "attempt") == {
        "status": "pending", "scheduled_at": now + timedelta(seconds=10), "attempt": 0,
    }, "a pending job: no attempt counted"
    assert pick(engine.job(U(5)), "attempt", "last_attempt_error", "last_attempt_at") == {
        "attempt": 0, "last_attempt_error": "bad input", "last_attempt_at": now,
    }
    engine.trigger_jobs([U(5)])
    engine.claim("w9", ["flaky"])
    assert pick(engine.fail(U(5), None, "stop"), "status", "attempt") == {"status": "pending", "attempt": 1}
    with pytest.raises(InvalidJobStatusError) as e:
        engine.complete(U(5), "w9")
    assert e.value.message == "cannot complete job 00000000-0000-0000-0000-000000000005: it is pending, not running"
    engine.start_chain("flaky", id=U(6), blockers=[U(5)])
    with pytest.raises(InvalidJobStatusError) as e:
        engine.fail(U(6), None, "x")
    assert e.value.message == "cannot fail job 00000000-0000-0000-0000-000000000006 from outside: it is blocked"
    assert engine.job(U(6))["status"] == "blocked"  # type: ignore[index]


def test_max_attempts_one_fails_at_once(engine: Engine) -> None:
    engine.set_job_type("once", max_attempts=1)
    engine.start_chain("once", id=U(7))
    engine.claim("w1", ["once"])
    assert engine.fail(U(7), "w1", "x")["status"] == "failed"
    assert engine.chain(U(7))["status"] == "failed"  # type: ignore[index]


def test_zero_backoff_is_due_again_now(engine: Engine) -> None:
    engine.set_job_type("z", backoff_initial=timedelta(0))
    engine.start_chain("z", id=U(1))
    assert len(engine.claim("w", ["z"])) == 1
    assert engine.fail(U(1), "w", "x")["scheduled_at"] == engine.now


def _fail_jobs_arranged(engine: Engine) -> None:
    engine.set_job_type("once", max_attempts=1)
    engine.set_job_type("t", backoff_initial=timedelta(seconds=30))
    engine.start_chains([
        {"type_name": "t", "id": str(U(1))},
        {"type_name": "t", "id": str(U(2))},
        {"type_name": "once", "id": str(U(3))},
        {"type_name": "t", "id": str(U(4))},
        {"type_name": "t", "id": str(U(5))},
    ])
    engine.claim("w1", ["t", "once"], 4)
    engine.claim("w2", ["t"], 1)


def test_fail_jobs_outcomes(engine: Engine) -> None:
    now = engine.now
    _fail_jobs_arranged(engine)
    rows = engine.fail_jobs(
        "w1",
        [U(1), U(2), U(3), U(5), U(4), U(99)],
        ["e1", "e2", "e3", "e5", "e4", "e99"],
        [None, now + timedelta(hours=1), None, None, None, None],
        [1, 1, 1, 1, 2, 1],
    )
    assert [(r["job_id"], r["outcome"], r["status"], r["scheduled_at"]) for r in rows] == [
        (U(1), "failed", "pending", now + timedelta(seconds=30)),
        (U(2), "failed", "pending", now + timedelta(hours=1)),
        (U(3), "failed", "failed", now),
        (U(5), "taken", None, None),
        (U(4), "taken", None, None),
        (U(99), "not_found", None, None),
    ]
    assert [
        pick(engine.job(U(i)), "status", "last_attempt_error", "last_attempt_at", "leased_by", "attempt")
        for i in (1, 3, 4, 5)
    ] == [
        {"status": "pending", "last_attempt_error": "e1", "last_attempt_at": now, "leased_by": None, "attempt": 1},
        {"status": "failed", "last_attempt_error": "e3", "last_attempt_at": now, "leased_by": None, "attempt": 1},
        {"status": "running", "last_attempt_error": None, "last_attempt_at": None, "leased_by": "w1", "attempt": 1},
        {"status": "running", "last_attempt_error": None, "last_attempt_at": None, "leased_by": "w2", "attempt": 1},
    ]
    assert [r["outcome"] for r in engine.fail_jobs("w1", [U(1)], ["again"])] == ["finished"]
    rows = engine.fail_jobs("w1", [U(4), U(4)], ["a", "b"])
    assert [(r["outcome"], r["status"]) for r in rows] == [("failed", "pending"), ("failed", "pending")]
    assert engine.job(U(4))["last_attempt_error"] == "a", "a repeated id is failed once, with its first error"  # type: ignore[index]


def test_fail_jobs_bad_arguments_change_nothing(engine: Engine) -> None:
    _fail_jobs_arranged(engine)
    with pytest.raises(InvalidArgumentError) as e:
        engine.fail_jobs("w1", [U(1)], ["a", "b"])
    assert e.value.message == "errors, retry_ats and attempts must have one element per job id"
    with pytest.raises(InvalidArgumentError):
        engine.fail_jobs("w1", [U(1)], None)
    with pytest.raises(InvalidArgumentError) as e:
        engine.fail_jobs(None, [U(1)], ["a"])
    assert e.value.message == "fail_jobs needs a worker_id and an array of job ids without NULLs"
    assert engine.job(U(5))["status"] == "running"  # type: ignore[index]
