"""Scheduling, priorities and FIFO (tests_sql/scheduling_priority_fifo.sql)
and set_job_type (tests_sql/set_job_type.sql)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from .sqlite_backends import U, Engine, pick

from queuert.errors import InvalidArgumentError

POLICY = ("type_name", "max_attempts", "backoff_initial", "backoff_multiplier", "backoff_max", "lease")
DEFAULTS = {
    "max_attempts": None,
    "backoff_initial": timedelta(seconds=10),
    "backoff_multiplier": 2.0,
    "backoff_max": timedelta(minutes=5),
    "lease": timedelta(seconds=60),
}


def test_insertion_order_breaks_ties(engine: Engine) -> None:
    for i in (7, 3, 9, 1, 5):
        engine.start_chain("fifo", id=U(i))
    assert len({j["created_at"] for j in engine.jobs()}) == 1, "all created at the same now"
    assert [r["id"] for r in engine.claim("w", ["fifo"], 2)] == [U(7), U(3)]
    assert [r["id"] for r in engine.claim("w", ["fifo"], 10)] == [U(9), U(1), U(5)]


def test_priority_then_scheduled_at_then_insertion(engine: Engine) -> None:
    now = engine.now
    engine.start_chains([
        {"type_name": "p", "id": str(U(20))},
        {"type_name": "p", "id": str(U(21)), "priority": 1},
        {"type_name": "p", "id": str(U(22)), "priority": -1},
        {"type_name": "p", "id": str(U(23)), "priority": 1},
        {"type_name": "p", "id": str(U(24))},
        {"type_name": "p", "id": str(U(25)), "priority": 100, "schedule_after_ms": 60000},
    ])
    engine.set_job(U(24), scheduled_at=now - timedelta(seconds=10))
    engine.set_job(U(23), scheduled_at=now - timedelta(seconds=1))
    assert [(r["id"], r["priority"]) for r in engine.claim("w", ["p"], 10)] == [
        (U(23), 1), (U(21), 1), (U(24), 0), (U(20), 0), (U(22), -1)
    ], "not-yet-due skipped"
    assert engine.next_due_at(["p"]) == now + timedelta(minutes=1)
    engine.trigger_jobs([U(25)])
    assert [r["id"] for r in engine.claim("w", ["p"])] == [U(25)]


def test_retried_and_reaped_jobs_keep_insertion_order(engine: Engine) -> None:
    engine.start_chains([{"type_name": "q", "id": str(U(i))} for i in (30, 31, 32)])
    engine.claim("w", ["q"], 2)
    engine.fail(U(30), "w", "x", retry_at=engine.now)
    engine.set_job(U(31), leased_until=engine.clock() - timedelta(seconds=1))
    engine.reap()
    assert [r["id"] for r in engine.claim("w", ["q"], 3)] == [U(30), U(31), U(32)]


def test_an_inherited_priority_outranks_an_older_job(engine: Engine) -> None:
    engine.start_chain("c", id=U(40), priority=5)
    engine.start_chain("c2", id=U(41), priority=4)
    engine.claim("w", ["c"])
    engine.continue_with(U(40), "w", "c2", id=U(42))
    assert [(r["id"], r["priority"]) for r in engine.claim("w", ["c2"], 2)] == [(U(42), 5), (U(41), 4)]


def test_set_job_type_defaults_and_upserts(engine: Engine) -> None:
    assert pick(engine.set_job_type("t"), *POLICY) == {"type_name": "t", **DEFAULTS}
    assert engine.job_types() == [{"type_name": "t", **DEFAULTS}]
    engine.set_job_type(
        "t", max_attempts=5, backoff_initial=timedelta(seconds=1), backoff_multiplier=3,
        backoff_max=timedelta(hours=1), lease=timedelta(minutes=2),
    )
    assert engine.job_types() == [{
        "type_name": "t", "max_attempts": 5, "backoff_initial": timedelta(seconds=1), "backoff_multiplier": 3.0,
        "backoff_max": timedelta(hours=1), "lease": timedelta(minutes=2),
    }]
    engine.set_job_type("t", lease=timedelta(minutes=3))
    assert engine.job_types() == [{"type_name": "t", **DEFAULTS, "lease": timedelta(minutes=3)}], (
        "omitted arguments take the defaults again (the whole policy is set)"
    )
    engine.set_job_type(
        "t", max_attempts=None, backoff_initial=None, backoff_multiplier=None, backoff_max=None, lease=None
    )
    assert engine.job_types() == [{"type_name": "t", **DEFAULTS}], "NULL arguments take the defaults"


@pytest.mark.parametrize(
    ("type_name", "kwargs"),
    [
        ("", {}),
        ("t", {"max_attempts": 0}),
        ("t", {"backoff_multiplier": 0.5}),
        ("t", {"backoff_multiplier": math.nan}),
        ("t", {"backoff_initial": timedelta(seconds=-1)}),
        ("t", {"lease": timedelta(0)}),
    ],
)
def test_set_job_type_refusals_change_nothing(engine: Engine, type_name: str, kwargs: dict) -> None:
    engine.set_job_type("t")
    with pytest.raises(InvalidArgumentError):
        engine.set_job_type(type_name, **kwargs)
    assert engine.job_types() == [{"type_name": "t", **DEFAULTS}]
