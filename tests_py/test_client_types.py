"""Typed job types, continuations, RetryAt and error parsing (no database needed)."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta, timezone

import psycopg
import pydantic
import pytest
from typing_extensions import TypedDict

from queuert import (
    Continuation,
    InvalidArgumentError,
    JobType,
    PayloadValidationError,
    RetryAt,
    continue_with,
)
from queuert.errors import parse_detail


class SignupModel(pydantic.BaseModel):
    email: str
    at: datetime


@dataclasses.dataclass
class SignupData:
    user_id: int
    tags: list[str] = dataclasses.field(default_factory=list)


class SignupDict(TypedDict):
    user_id: int


def test_pydantic_model_roundtrip() -> None:
    jt = JobType("m", input=SignupModel, output=int)
    value = SignupModel(email="a@b", at=datetime(2024, 1, 2, 3, 4, tzinfo=timezone.utc))
    stored = jt.dump_input(value)
    assert stored == {"email": "a@b", "at": "2024-01-02T03:04:00Z"}
    assert jt.parse_input(stored) == value
    assert jt.dump_output(5) == 5 and jt.parse_output(5) == 5


def test_dataclass_roundtrip_and_coercion() -> None:
    jt = JobType("d", input=SignupData)
    assert jt.dump_input(SignupData(1, ["x"])) == {"user_id": 1, "tags": ["x"]}
    assert jt.validate_input({"user_id": "2"}) == SignupData(2, [])
    assert jt.parse_input({"user_id": 3}) == SignupData(3, [])
    with pytest.raises(PayloadValidationError):
        jt.dump_input(SignupData("nope"))  # type: ignore[arg-type]


def test_typeddict_and_plain_types() -> None:
    td = JobType("t", input=SignupDict, output=list[int])
    assert td.dump_input({"user_id": 1}) == {"user_id": 1}
    with pytest.raises(PayloadValidationError):
        td.dump_input({"user_id": "x"})  # type: ignore[typeddict-item]
    assert td.dump_output([1, 2]) == [1, 2]
    with pytest.raises(PayloadValidationError) as info:
        td.dump_output(["a"])  # type: ignore[list-item]
    assert info.value.kind == "output"

    plain = JobType("p", input=int)
    assert plain.dump_input(3) == 3
    assert plain.output_type is type(None)
    assert plain.dump_output(None) is None
    none_in = JobType("n")
    assert none_in.dump_input(None) is None
    with pytest.raises(PayloadValidationError):
        none_in.dump_input(1)  # type: ignore[arg-type]


def test_stored_input_that_no_longer_parses_is_a_clear_error() -> None:
    jt = JobType("evolving", input=SignupData)
    job_id, chain_id = uuid.uuid4(), uuid.uuid4()
    with pytest.raises(PayloadValidationError) as info:
        jt.parse_input({"uid": 1}, job_id=job_id, chain_id=chain_id)
    err = info.value
    assert err.stored is True and err.kind == "input" and err.type_name == "evolving"
    assert err.job_id == job_id and err.chain_id == chain_id
    assert "no longer parses" in str(err) and str(job_id) in str(err)
    assert isinstance(err.__cause__, pydantic.ValidationError)


def test_type_name_rules() -> None:
    with pytest.raises(InvalidArgumentError):
        JobType("", input=int)
    with pytest.raises(InvalidArgumentError):
        JobType("x" * 256, input=int)
    assert JobType("x" * 255, input=int).name == "x" * 255


def test_continues_with_is_lazy_and_allows_loops() -> None:
    # 'poll' loops on itself and may hand off to 'done', declared later
    poll: JobType[int, None] = JobType("poll", input=int, continues_with=lambda: [poll, done])
    done = JobType("done", input=str, continues_with=())
    anything = JobType("anything", input=int)
    assert poll.continues_with == frozenset({"poll", "done"})
    assert done.continues_with == frozenset()
    assert anything.continues_with is None and anything.may_continue_with("x")
    poll.check_continuation(continue_with(poll, 2))
    poll.check_continuation(continue_with(done, "ok"))
    with pytest.raises(InvalidArgumentError, match="may not continue with 'anything'"):
        poll.check_continuation(continue_with(anything, 1))
    with pytest.raises(InvalidArgumentError):
        done.check_continuation(continue_with("poll", 1))
    named = JobType("named", input=int, continues_with=["a", "b"])
    assert named.continues_with == frozenset({"a", "b"})


def test_continuation_validates_its_input_when_built() -> None:
    nxt = JobType("next", input=SignupData)
    c = continue_with(nxt, SignupData(1), schedule_after=timedelta(seconds=5), priority=4)
    assert isinstance(c, Continuation)
    assert c.type_name == "next" and c.input_json == {"user_id": 1, "tags": []}
    assert c.priority == 4
    with pytest.raises(PayloadValidationError):
        continue_with(nxt, {"user_id": "bad"})  # type: ignore[arg-type]
    with pytest.raises(PayloadValidationError):
        Continuation(nxt, {"nope": 1})
    with pytest.raises(InvalidArgumentError):
        continue_with(nxt, SignupData(1), schedule_at=datetime.now(timezone.utc),
                      schedule_after=timedelta(1))
    with pytest.raises(InvalidArgumentError):
        continue_with(nxt, SignupData(1), schedule_after=timedelta(seconds=-1))
    blockers = [uuid.uuid4()]
    assert continue_with("by-name", {"free": "form"}, blockers=blockers).blockers == tuple(blockers)


def test_retry_at() -> None:
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert RetryAt(timedelta(minutes=1)).at(now) == now + timedelta(minutes=1)
    assert RetryAt(datetime(2030, 1, 2)).at() == datetime(2030, 1, 2, tzinfo=timezone.utc)
    r = RetryAt(now, "rate limited")
    assert r.reason == "rate limited" and str(r) == "rate limited"
    assert isinstance(r, Exception)
    with pytest.raises(InvalidArgumentError):
        RetryAt(5)  # type: ignore[arg-type]


def test_parse_detail() -> None:
    jid = uuid.uuid4()
    assert parse_detail(f"job_id={jid}") == {"job_id": str(jid)}
    assert parse_detail(f"chain_id={jid}, job_id=x, status=running") == {
        "chain_id": str(jid), "job_id": "x", "status": "running",
    }
    assert parse_detail(None) == {}
    assert parse_detail("free text without pairs") == {}


# ---------------------------------------------------------------- ChainSpec and StartedChain


def test_chain_spec_is_an_ordinary_frozen_dataclass() -> None:
    from queuert import ChainSpec

    typed = JobType("typed", input=SignupData)
    plain = ChainSpec("plain", {"at": datetime(2024, 1, 1, tzinfo=timezone.utc)})
    assert (plain.job_type, plain.type_name, plain.priority, plain.dedup_scope) == (
        "plain", "plain", 0, "incomplete",
    )
    # an untyped input is stored as given, in pydantic's JSON form
    assert plain.input_json == {"at": "2024-01-01T00:00:00Z"}
    assert plain == ChainSpec("plain", {"at": datetime(2024, 1, 1, tzinfo=timezone.utc)})
    assert plain != ChainSpec("plain", {"at": datetime(2024, 1, 1, tzinfo=timezone.utc)}, priority=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plain.priority = 3  # type: ignore[misc]
    moved = dataclasses.replace(plain, priority=5, dedup_key="k")
    assert (moved.priority, moved.dedup_key, moved.input) == (5, "k", plain.input)
    assert [f.name for f in dataclasses.fields(ChainSpec)][:3] == ["job_type", "input", "id"]

    # a typed input is validated (and coerced) when the spec is built
    spec = ChainSpec(typed, {"user_id": "7"})  # type: ignore[arg-type]
    assert spec.input_json == {"user_id": 7, "tags": []}
    with pytest.raises(PayloadValidationError):
        ChainSpec(typed, {"user_id": "x"})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        ChainSpec("", None)
    with pytest.raises(InvalidArgumentError, match="schedule_at or schedule_after"):
        ChainSpec("x", None, schedule_at=datetime.now(timezone.utc), schedule_after=timedelta(1))
    with pytest.raises(TypeError):
        ChainSpec("x", None, colour="red")  # type: ignore[call-overload]


def test_chain_spec_items_carry_only_what_differs_from_the_defaults() -> None:
    from queuert import ChainSpec
    from queuert._arguments import batch_json, chain_items

    blocker = uuid.uuid4()
    items = chain_items(
        [
            ChainSpec("a", {"n": 1}),
            ChainSpec("b", None),
            ChainSpec("c", [1], priority=0),  # given, yet at its default
            ChainSpec("d", None, blockers=[blocker], priority=2, schedule_after=timedelta(seconds=2)),
        ]
    )
    assert items == [
        {"type_name": "a", "input": {"n": 1}},
        {"type_name": "b"},
        {"type_name": "c", "input": [1]},
        {"type_name": "d", "blockers": [str(blocker)], "priority": 2, "schedule_after_ms": 2000},
    ]
    with pytest.raises(InvalidArgumentError, match="priority"):
        chain_items([ChainSpec("e", None, priority="high")])  # type: ignore[call-overload]
    with pytest.raises(InvalidArgumentError, match="ChainSpec items"):
        chain_items([{"type_name": "f"}])  # type: ignore[list-item]
    # one serialisation pass; an input that cannot be serialised is named
    assert batch_json([{"type_name": "a", "input": {"at": uuid.UUID(int=1)}}]) == (
        '[{"type_name":"a","input":{"at":"00000000-0000-0000-0000-000000000001"}}]'
    )
    with pytest.raises(InvalidArgumentError, match="start_chains item 2: payload is not JSON"):
        batch_json(chain_items([ChainSpec("ok", 1), ChainSpec("bad", object())]))


def test_started_chain_rows_are_ordinary_records() -> None:
    from queuert import StartedChain
    from queuert.types import started_chain

    cid, now = uuid.uuid4(), datetime.now(timezone.utc)
    built = started_chain((cid, "t", "pending", now, now, False))
    assert built == StartedChain(cid, cid, "t", "pending", now, now, False)
    assert repr(built) == repr(StartedChain(cid, cid, "t", "pending", now, now, False))
    assert hash(built) == hash(StartedChain(cid, cid, "t", "pending", now, now, False))
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.status = "blocked"  # type: ignore[misc]


def test_started_chains_carry_the_timestamps_psycopg_reads_in_the_sessions_zone(
    conn: psycopg.Connection[tuple[object, ...]],
) -> None:
    """The client selects start_chain(s)' timestamps as text and parses them
    itself (each distinct text once): the values must be the ones psycopg
    reads from the job rows, in the session's time zone, whether a batch's
    rows repeat them or not."""
    from queuert import ChainSpec, client

    conn.execute("SET TIME ZONE 'America/Sao_Paulo'")
    one = client.start_chain(conn, "tz-one", {"n": 0}, schedule_after=timedelta(seconds=5))
    many = client.start_chains(
        conn,
        [ChainSpec("tz-many", {"n": 1}), ChainSpec("tz-many", {"n": 2})]
        + [ChainSpec("tz-many", {"n": n}, schedule_after=timedelta(seconds=n)) for n in (3, 4)],
    )
    for started in [one, *many]:
        row = conn.execute(
            "SELECT scheduled_at, created_at FROM queuert.job WHERE id = %s", (started.id,)
        ).fetchone()
        assert row is not None
        assert (started.scheduled_at, started.created_at) == row
        assert started.created_at.utcoffset() == row[1].utcoffset() == timedelta(hours=-3)
        assert started.created_at.tzinfo == row[1].tzinfo
    assert one.scheduled_at - one.created_at == timedelta(seconds=5)
    assert many[0].scheduled_at == many[0].created_at == many[1].created_at == many[3].created_at
    assert many[3].scheduled_at - many[3].created_at == timedelta(seconds=4)
