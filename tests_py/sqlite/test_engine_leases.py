"""renew_leases (tests_sql/renew_leases.sql), release_jobs
(tests_sql/release_jobs.sql) and reap (tests_sql/reap.sql)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from .sqlite_backends import U, Engine, pick

from queuert.errors import InvalidArgumentError, JobTakenError


def test_renew_leases_outcomes(engine: Engine) -> None:
    engine.set_job_type("slow", lease=timedelta(minutes=10))
    engine.start_chains([{"type_name": "t", "id": str(U(i))} for i in range(1, 7)] + [
        {"type_name": "slow", "id": str(U(7))}
    ])
    engine.claim("w1", ["t"], 4, timedelta(seconds=1))
    engine.claim("w2", ["t"], 1)
    engine.claim("w1", ["slow"], 1, timedelta(seconds=1))
    # 1: running (w1), expired but not reaped; 2: completed; 3: failed back to
    # pending; 4: cancelled; 5: running under w2; 6: pending; 7: running (w1).
    engine.set_job(U(1), leased_until=engine.clock() - timedelta(minutes=1))
    engine.complete(U(2), "w1")
    engine.fail(U(3), "w1", "x")
    engine.cancel_chains([U(4)])
    before = engine.clock()
    rows = engine.renew_leases(
        "w1", [U(1), U(2), U(3), U(4), U(5), U(6), U(99), U(1), U(7)], timedelta(minutes=5)
    )
    assert [(r["job_id"], r["outcome"]) for r in rows] == [
        (U(1), "renewed"), (U(2), "finished"), (U(3), "finished"), (U(4), "finished"),
        (U(5), "taken"), (U(6), "finished"), (U(99), "not_found"), (U(7), "renewed"),
    ], "one row per distinct job in input order"
    leased_until = engine.job(U(1))["leased_until"]  # type: ignore[index]
    assert before + timedelta(minutes=5) <= leased_until <= engine.clock() + timedelta(minutes=5)
    assert pick(engine.job(U(5)), "status", "leased_by") == {"status": "running", "leased_by": "w2"}
    assert engine.job(U(5))["leased_until"] < engine.clock() + timedelta(minutes=2)  # type: ignore[index]

    before = engine.clock()
    rows = engine.renew_leases("w1", [U(7), U(1)])
    assert [(r["job_id"], r["outcome"]) for r in rows] == [(U(7), "renewed"), (U(1), "renewed")]
    assert before + timedelta(minutes=10) <= engine.job(U(7))["leased_until"] <= engine.clock() + timedelta(minutes=10)  # type: ignore[index]
    assert before + timedelta(seconds=60) <= engine.job(U(1))["leased_until"] <= engine.clock() + timedelta(seconds=60)  # type: ignore[index]

    engine.delete_chains([U(7)])
    assert [r["outcome"] for r in engine.renew_leases("w1", [U(7)])] == ["not_found"]
    assert engine.renew_leases("w1", []) == []
    for args in (("w1", None), (None, [U(1)]), ("w1", [U(1)], timedelta(minutes=-1))):
        with pytest.raises(InvalidArgumentError):
            engine.renew_leases(*args)


def _release_arranged(engine: Engine) -> None:
    engine.set_job_type("once", max_attempts=1)
    engine.start_chains([{"type_name": "once", "id": str(U(i))} for i in range(1, 6)])
    engine.claim("w1", ["once"], 3)
    engine.claim("w2", ["once"], 1)
    engine.complete(U(3), "w1")


def test_release_jobs(engine: Engine) -> None:
    _release_arranged(engine)
    scheduled = engine.job(U(1))["scheduled_at"]  # type: ignore[index]
    rows = engine.release_jobs("w1", [U(1), U(3), U(4), U(5), U(99), U(1)])
    assert [(r["job_id"], r["outcome"]) for r in rows] == [
        (U(1), "released"), (U(3), "finished"), (U(4), "taken"), (U(5), "finished"),
        (U(99), "not_found"), (U(1), "released"),
    ]
    assert pick(
        engine.job(U(1)), "status", "attempt", "leased_by", "leased_until", "last_attempt_error", "last_attempt_at"
    ) == {
        "status": "pending", "attempt": 0, "leased_by": None, "leased_until": None,
        "last_attempt_error": None, "last_attempt_at": None,
    }
    assert engine.job(U(1))["scheduled_at"] == scheduled, "keeps its place in the queue"  # type: ignore[index]
    assert pick(engine.job(U(4)), "status", "leased_by", "attempt") == {
        "status": "running", "leased_by": "w2", "attempt": 1,
    }
    assert engine.job(U(3))["status"] == "completed"  # type: ignore[index]

    assert engine.claim("w3", ["once"], 1)[0]["id"] == U(1), "claimed again first (its old place)"
    assert engine.job(U(1))["attempt"] == 1  # type: ignore[index]
    assert [r["outcome"] for r in engine.release_jobs("w3", [U(1)], [7])] == ["taken"], "a stale attempt"
    assert [r["outcome"] for r in engine.release_jobs("w3", [U(1)], [1])] == ["released"]
    assert engine.job(U(1))["attempt"] == 0  # type: ignore[index]


def test_release_jobs_bad_input_changes_nothing(engine: Engine) -> None:
    _release_arranged(engine)
    for args in ((None, [U(2)]), ("w1", [U(2), None]), ("w1", [U(2)], [1, 2])):
        with pytest.raises(InvalidArgumentError):
            engine.release_jobs(*args)
    assert pick(engine.job(U(2)), "status", "leased_by") == {"status": "running", "leased_by": "w1"}


def _reap_arranged(engine: Engine) -> None:
    engine.set_job_type("once", max_attempts=1)
    engine.start_chains([
        {"type_name": "t", "id": str(U(1))},
        {"type_name": "t", "id": str(U(2))},
        {"type_name": "once", "id": str(U(3))},
        {"type_name": "t", "id": str(U(4))},
        {"type_name": "t", "id": str(U(5))},
    ])
    engine.set_job(U(1), scheduled_at=engine.now - timedelta(hours=1))
    engine.claim("w1", ["t"], 2)
    engine.claim("w2", ["once"])
    engine.claim("w3", ["t"], 2)
    # 1 (w1) and 3 (w2) expired; 2 (w1) live; 4 (w3) completed; 5 (w3) live.
    engine.set_job(U(1), leased_until=engine.clock() - timedelta(seconds=2))
    engine.set_job(U(3), leased_until=engine.clock() - timedelta(seconds=1))
    engine.complete(U(4), "w3")


def test_reap(engine: Engine) -> None:
    now = engine.now
    assert engine.reap() == []
    _reap_arranged(engine)
    rows = engine.reap()
    assert sorted((r["job_id"], r["previous_worker"], r["status"]) for r in rows) == [
        (U(1), "w1", "pending"), (U(3), "w2", "failed")
    ]
    assert pick(
        engine.job(U(1)), "status", "scheduled_at", "leased_by", "leased_until", "attempt", "last_attempt_at",
        "last_attempt_error",
    ) == {
        "status": "pending", "scheduled_at": now - timedelta(hours=1), "leased_by": None, "leased_until": None,
        "attempt": 1, "last_attempt_at": now,
        "last_attempt_error": "lease expired: worker w1 stopped renewing it (attempt 1)",
    }
    assert pick(engine.job(U(3)), "status", "leased_by", "last_attempt_error") == {
        "status": "failed", "leased_by": None,
        "last_attempt_error": "lease expired: worker w2 stopped renewing it (attempt 1)",
    }
    assert [pick(engine.job(U(i)), "status", "leased_by") for i in (2, 4, 5)] == [
        {"status": "running", "leased_by": "w1"}, {"status": "completed", "leased_by": None},
        {"status": "running", "leased_by": "w3"},
    ]
    assert engine.reap() == []


def test_a_reaped_job_keeps_its_place_and_its_old_worker_is_fenced_out(engine: Engine) -> None:
    _reap_arranged(engine)
    engine.reap()
    engine.start_chain("t", id=U(6))
    assert [(r["id"], r["attempt"]) for r in engine.claim("w4", ["t"])] == [(U(1), 2)]
    message = "cannot {} job 00000000-0000-0000-0000-000000000001: it is held by worker w4, not w1"
    with pytest.raises(JobTakenError) as e:
        engine.complete(U(1), "w1")
    assert e.value.message == message.format("complete")
    with pytest.raises(JobTakenError) as e:
        engine.fail(U(1), "w1", "x", attempt=1)
    assert e.value.message == message.format("fail")
    with pytest.raises(JobTakenError) as e:
        engine.continue_with(U(1), "w1", "x", attempt=1)
    assert e.value.message == message.format("continue")
    assert [r["outcome"] for r in engine.renew_leases("w1", [U(1)])] == ["taken"]
    assert pick(engine.job(U(1)), "status", "leased_by", "attempt") == {
        "status": "running", "leased_by": "w4", "attempt": 2,
    }
    engine.set_job(U(1), leased_until=engine.clock() - timedelta(seconds=1))
    engine.reap()
    engine.claim("w4", ["t"])
    with pytest.raises(JobTakenError) as e:
        engine.complete(U(1), "w4", attempt=2)
    assert e.value.message == (
        "cannot complete job 00000000-0000-0000-0000-000000000001: attempt 2 is stale, the job is at attempt 3"
    )


def test_reap_max_jobs_oldest_leases_first(engine: Engine) -> None:
    engine.start_chains([{"type_name": "m", "id": str(U(i))} for i in (10, 11, 12)])
    engine.claim("w5", ["m"], 3)
    for i in (10, 11, 12):
        engine.set_job(U(i), leased_until=engine.clock() - timedelta(minutes=13 - i))
    assert sorted(r["job_id"] for r in engine.reap(max_jobs=2)) == [U(10), U(11)]
    assert [r["job_id"] for r in engine.reap(1)] == [U(12)]

    engine.set_job(U(10), status="running", leased_by="w6", attempt=1000, leased_until=engine.clock() - timedelta(seconds=1))
    assert [r["status"] for r in engine.reap()] == ["pending"], "NULL max_attempts: never failed by reap"
    with pytest.raises(InvalidArgumentError):
        engine.reap(0)
