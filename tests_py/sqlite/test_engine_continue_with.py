"""continue_with (tests_sql/continue_with.sql): hand-off, the next job,
idempotent repeats, fencing, loops and branches."""

from __future__ import annotations

from datetime import timedelta

import pytest
from .sqlite_backends import U, Engine, pick

from queuert.errors import (
    ChainNotFoundError,
    InvalidArgumentError,
    InvalidJobStatusError,
    JobNotFoundError,
    JobTakenError,
)

NEW_JOB = ("id", "chain_id", "chain_index", "type_name", "status", "scheduled_at", "deduplicated")


def _order(engine: Engine) -> None:
    engine.start_chain("order", id=U(1), priority=3, trace_context="tc-root")
    engine.claim("w1", ["order"])


def test_refusals_create_nothing(engine: Engine) -> None:
    _order(engine)
    refusals = [
        (JobTakenError, {"worker_id": "w2"},
         "cannot continue job 00000000-0000-0000-0000-000000000001: it is held by worker w1, not w2"),
        (JobTakenError, {"worker_id": "w1", "attempt": 5},
         "cannot continue job 00000000-0000-0000-0000-000000000001: attempt 5 is stale, the job is at attempt 1"),
        (InvalidArgumentError, {"worker_id": "w1", "blockers": [U(1)]},
         "a continuation of chain 00000000-0000-0000-0000-000000000001 cannot be blocked on its own chain"),
        (InvalidArgumentError, {"worker_id": "w1", "type_name": ""}, None),
        (InvalidArgumentError, {"worker_id": "w1", "schedule_after": timedelta(seconds=-1)}, None),
        (JobNotFoundError, {"worker_id": "w1", "job_id": U(99)}, "job 00000000-0000-0000-0000-000000000099 not found"),
    ]
    for cls, kwargs, message in refusals:
        args = {"job_id": U(1), "type_name": "pay", **kwargs}
        with pytest.raises(cls) as e:
            engine.continue_with(**args)
        if message is not None:
            assert e.value.message == message  # type: ignore[attr-defined]
    assert len([j for j in engine.jobs() if j["chain_id"] == U(1)]) == 1, "no refusal created a job"


def test_the_hand_off_and_the_next_job(engine: Engine) -> None:
    now = engine.now
    _order(engine)
    r = engine.continue_with(
        U(1), "w1", "pay", input={"amount": 5}, id=U(2), schedule_after=timedelta(seconds=30), attempt=1
    )
    assert pick(r, *NEW_JOB) == {
        "id": U(2), "chain_id": U(1), "chain_index": 1, "type_name": "pay", "status": "pending",
        "scheduled_at": now + timedelta(seconds=30), "deduplicated": False,
    }
    assert pick(
        engine.job(U(1)), "status", "output", "continued_to", "completed_by", "completed_at", "leased_by",
        "leased_until", "chain_completed_at",
    ) == {
        "status": "completed", "output": None, "continued_to": U(2), "completed_by": "w1", "completed_at": now,
        "leased_by": None, "leased_until": None, "chain_completed_at": None,
    }, "completed as handed off; the chain is not complete"
    assert pick(
        engine.job(U(2)), "chain_id", "chain_type_name", "chain_index", "type_name", "input", "status", "priority",
        "attempt", "trace_context", "dedup_key",
    ) == {
        "chain_id": U(1), "chain_type_name": "order", "chain_index": 1, "type_name": "pay",
        "input": {"amount": 5}, "status": "pending", "priority": 3, "attempt": 0,
        "trace_context": "tc-root", "dedup_key": None,
    }, "same chain, root type, index 1, priority and trace context inherited"


