"""complete (tests_sql/complete.sql) and complete_jobs
(tests_sql/complete_jobs.sql): ownership, fencing, workerless completion,
chain completion, dependents unblocked in the same transaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from .sqlite_backends import U, Engine, pick

from queuert.errors import InvalidArgumentError, InvalidJobStatusError, JobNotFoundError, JobTakenError


def test_refusals_leave_the_job_running(engine: Engine) -> None:
    engine.start_chain("t", id=U(1))
    engine.claim("w1", ["t"])
    with pytest.raises(JobTakenError) as e:
        engine.complete(U(1), "w2", {})
    assert e.value.message == (
        "cannot complete job 00000000-0000-0000-0000-000000000001: it is held by worker w1, not w2"
    )
    assert e.value.details == {"job_id": str(U(1)), "worker_id": "w1"}
    with pytest.raises(JobTakenError) as e:
        engine.complete(U(1), "w1", {}, attempt=2)
    assert e.value.message == (
        "cannot complete job 00000000-0000-0000-0000-000000000001: attempt 2 is stale, the job is at attempt 1"
    )
    with pytest.raises(JobNotFoundError) as e:
        engine.complete(U(99), "w1")
    assert e.value.message == "job 00000000-0000-0000-0000-000000000099 not found"
    assert pick(engine.job(U(1)), "status", "leased_by", "output") == {
        "status": "running", "leased_by": "w1", "output": None,
    }


def test_an_expired_lease_nobody_reclaimed_still_counts(engine: Engine) -> None:
    now = engine.now
    engine.start_chain("t", id=U(1))
    engine.claim("w1", ["t"])
    engine.set_job(U(1), leased_until=engine.clock() - timedelta(minutes=1))
    r = engine.complete(U(1), "w1", {"ok": True}, attempt=1)
    assert r == {"id": U(1), "chain_id": U(1), "status": "completed", "chain_completed": True, "unblocked_types": []}
    assert pick(
        engine.job(U(1)), "status", "output", "completed_at", "completed_by", "leased_by", "leased_until",
        "continued_to", "chain_completed_at",
    ) == {
        "status": "completed", "output": {"ok": True}, "completed_at": now, "completed_by": "w1",
        "leased_by": None, "leased_until": None, "continued_to": None, "chain_completed_at": now,
    }
    with pytest.raises(InvalidJobStatusError) as e:
        engine.complete(U(1), "w1")
    assert e.value.message == "cannot complete job 00000000-0000-0000-0000-000000000001: it is completed, not running"
    with pytest.raises(InvalidJobStatusError) as e:
        engine.complete(U(1), None)
    assert e.value.message == "cannot complete job 00000000-0000-0000-0000-000000000001 from outside: it is completed"


def test_workerless_completion(engine: Engine) -> None:
    now = engine.now
    engine.start_chain("t", id=U(2))
    with pytest.raises(InvalidJobStatusError) as e:
        engine.complete(U(2), "w1")
    assert e.value.message == "cannot complete job 00000000-0000-0000-0000-000000000002: it is pending, not running"
    r = engine.complete(U(2), None, "approved")
    assert pick(r, "status", "chain_completed") == {"status": "completed", "chain_completed": True}
    assert pick(engine.job(U(2)), "status", "output", "completed_by", "completed_at", "attempt") == {
        "status": "completed", "output": "approved", "completed_by": None, "completed_at": now, "attempt": 0,
    }

    engine.start_chain("t", id=U(3))
    engine.start_chain("t", id=U(4), blockers=[U(3)])
    engine.complete(U(4), None, 1)
    assert pick(engine.job(U(4)), "status", "output", "chain_completed_at") == {
        "status": "completed", "output": 1, "chain_completed_at": now,
    }, "a blocked job can be completed from outside"
    engine.complete(U(3), None)
    assert pick(engine.job(U(4)), "status", "open_blockers") == {"status": "completed", "open_blockers": 0}


def test_a_running_job_completed_from_outside_is_lost_to_its_worker(engine: Engine) -> None:
    engine.start_chain("r", id=U(5))
    engine.claim("w1", ["r"])
    engine.complete(U(5), None, "outside")
    assert pick(engine.job(U(5)), "status", "output", "completed_by", "leased_by", "leased_until") == {
        "status": "completed", "output": "outside", "completed_by": None, "leased_by": None, "leased_until": None,
    }
    with pytest.raises(InvalidJobStatusError) as e:
        engine.complete(U(5), "w1", "worker")
    assert e.value.message == "cannot complete job 00000000-0000-0000-0000-000000000005: it is completed, not running"
    with pytest.raises(InvalidJobStatusError) as e:
        engine.fail(U(5), "w1", "boom")
    assert e.value.message == "cannot fail job 00000000-0000-0000-0000-000000000005: it is completed, not running"
    assert engine.job(U(5))["output"] == "outside"  # type: ignore[index]


def test_the_old_worker_of_a_reclaimed_job_is_fenced_out(engine: Engine) -> None:
    engine.start_chain("re", id=U(6))
    engine.claim("old", ["re"])
    engine.set_job(U(6), leased_until=engine.clock() - timedelta(seconds=1))
    engine.reap()
    engine.claim("new", ["re"])
    with pytest.raises(JobTakenError) as e:
        engine.complete(U(6), "old", attempt=1)
    assert e.value.message == (
        "cannot complete job 00000000-0000-0000-0000-000000000006: it is held by worker new, not old"
    )
    assert pick(engine.job(U(6)), "status", "leased_by", "attempt") == {
        "status": "running", "leased_by": "new", "attempt": 2,
    }


def test_completing_a_later_job_completes_the_chain_on_its_root(engine: Engine) -> None:
    engine.start_chain("s1", id=U(7))
    engine.claim("w", ["s1"])
    engine.continue_with(U(7), "w", "s2", id=U(8))
    assert engine.job(U(7))["chain_completed_at"] is None, "a continued chain is not complete"  # type: ignore[index]
    engine.claim("w", ["s2"])
    r = engine.complete(U(8), "w", {"final": 1})
    assert r == {"id": U(8), "chain_id": U(7), "status": "completed", "chain_completed": True, "unblocked_types": []}
    assert engine.job(U(7))["chain_completed_at"] == engine.now  # type: ignore[index]


def test_dependents_become_pending_at_the_later_of_their_time_and_now(engine: Engine) -> None:
    now = engine.now
    engine.start_chain("blk", id=U(10))
    engine.start_chain("dep", id=U(11), blockers=[U(10)])
    engine.start_chain("dep", id=U(12), blockers=[U(10)], schedule_at=now + timedelta(hours=2))
    engine.start_chain("other", id=U(13), blockers=[U(10)])
    engine.set_job(U(11), scheduled_at=now - timedelta(days=1))
    r = engine.complete(U(10), None)
    assert r["unblocked_types"] == ["dep", "dep", "other"], "the types it made pending, one per job, sorted"
    assert [pick(engine.job(u), "status", "scheduled_at", "open_blockers") for u in (U(11), U(12))] == [
        {"status": "pending", "scheduled_at": now, "open_blockers": 0},
        {"status": "pending", "scheduled_at": now + timedelta(hours=2), "open_blockers": 0},
    ]


def _five_jobs(engine: Engine) -> None:
    engine.start_chains([{"type_name": "t", "id": str(U(i))} for i in range(1, 6)])
    engine.claim("w1", ["t"], 3)
    engine.claim("w2", ["t"], 1)
    # 5 stays pending; a dependent waits on chain 1.
    engine.start_chain("dep", id=U(6), blockers=[U(1)])


def test_complete_jobs_outcomes_in_input_order(engine: Engine) -> None:
    now = engine.now
    _five_jobs(engine)
    rows = engine.complete_jobs(
        "w1",
        [U(1), U(4), U(5), U(99), U(2), U(3)],
        [{"r": 1}, {"r": 4}, {"r": 5}, None, {"r": 2}, {"r": 3}],
        [1, 1, 0, 1, 1, 7],
    )
    assert [(r["job_id"], r["outcome"], r["unblocked_types"]) for r in rows] == [
        (U(1), "completed", ["dep"]), (U(4), "taken", []), (U(5), "finished", []),
        (U(99), "not_found", []), (U(2), "completed", []), (U(3), "taken", []),
    ]
    assert [
        pick(engine.job(U(i)), "status", "output", "completed_by", "completed_at", "leased_by") for i in range(1, 6)
    ] == [
        {"status": "completed", "output": {"r": 1}, "completed_by": "w1", "completed_at": now, "leased_by": None},
        {"status": "completed", "output": {"r": 2}, "completed_by": "w1", "completed_at": now, "leased_by": None},
        {"status": "running", "output": None, "completed_by": None, "completed_at": None, "leased_by": "w1"},
        {"status": "running", "output": None, "completed_by": None, "completed_at": None, "leased_by": "w2"},
        {"status": "pending", "output": None, "completed_by": None, "completed_at": None, "leased_by": None},
    ]
    assert engine.job(U(1))["chain_completed_at"] == now  # type: ignore[index]
    assert engine.job(U(6))["status"] == "pending", "the dependent of a batch-completed chain"  # type: ignore[index]

    rows = engine.complete_jobs("w1", [U(3), U(1)])
    assert [(r["job_id"], r["outcome"]) for r in rows] == [(U(3), "completed"), (U(1), "finished")]
    assert engine.job(U(3))["output"] is None  # type: ignore[index]


def test_complete_jobs_completes_a_continued_chain(engine: Engine) -> None:
    _five_jobs(engine)
    engine.claim("w2", ["t"])
    engine.continue_with(U(5), "w2", "t2", id=U(7))
    engine.claim("w2", ["t2"])
    assert [r["outcome"] for r in engine.complete_jobs("w2", [U(7)], ["end"], [1])] == ["completed"]
    assert engine.job(U(5))["chain_completed_at"] == engine.now  # type: ignore[index]


def test_complete_jobs_reports_each_unblocked_job_s_type(engine: Engine) -> None:
    engine.start_chains([{"type_name": "f", "id": str(U(i))} for i in (10, 11, 12)])
    engine.start_chain("fan", blockers=[U(10), U(11)])  # waits on both: counted once
    engine.start_chain("solo", blockers=[U(11)])
    engine.start_chain("solo", blockers=[U(11)])
    engine.start_chain("later", blockers=[U(11), U(12)])
    engine.claim("w3", ["f"], 3)
    rows = engine.complete_jobs("w3", [U(11), U(10)])
    assert [(r["job_id"], r["outcome"], r["unblocked_types"]) for r in rows] == [
        (U(11), "completed", ["solo", "solo"]), (U(10), "completed", ["fan"]),
    ], "on a completed blocker's row; still-blocked dependents are not reported"


@pytest.mark.parametrize(
    ("args", "what"),
    [
        ((None, [U(1)]), "NULL worker"),
        (("w", [None]), "NULL id"),
        (("w", [U(1)], [1, 2]), "length mismatch"),
    ],
)
def test_complete_jobs_bad_arguments(engine: Engine, args: tuple, what: str) -> None:
    with pytest.raises(InvalidArgumentError):
        engine.complete_jobs(*args)
