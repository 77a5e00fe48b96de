"""Inspection (tests_sql/inspection.sql): the chain view, stats, chain_jobs;
and the errors of tests_sql/errors.sql: every QU code with its message and
detail, and nothing written by a refused call."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from .sqlite_backends import U, Engine, pick

from queuert.errors import (
    ChainHasDependentsError,
    ChainNotFoundError,
    InvalidArgumentError,
    InvalidJobStatusError,
    JobNotFoundError,
    JobTakenError,
    QueuertError,
)

CHAIN = ("chain_id", "type_name", "status", "current_job_id", "current_type_name", "job_count",
         "created_at", "completed_at", "output")
LISTED_JOB_COLUMNS = {
    "id", "type_name", "chain_id", "chain_type_name", "chain_index", "input", "output", "status", "priority",
    "attempt", "scheduled_at", "created_at", "completed_at", "completed_by", "leased_by", "leased_until",
    "last_attempt_at", "last_attempt_error", "continued_to", "dedup_key", "trace_context",
}


def _arranged(engine: Engine) -> None:
    # 1: three steps, complete; 2: two steps, second running; 3: pending;
    # 4: blocked on 3; 5: pending in an hour.
    engine.start_chain("order", id=U(1))
    engine.claim("w", ["order"])
    engine.continue_with(U(1), "w", "pay", id=U(11))
    engine.claim("w", ["pay"])
    engine.continue_with(U(11), "w", "ship", id=U(12))
    engine.claim("w", ["ship"])
    engine.complete(U(12), "w", {"tracking": "T1"})
    engine.start_chain("order", id=U(2))
    engine.claim("w", ["order"])
    engine.continue_with(U(2), "w", "pay", id=U(21))
    engine.claim("w", ["pay"])
    engine.start_chain("mail", id=U(3))
    engine.set_job(U(3), scheduled_at=engine.now - timedelta(minutes=5))
    engine.start_chain("mail", id=U(5), schedule_after=timedelta(hours=1))
    engine.start_chain("report", id=U(4), blockers=[U(3)])


def test_the_chain_view(engine: Engine) -> None:
    now = engine.now
    _arranged(engine)
    assert [tuple(c[k] for k in CHAIN) for c in engine.chains()] == [
        (U(1), "order", "completed", U(12), "ship", 3, now, now, {"tracking": "T1"}),
        (U(2), "order", "running", U(21), "pay", 2, now, None, None),
        (U(3), "mail", "pending", U(3), "mail", 1, now, None, None),
        (U(4), "report", "blocked", U(4), "report", 1, now, None, None),
        (U(5), "mail", "pending", U(5), "mail", 1, now, None, None),
    ]
    engine.cancel_chains([U(5)])
    assert pick(engine.chain(U(5)), "status", "completed_at", "output") == {
        "status": "cancelled", "completed_at": None, "output": None,
    }
    assert engine.chain(U(11)) is None and engine.chain(U(99)) is None


def test_stats(engine: Engine) -> None:
    _arranged(engine)
    engine.cancel_chains([U(5)])
    assert [(s["type_name"], s["status"], s["count"], s["oldest_due_age"]) for s in engine.stats()] == [
        ("mail", "cancelled", 1, None),
        ("mail", "pending", 1, timedelta(minutes=5)),
        ("order", "completed", 2, None),
        ("pay", "completed", 1, None),
        ("pay", "running", 1, None),
        ("report", "blocked", 1, None),
        ("ship", "completed", 1, None),
    ]
    engine.start_chain("mail", id=U(6), schedule_after=timedelta(hours=1))
    assert [(s["count"], s["oldest_due_age"]) for s in engine.stats() if s[
        "type_name"] == "mail" and s["status"] == "pending"] == [(2, timedelta(minutes=5))], (
        "a job not yet due counts but does not age"
    )
    engine.trigger_jobs([U(6)])
    engine.claim("w", ["mail"], 2)
    assert [(s["count"], s["oldest_due_age"]) for s in engine.stats() if s[
        "type_name"] == "mail" and s["status"] == "running"] == [(2, None)]


def test_chain_jobs(engine: Engine) -> None:
    _arranged(engine)
    assert [
        pick(j, "id", "chain_id", "chain_index", "type_name", "chain_type_name", "status", "output", "continued_to")
        for j in engine.chain_jobs(U(1))
    ] == [
        {"id": U(1), "chain_id": U(1), "chain_index": 0, "type_name": "order", "chain_type_name": "order",
         "status": "completed", "output": None, "continued_to": U(11)},
        {"id": U(11), "chain_id": U(1), "chain_index": 1, "type_name": "pay", "chain_type_name": "order",
         "status": "completed", "output": None, "continued_to": U(12)},
        {"id": U(12), "chain_id": U(1), "chain_index": 2, "type_name": "ship", "chain_type_name": "order",
         "status": "completed", "output": {"tracking": "T1"}, "continued_to": None},
    ]
    assert engine.chain_jobs(U(11)) == [], "a non-root id: nothing"
    assert engine.chain_jobs(U(99)) == []
    assert all(LISTED_JOB_COLUMNS <= set(j) for j in engine.chain_jobs(U(2)))


def _err(engine: Engine, fn: str, *args: Any, **kwargs: Any) -> QueuertError:
    with pytest.raises(QueuertError) as e:
        getattr(engine, fn)(*args, **kwargs)
    return e.value


def test_every_refusal_names_the_job_or_chain_and_writes_nothing(engine: Engine) -> None:
    engine.start_chain("t", id=U(1))
    engine.start_chain("r", id=U(2))
    engine.claim("w1", ["r"])
    engine.start_chain("dep", id=U(3), blockers=[U(2)])
    engine.start_chain("t", id=U(4))
    engine.complete(U(4), None)
    before = (engine.jobs(), engine.edges(), engine.job_types())

    nf = "job 00000000-0000-0000-0000-000000000404 not found"
    for fn, args in [
        ("complete", (U(404), "w1")),
        ("continue_with", (U(404), "w1", "x")),
        ("fail", (U(404), None, "x")),
        ("trigger_jobs", ([U(2), U(404)],)),
        ("retry_jobs", ([U(404)],)),
    ]:
        e = _err(engine, fn, *args)
        assert (type(e), e.sqlstate, e.message, e.detail) == (
            JobNotFoundError, "QU001", nf, "job_id=00000000-0000-0000-0000-000000000404"
        ), fn
        assert e.job_id == U(404)

    e = _err(engine, "start_chain", "x", blockers=[U(404)])
    assert (type(e), e.message, e.detail) == (
        ChainNotFoundError, "blocker chain 00000000-0000-0000-0000-000000000404 not found",
        "chain_id=00000000-0000-0000-0000-000000000404",
    )
    assert e.chain_id == U(404)

    e = _err(engine, "complete", U(4), "w1")
    assert (type(e), e.detail) == (InvalidJobStatusError, "job_id=00000000-0000-0000-0000-000000000004, status=completed")
    e = _err(engine, "complete", U(2), "w2")
    assert (type(e), e.detail) == (JobTakenError, "job_id=00000000-0000-0000-0000-000000000002, worker_id=w1")
    e = _err(engine, "complete", U(2), "w1", attempt=9)
    assert (type(e), e.detail) == (JobTakenError, "job_id=00000000-0000-0000-0000-000000000002, attempt=1")

    e = _err(engine, "cancel_chains", [U(2)])
    assert (type(e), e.detail) == (
        ChainHasDependentsError,
        "chain_id=00000000-0000-0000-0000-000000000002, job_id=00000000-0000-0000-0000-000000000003",
    )
    e = _err(engine, "delete_chains", [U(2)], cascade=True)
    assert e.message == (
        "cannot delete chain 00000000-0000-0000-0000-000000000002: "
        "job 00000000-0000-0000-0000-000000000003 outside the set waits on it"
    ), "cascade adds blockers, not dependents"

    for fn, args, kwargs in [
        ("start_chain", ("",), {}),
        ("start_chain", ("a" * 256,), {}),
        ("start_chain", ("x",), {"dedup_key": "k", "dedup_scope": "nope"}),
        ("start_chain", ("x",), {"schedule_after": timedelta(seconds=-1)}),
        ("start_chain", ("x",), {"schedule_at": engine.now, "schedule_after": timedelta(seconds=1)}),
        ("start_chains", ([{"type_name": "x", "extra": 1}],), {}),
        ("start_chains", ([{"input": 1}],), {}),
        ("start_chains", ("x",), {}),
        ("trigger_jobs", ([None],), {}),
        ("cancel_chains", (None,), {}),
    ]:
        e = _err(engine, fn, *args, **kwargs)
        assert (type(e), e.sqlstate) == (InvalidArgumentError, "QU006"), (fn, args, kwargs)
    e = _err(engine, "start_chain", "x", id=U(1))
    assert e.detail == "job_id=00000000-0000-0000-0000-000000000001"
    e = _err(engine, "continue_with", U(2), "w1", "x", blockers=[U(2)])
    assert e.detail == "chain_id=00000000-0000-0000-0000-000000000002"

    assert (engine.jobs(), engine.edges(), engine.job_types()) == before, "no refused call wrote anything"