def test_repeats_by_whoever_made_the_first_call(engine: Engine) -> None:
    now = engine.now
    _order(engine)
    engine.continue_with(U(1), "w1", "pay", id=U(2), schedule_after=timedelta(seconds=30), attempt=1)
    again = engine.continue_with(U(1), "w1", "something-else", input=1, priority=9)
    assert pick(again, *NEW_JOB) == {
        "id": U(2), "chain_id": U(1), "chain_index": 1, "type_name": "pay", "status": "pending",
        "scheduled_at": now + timedelta(seconds=30), "deduplicated": True,
    }, "the existing next job, deduplicated, new arguments ignored"
    assert engine.continue_with(U(1), "w1", "pay", attempt=1)["id"] == U(2)
    assert len([j for j in engine.jobs() if j["chain_id"] == U(1)]) == 2, "repeats created nothing"
    for worker, attempt, message in [
        ("w2", None, "job 00000000-0000-0000-0000-000000000001 was already continued by worker w1, "
                     "not by worker w2 at attempt 1"),
        ("w1", 2, "job 00000000-0000-0000-0000-000000000001 was already continued by worker w1, "
                  "not by worker w1 at attempt 2"),
        (None, None, "job 00000000-0000-0000-0000-000000000001 was already continued by worker w1, "
                     "not by an outside call"),
    ]:
        with pytest.raises(JobTakenError) as e:
            engine.continue_with(U(1), worker, "pay", attempt=attempt)
        assert e.value.message == message
    with pytest.raises(InvalidJobStatusError) as e2:
        engine.complete(U(1), "w1")
    assert e2.value.message == "cannot complete job 00000000-0000-0000-0000-000000000001: it is completed, not running"


def test_outside_continuations(engine: Engine) -> None:
    now = engine.now
    _order(engine)
    engine.continue_with(U(1), "w1", "pay", id=U(2))
    with pytest.raises(InvalidJobStatusError) as e:
        engine.continue_with(U(2), "w1", "ship")
    assert e.value.message == "cannot continue job 00000000-0000-0000-0000-000000000002: it is pending, not running"
    r = engine.continue_with(
        U(2), None, "ship", id=U(3), priority=7, trace_context="tc-ship", schedule_at=now - timedelta(hours=1)
    )
    assert pick(r, "id", "chain_index", "status", "scheduled_at", "deduplicated") == {
        "id": U(3), "chain_index": 2, "status": "pending", "scheduled_at": now, "deduplicated": False,
    }
    assert pick(engine.job(U(3)), "priority", "trace_context") == {"priority": 7, "trace_context": "tc-ship"}
    assert pick(engine.job(U(2)), "completed_by", "continued_to", "attempt") == {
        "completed_by": None, "continued_to": U(3), "attempt": 0,
    }
    assert pick(engine.continue_with(U(2), None, "other"), "id", "deduplicated") == {"id": U(3), "deduplicated": True}
    with pytest.raises(JobTakenError) as e2:
        engine.continue_with(U(2), "w1", "ship")
    assert e2.value.message == (
        "job 00000000-0000-0000-0000-000000000002 was already continued by an outside call, "
        "not by worker w1 at attempt 0"
    )


def test_loops_blocked_continuations_and_existing_ids(engine: Engine) -> None:
    engine.start_chain("ship", id=U(3))
    engine.claim("w3", ["ship"])
    r = engine.continue_with(U(3), "w3", "ship", id=U(4))
    assert pick(r, "chain_index", "type_name", "status") == {"chain_index": 1, "type_name": "ship", "status": "pending"}

    engine.start_chain("other", id=U(10))
    engine.claim("w3", ["ship"])
    with pytest.raises(InvalidArgumentError) as e:
        engine.continue_with(U(4), "w3", "next", id=U(10))
    assert e.value.message == "a job with id 00000000-0000-0000-0000-000000000010 already exists"
    with pytest.raises(ChainNotFoundError) as e2:
        engine.continue_with(U(4), "w3", "next", blockers=[U(98)])
    assert e2.value.message == "blocker chain 00000000-0000-0000-0000-000000000098 not found"
    assert pick(engine.job(U(4)), "status", "leased_by") == {"status": "running", "leased_by": "w3"}
    r = engine.continue_with(U(4), "w3", "next", id=U(5), blockers=[U(10)])
    assert pick(r, "id", "status") == {"id": U(5), "status": "blocked"}
    assert engine.edges(U(5)) == [(U(5), 1, U(10))]
    assert pick(engine.chain(U(3)), "status", "current_job_id", "job_count", "completed_at") == {
        "status": "blocked", "current_job_id": U(5), "job_count": 3, "completed_at": None,
    }, "the chain's status is its last job's"


def test_a_running_job_continued_from_outside_is_lost_to_its_worker(engine: Engine) -> None:
    engine.start_chain("lose", id=U(20))
    engine.claim("w4", ["lose"])
    engine.continue_with(U(20), None, "lose2", id=U(21))
    with pytest.raises(JobTakenError) as e:
        engine.continue_with(U(20), "w4", "lose2")
    assert e.value.message == (
        "job 00000000-0000-0000-0000-000000000020 was already continued by an outside call, "
        "not by worker w4 at attempt 1"
    )
