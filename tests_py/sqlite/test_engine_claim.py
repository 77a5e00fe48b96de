"""claim (tests_sql/claim.sql): due pending jobs only, lease, attempt, type
filter, max_jobs, order, blockers."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from .sqlite_backends import U, Engine, pick

from queuert.errors import InvalidArgumentError


def assert_lease(engine: Engine, leased_until: datetime, lease: timedelta, before: datetime) -> None:
    """leased_until counts from the clock at the claim (clock_timestamp())."""
    assert before + lease <= leased_until <= engine.clock() + lease


def test_nothing_to_claim(engine: Engine) -> None:
    assert engine.claim("w1") == []


def test_only_due_pending_jobs_of_the_type(engine: Engine) -> None:
    now = engine.now
    engine.start_chain("t", id=U(1), input={"x": 1})
    engine.start_chain("t", id=U(2), schedule_at=now + timedelta(hours=1))
    engine.start_chain("u", id=U(3))
    engine.start_chain("t", id=U(4), blockers=[U(3)])
    before = engine.clock()
    claimed = engine.claim("w1", ["t"], 10)
    assert [r["id"] for r in claimed] == [U(1)], "not the future one, not the blocked one"
    assert pick(claimed[0], "status", "attempt", "leased_by", "input", "blockers", "chain_index", "chain_type_name") == {
        "status": "running", "attempt": 1, "leased_by": "w1", "input": {"x": 1}, "blockers": [],
        "chain_index": 0, "chain_type_name": "t",
    }
    assert_lease(engine, claimed[0]["leased_until"], timedelta(seconds=60), before)
    assert pick(engine.job(U(1)), "status", "attempt", "leased_by") == {
        "status": "running", "attempt": 1, "leased_by": "w1",
    }
    assert engine.claim("w2", ["t"], 10) == [], "a claimed job is never handed out again"
    assert engine.job(U(2))["status"] == "pending"  # type: ignore[index]
    assert engine.job(U(4))["status"] == "blocked"  # type: ignore[index]

    before = engine.clock()
    any_type = engine.claim("w2", None, 5, timedelta(minutes=5))
    assert [r["id"] for r in any_type] == [U(3)], "no type filter: any type"
    assert_lease(engine, any_type[0]["leased_until"], timedelta(minutes=5), before)
    assert engine.claim("w2", []) == [], "an empty type list claims nothing"


def test_the_types_lease(engine: Engine) -> None:
    engine.set_job_type("leasy", lease=timedelta(minutes=7))
    engine.start_chain("leasy", id=U(5))
    before = engine.clock()
    claimed = engine.claim("w3", ["leasy"])
    assert_lease(engine, claimed[0]["leased_until"], timedelta(minutes=7), before)


def test_max_jobs_and_claim_order(engine: Engine) -> None:
    engine.start_chain("o", id=U(10))
    engine.start_chain("o", id=U(11), priority=10)
    engine.start_chain("o", id=U(12))
    engine.start_chain("o", id=U(13))
    engine.start_chain("o", id=U(14), priority=-1)
    engine.set_job(U(13), scheduled_at=engine.now - timedelta(minutes=1))
    assert [(r["id"], r["attempt"]) for r in engine.claim("w4", ["o"], 3)] == [
        (U(11), 1), (U(13), 1), (U(10), 1)
    ], "priority, then scheduled_at, then insertion order"
    rest = engine.claim("w4", ["o"], 3)
    assert [r["id"] for r in rest] == [U(12), U(14)], "the rest, lowest priority last"
    assert [r["seq"] for r in rest] == [engine.job(U(12))["seq"], engine.job(U(14))["seq"]], (  # type: ignore[index]
        "seq (the FIFO tiebreak) comes back as the last column"
    )
    assert list(rest[0])[-2:] == ["blockers", "seq"]

    engine.set_job(U(12), status="pending", leased_by=None, leased_until=None)
    assert engine.claim("w5", ["o"])[0]["attempt"] == 2, "attempt counts claims"


def test_blockers_carry_each_chains_root_type_and_final_output(engine: Engine) -> None:
    engine.start_chain("b-root", id=U(20))
    engine.start_chain("c-root", id=U(21))
    engine.start_chain("fan-in", id=U(22), blockers=[U(21), U(20)])
    engine.claim("wb", ["b-root"])
    engine.continue_with(U(20), "wb", "b-step2", id=U(23))
    engine.claim("wb", ["b-step2"])
    engine.complete(U(23), "wb", {"b": "done"})
    engine.complete(U(21), None, [1, 2])
    assert engine.claim("wf", ["fan-in"])[0]["blockers"] == [
        {"chain_id": str(U(21)), "type_name": "c-root", "output": [1, 2]},
        {"chain_id": str(U(20)), "type_name": "b-root", "output": {"b": "done"}},
    ]


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"worker_id": None}, "a NULL worker_id"),
        ({"worker_id": "w", "max_jobs": 0}, "max_jobs 0"),
        ({"worker_id": "w", "lease": timedelta(0)}, "a zero lease"),
    ],
)
def test_bad_arguments_are_qu006(engine: Engine, kwargs: dict, what: str) -> None:
    with pytest.raises(InvalidArgumentError):
        engine.claim(**kwargs)


def test_null_max_jobs_is_one(engine: Engine) -> None:
    engine.start_chain("last", id=U(30))
    engine.start_chain("last", id=U(31))
    assert len(engine.claim("w", max_jobs=None)) == 1
