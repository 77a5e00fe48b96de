"""start_chain (tests_sql/start_chain.sql): root job, returned row,
scheduling, blockers, defaults, bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from .sqlite_backends import U, Engine, pick

from queuert.errors import ChainNotFoundError, InvalidArgumentError

JOB_FIELDS = (
    "type_name", "chain_id", "chain_type_name", "chain_index", "input", "output", "status",
    "priority", "attempt", "scheduled_at", "created_at", "completed_at", "completed_by",
    "leased_by", "leased_until", "last_attempt_at", "last_attempt_error", "continued_to",
    "dedup_key", "trace_context",
)


def test_a_plain_start_is_one_pending_root_due_now(engine: Engine) -> None:
    r = engine.start_chain("send-email", input={"user_id": 7}, id=U(1), trace_context="00-abc-def-01")
    now = engine.now
    assert r == {
        "id": U(1), "chain_id": U(1), "type_name": "send-email", "status": "pending",
        "scheduled_at": now, "created_at": now, "deduplicated": False,
    }
    assert pick(engine.job(U(1)), *JOB_FIELDS) == {
        "type_name": "send-email", "chain_id": U(1), "chain_type_name": "send-email",
        "chain_index": 0, "input": {"user_id": 7}, "output": None, "status": "pending",
        "priority": 0, "attempt": 0, "scheduled_at": now, "created_at": now,
        "completed_at": None, "completed_by": None, "leased_by": None, "leased_until": None,
        "last_attempt_at": None, "last_attempt_error": None, "continued_to": None,
        "dedup_key": None, "trace_context": "00-abc-def-01",
    }


def test_a_generated_id_is_the_chain_id_and_stored(engine: Engine) -> None:
    r = engine.start_chain("no-id")
    assert r["id"] is not None and r["id"] == r["chain_id"]
    assert engine.job(r["id"])["status"] == "pending"  # type: ignore[index]


def test_null_arguments_take_their_defaults(engine: Engine) -> None:
    engine.start_chain(
        "nulls", id=U(3), priority=None, dedup_scope=None, input=None,
        schedule_at=None, schedule_after=None, blockers=None,
    )
    assert pick(engine.job(U(3)), "priority", "status", "scheduled_at", "input") == {
        "priority": 0, "status": "pending", "scheduled_at": engine.now, "input": None,
    }


def test_priority_is_stored_and_may_be_negative(engine: Engine) -> None:
    engine.start_chain("prio", id=U(4), priority=-5)
    assert engine.job(U(4))["priority"] == -5  # type: ignore[index]


def test_scheduling(engine: Engine) -> None:
    now = engine.now
    later = engine.start_chain("later", id=U(5), schedule_at=now + timedelta(hours=1))
    assert later["scheduled_at"] == now + timedelta(hours=1)
    assert later["status"] == "pending", "a future job is pending (not yet due)"

    past = engine.start_chain("past", id=U(6), schedule_at=now - timedelta(days=3))
    assert past["scheduled_at"] == now, "past schedule_at is clamped to now (returned)"
    assert engine.job(U(6))["scheduled_at"] == now, "and stored"  # type: ignore[index]

    after = engine.start_chain("after", id=U(7), schedule_after=timedelta(seconds=90))
    assert after["scheduled_at"] == now + timedelta(seconds=90)
    zero = engine.start_chain("after0", id=U(8), schedule_after=timedelta(0))
    assert zero["scheduled_at"] == now


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"schedule_at": "now", "schedule_after": timedelta(seconds=1)}, "both schedule forms"),
        ({"schedule_after": timedelta(seconds=-1)}, "a negative delay"),
    ],
)
def test_bad_schedules_are_qu006(engine: Engine, kwargs: dict, what: str) -> None:
    if kwargs.get("schedule_at") == "now":
        kwargs = {**kwargs, "schedule_at": engine.now}
    with pytest.raises(InvalidArgumentError) as e:
        engine.start_chain("bad", **kwargs)
    assert e.value.sqlstate == "QU006", what
    assert engine.jobs() == []


@pytest.mark.parametrize("type_name", ["", "x" * 256, None])
def test_type_names_must_be_1_to_255_characters(engine: Engine, type_name: str | None) -> None:
    with pytest.raises(InvalidArgumentError):
        engine.start_chain(type_name)


def test_a_255_character_type_name_is_fine(engine: Engine) -> None:
    engine.start_chain("y" * 255, id=U(9))
    assert len(engine.job(U(9))["type_name"]) == 255  # type: ignore[index]


def test_an_existing_id_is_qu006_and_leaves_the_job_untouched(engine: Engine) -> None:
    engine.start_chain("send-email", id=U(1))
    with pytest.raises(InvalidArgumentError) as e:
        engine.start_chain("dup-id", id=U(1))
    assert e.value.message == "a job with id 00000000-0000-0000-0000-000000000001 already exists"
    assert e.value.job_id == U(1)
    assert engine.job(U(1))["type_name"] == "send-email"  # type: ignore[index]


def _arrange_blockers(engine: Engine) -> None:
    engine.start_chain("child", id=U(20))
    engine.start_chain("child", id=U(21))
    engine.set_job(U(21), status="completed", completed_at=engine.now, chain_completed_at=engine.now)


def test_blockers_make_a_job_blocked_while_a_chain_is_incomplete(engine: Engine) -> None:
    _arrange_blockers(engine)
    r = engine.start_chain("parent", id=U(22), blockers=[U(21), U(20), U(21)])
    assert r["status"] == "blocked"
    assert engine.edges(U(22)) == [(U(22), 1, U(21)), (U(22), 2, U(20))], (
        "blocker edges in blocker order, a repeated blocker counted once"
    )
    assert engine.job(U(22))["open_blockers"] == 1, "only the incomplete blocker is open"  # type: ignore[index]

    assert engine.start_chain("parent", id=U(23), blockers=[U(21)])["status"] == "pending"
    assert engine.start_chain("parent", id=U(24), blockers=[])["status"] == "pending"


def test_a_missing_blocker_is_qu002_and_writes_nothing(engine: Engine) -> None:
    _arrange_blockers(engine)
    with pytest.raises(ChainNotFoundError) as e:
        engine.start_chain("parent", id=U(25), blockers=[U(20), U(99)])
    assert e.value.message == "blocker chain 00000000-0000-0000-0000-000000000099 not found"
    assert e.value.chain_id == U(99)
    assert engine.job(U(25)) is None
    with pytest.raises(InvalidArgumentError):
        engine.start_chain("parent", blockers=[U(20), None])


def test_a_non_root_job_is_not_a_chain(engine: Engine) -> None:
    _arrange_blockers(engine)
    engine.start_chain("parent", id=U(22), blockers=[U(21), U(20)])
    engine.claim("w", ["child"])
    engine.continue_with(U(20), "w", "child-step2", id=U(26))
    with pytest.raises(ChainNotFoundError) as e:
        engine.start_chain("parent", blockers=[U(26)])
    assert e.value.message == "blocker chain 00000000-0000-0000-0000-000000000026 not found"
    assert engine.job(U(22))["status"] == "blocked", (  # type: ignore[index]
        "a continued (not completed) blocker chain keeps the dependent blocked"
    )


def test_new_ids_are_version_7_uuids(engine: Engine) -> None:
    one = engine.start_chain("uuid-probe")["id"]
    many = [r["id"] for r in engine.start_chains([{"type_name": "uuid-probe"}] * 50)]
    for job_id in [one, *many]:
        assert job_id.version == 7
        assert str(job_id)[19] in "89ab", "the RFC 4122 variant"
