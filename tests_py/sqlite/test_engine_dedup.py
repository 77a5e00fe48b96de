"""Deduplication (tests_sql/dedup.sql): key scope (chain type, key) over
roots, scopes incomplete/any, windows."""

from __future__ import annotations

from datetime import timedelta

import pytest
from .sqlite_backends import U, Engine, pick

from queuert.errors import InvalidArgumentError


def hit(engine: Engine, **kw: object) -> dict:
    return pick(engine.start_chain("welcome", dedup_key="user-7", **kw), "id", "deduplicated")


def test_a_second_start_with_the_key_returns_the_existing_chain(engine: Engine) -> None:
    now = engine.now
    first = engine.start_chain("welcome", id=U(1), dedup_key="user-7", schedule_after=timedelta(minutes=1))
    assert pick(first, "id", "deduplicated") == {"id": U(1), "deduplicated": False}
    assert engine.job(U(1))["dedup_key"] == "user-7"  # type: ignore[index]
    again = engine.start_chain("welcome", id=U(2), dedup_key="user-7", input={"x": 1})
    assert again == {
        "id": U(1), "chain_id": U(1), "type_name": "welcome", "status": "pending",
        "scheduled_at": now + timedelta(minutes=1), "created_at": now, "deduplicated": True,
    }
    assert len(engine.jobs()) == 1, "a hit writes nothing"
    assert engine.job(U(1))["input"] is None, "the existing chain is unchanged"  # type: ignore[index]
    other = engine.start_chain("other", id=U(3), dedup_key="user-7")
    assert pick(other, "id", "deduplicated") == {"id": U(3), "deduplicated": False}, "same key, other type"
    plain = engine.start_chain("welcome", id=U(4))
    assert pick(plain, "id", "deduplicated") == {"id": U(4), "deduplicated": False}, "no key never dedups"


def test_the_match_reports_the_chains_current_status(engine: Engine) -> None:
    now = engine.now
    engine.start_chain("welcome", id=U(1), dedup_key="user-7", schedule_after=timedelta(minutes=1))
    engine.trigger_jobs([U(1)])
    engine.claim("w", ["welcome"])
    assert pick(engine.start_chain("welcome", dedup_key="user-7"), "id", "status", "deduplicated") == {
        "id": U(1), "status": "running", "deduplicated": True,
    }
    engine.continue_with(U(1), "w", "welcome-2", id=U(10), schedule_after=timedelta(hours=1))
    assert pick(
        engine.start_chain("welcome", dedup_key="user-7"), "id", "type_name", "status", "scheduled_at", "deduplicated"
    ) == {"id": U(1), "type_name": "welcome", "status": "pending", "scheduled_at": now, "deduplicated": True}, (
        "status of its last job, root type and root scheduled_at"
    )
    engine.set_job_type("welcome-2", max_attempts=1)
    engine.trigger_jobs([U(10)])
    engine.claim("w", ["welcome-2"])
    engine.fail(U(10), "w", "x")
    assert pick(engine.start_chain("welcome", dedup_key="user-7"), "status", "deduplicated") == {
        "status": "failed", "deduplicated": True,
    }, "a failed chain still matches scope incomplete"

    engine.retry_jobs([U(10)])
    engine.complete(U(10), None, "ok")
    assert pick(engine.start_chain("welcome", dedup_key="user-7", dedup_scope="any"), "id", "status", "deduplicated") == {
        "id": U(1), "status": "completed", "deduplicated": True,
    }
    assert pick(engine.start_chain("welcome", id=U(5), dedup_key="user-7"), "id", "status", "deduplicated") == {
        "id": U(5), "status": "pending", "deduplicated": False,
    }, "scope incomplete misses a completed chain"
    engine.set_job(U(1), created_at=now - timedelta(hours=1))
    assert hit(engine, dedup_scope="any") == {"id": U(5), "deduplicated": True}, "the most recently created wins"

    engine.cancel_chains([U(5)])
    assert hit(engine, dedup_scope="any", dedup_window=timedelta(hours=2)) == {"id": U(5), "deduplicated": True}
    engine.set_job(U(5), created_at=now - timedelta(minutes=30))
    assert hit(engine, dedup_scope="any", dedup_window=timedelta(minutes=45)) == {"id": U(5), "deduplicated": True}
    assert hit(engine, dedup_scope="any", dedup_window=timedelta(hours=2)) == {"id": U(5), "deduplicated": True}
    assert hit(engine, id=U(6), dedup_scope="any", dedup_window=timedelta(minutes=10)) == {
        "id": U(6), "deduplicated": False,
    }, "all matches older than the window: a new chain"
    assert hit(engine, id=U(7), dedup_scope="incomplete") == {"id": U(6), "deduplicated": True}


def test_a_window_excludes_an_older_incomplete_chain(engine: Engine) -> None:
    engine.start_chain("win", id=U(20), dedup_key="k")
    engine.set_job(U(20), created_at=engine.now - timedelta(days=1))
    r = engine.start_chain("win", id=U(21), dedup_key="k", dedup_window=timedelta(hours=1))
    assert pick(r, "id", "deduplicated") == {"id": U(21), "deduplicated": False}
    assert all(j["dedup_key"] is None for j in engine.jobs() if j["chain_index"] > 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dedup_key": "k", "dedup_scope": "everything"},
        {"dedup_key": "k", "dedup_window": timedelta(minutes=-1)},
        {"dedup_scope": "bogus"},
        {"dedup_key": "k" * 1025},
    ],
)
def test_bad_dedup_arguments_are_qu006(engine: Engine, kwargs: dict) -> None:
    with pytest.raises(InvalidArgumentError):
        engine.start_chain("x", **kwargs)
    assert engine.jobs() == []
