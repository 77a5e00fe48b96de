"""The synchronous client, one behaviour suite for both backends: each test
runs on PostgreSQL and on SQLite (the ``db`` fixture, backends.py); a test
only one of them can pass is marked ``backend(name, reason=...)``."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from backends import Conn, Db

import queuert
from queuert import (
    ChainCancelledError,
    ChainFailedError,
    ChainHasDependentsError,
    ChainNotFoundError,
    ChainSpec,
    ChainWaitTimeout,
    InvalidArgumentError,
    InvalidJobStatusError,
    JobNotFoundError,
    JobTakenError,
    JobType,
    PayloadValidationError,
    QueuertError,
    continue_with,
)
from queuert.hooks import current_hooks, transaction_hooks


@dataclass
class WelcomeInput:
    user_id: int


@dataclass
class EmailSent:
    message_id: str


welcome = JobType(
    "send-welcome-email", input=WelcomeInput, output=EmailSent, continues_with=lambda: [follow_up]
)
follow_up = JobType("follow-up", input=WelcomeInput, output=str, continues_with=())
report = JobType("report", input=dict[str, int], output=int)

LISTEN = "LISTEN/NOTIFY is PostgreSQL's; on SQLite wait_for_chain polls"


@pytest.fixture
def conn(db: Db) -> Iterator[Conn]:
    """A connection whose writes begin a transaction the test commits."""
    connection = db.connect()
    try:
        yield connection
    finally:
        connection.close()


def rollback(conn: Conn) -> None:
    conn.rollback()


# ---------------------------------------------------------------- transactions


def test_rollback_leaves_no_job_and_commit_keeps_it(db: Db, conn: Conn) -> None:
    db.execute(conn, "CREATE TABLE app_user (id int PRIMARY KEY)")
    conn.commit()

    db.execute(conn, "INSERT INTO app_user VALUES (%s)", (1,))
    kept = queuert.start_chain(conn, welcome, WelcomeInput(user_id=1))
    conn.commit()

    db.execute(conn, "INSERT INTO app_user VALUES (%s)", (2,))
    queuert.start_chain(conn, welcome, WelcomeInput(user_id=2))
    conn.rollback()  # the signup failed

    # seen from another connection: exactly the committed user and job
    other = db.connect()
    try:
        users = [r[0] for r in db.execute(other, "SELECT id FROM app_user ORDER BY id")]
    finally:
        other.close()
    assert users == [1]
    assert [j["id"] for j in db.jobs()] == [kept.id]


def test_client_never_commits(db: Db, conn: Conn) -> None:
    started = queuert.start_chain(conn, "plain", {"a": 1})
    queuert.trigger_jobs(conn, [started.id])
    queuert.get_chain(conn, started.chain_id)
    assert db.in_transaction(conn)
    assert db.count_jobs() == 0, "nothing committed"
    conn.rollback()
    assert db.count_jobs(conn) == 0


def test_a_call_first_in_the_transaction_commits_with_the_rows_after_it(db: Db, conn: Conn) -> None:
    """The job comes before the application's row: they still commit or roll
    back together (a write begins the transaction the caller settles)."""
    db.execute(conn, "CREATE TABLE app_user (id int PRIMARY KEY)")
    conn.commit()
    queuert.start_chain(conn, "first", None)
    db.execute(conn, "INSERT INTO app_user VALUES (%s)", (1,))
    conn.rollback()
    assert db.count_jobs() == 0
    queuert.start_chain(conn, "first", None)
    db.execute(conn, "INSERT INTO app_user VALUES (%s)", (1,))
    conn.commit()
    assert db.count_jobs() == 1


def test_autocommit_connection_commits_each_call(db: Db) -> None:
    ac = db.connect(autocommit=True)
    try:
        started = queuert.start_chain(ac, "plain", [1, 2])
        assert [j["id"] for j in db.jobs()] == [started.id]
        assert not db.in_transaction(ac)
    finally:
        ac.close()


# ---------------------------------------------------------------- start_chain


def test_start_chain_returns_the_row_and_stores_validated_input(db: Db, conn: Conn) -> None:
    started = queuert.start_chain(conn, welcome, WelcomeInput(user_id=7), priority=3)
    assert started.id == started.chain_id
    assert started.type_name == "send-welcome-email"
    assert started.status == "pending"
    assert started.deduplicated is False
    assert started.scheduled_at.tzinfo is not None
    row = db.job(conn, started.id)
    assert (row["input"], row["priority"], row["chain_index"], row["chain_type_name"]) == (
        {"user_id": 7}, 3, 0, "send-welcome-email",
    )


def test_start_chain_coerces_input_through_the_declared_type(conn: Conn) -> None:
    # a dict is accepted for a dataclass input and stored in its JSON form
    started = queuert.start_chain(conn, welcome, {"user_id": "8"})  # type: ignore[arg-type]
    chain = queuert.get_chain(conn, started.chain_id)
    assert chain.jobs[0].input == {"user_id": 8}
    assert welcome.parse_input(chain.jobs[0].input) == WelcomeInput(user_id=8)


def test_untyped_input_is_stored_as_json_by_pydantics_rules(conn: Conn) -> None:
    """A type given by name stores its input as given; values JSON has no
    type for are written as pydantic writes them, on both backends."""
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    ident = uuid.UUID(int=7)
    started = queuert.start_chain(conn, "plain", {"when": when, "id": ident, "n": [1.5, None]})
    batch = queuert.start_chains(conn, [ChainSpec("plain", {"when": when})])
    chain = queuert.get_chain(conn, started.chain_id)
    assert chain.jobs[0].input == {"when": "2030-01-02T03:04:05Z", "id": str(ident), "n": [1.5, None]}
    assert queuert.get_chain(conn, batch[0].chain_id).jobs[0].input == {"when": "2030-01-02T03:04:05Z"}
    with pytest.raises(InvalidArgumentError, match="JSON"):
        queuert.start_chain(conn, "plain", {"x": object()})


def test_bad_input_is_rejected_before_anything_is_written(db: Db, conn: Conn) -> None:
    with pytest.raises(PayloadValidationError) as info:
        queuert.start_chain(conn, welcome, {"user_id": "not a number"})  # type: ignore[arg-type]
    assert info.value.type_name == "send-welcome-email"
    assert info.value.kind == "input"
    # nothing reached the database: the transaction was not even started
    assert not db.in_transaction(conn)
    assert db.count_jobs(conn) == 0

    with pytest.raises(PayloadValidationError):
        queuert.start_chains(
            conn,
            [ChainSpec(welcome, WelcomeInput(1)), ChainSpec(welcome, WelcomeInput("x"))],  # type: ignore[arg-type]
        )
    assert db.count_jobs(conn) == 0


@pytest.mark.backend("postgres", reason="reads the SQL call the client sends to PostgreSQL")
def test_start_chain_sends_only_the_arguments_it_was_given(db: Db, conn: Conn) -> None:
    """Arguments at the engine's defaults are left out of the call (the
    common start binds two parameters), and every other one arrives."""
    import re

    from queuert import _operations

    def sent(**kwargs: object) -> set[str]:
        """The named arguments of the start_chain call the client sends."""
        args: dict[str, object] = dict(
            id=None, schedule_at=None, schedule_after=None, blockers=None, dedup_key=None,
            dedup_scope="incomplete", dedup_window=None, priority=0, trace_context=None,
        )
        args.update(kwargs)
        query = _operations.start_chain("queuert", "t", {"n": 1}, **args).query  # type: ignore[arg-type]
        names = re.findall(r"(\w+) => %s", query.sql)
        assert len(names) == len(query.params)  # one bound parameter per argument
        return set(names)

    assert set(sent()) == {"type_name", "input"}
    assert set(sent(priority=5, dedup_scope="any", dedup_key="k")) == {
        "type_name", "input", "priority", "dedup_scope", "dedup_key"
    }


def test_every_start_chain_argument_arrives(db: Db, conn: Conn) -> None:
    blocker = queuert.start_chain(conn, "blocker", None)
    given = uuid.uuid4()
    started = queuert.start_chain(
        conn, "every-argument", {"n": 1}, id=given, schedule_after=timedelta(minutes=1),
        blockers=[blocker.chain_id], dedup_key="k", dedup_scope="any",
        dedup_window=timedelta(hours=1), priority=7, trace_context="00-t",
    )
    assert (started.id, started.status) == (given, "blocked")
    row = db.job(conn, given)
    assert (row["priority"], row["dedup_key"], row["trace_context"], row["scheduled_at"] - row["created_at"]) == (
        7, "k", "00-t", timedelta(minutes=1),
    )
    again = queuert.start_chain(
        conn, "every-argument", None, dedup_key="k", dedup_scope="any",
        dedup_window=timedelta(hours=1),
    )
    assert again.deduplicated and again.id == given


def test_schedule_after_and_schedule_at(db: Db, conn: Conn) -> None:
    with db.fixed_now(conn) as now:
        later = queuert.start_chain(conn, "plain", None, schedule_after=timedelta(minutes=5))
        assert later.scheduled_at == now + timedelta(minutes=5)
        at = datetime(2100, 1, 1, tzinfo=timezone.utc)
        fixed = queuert.start_chain(conn, "plain", None, schedule_at=at)
        assert fixed.scheduled_at == at
        past = queuert.start_chain(conn, "plain", None, schedule_at=datetime(2000, 1, 1, tzinfo=timezone.utc))
        assert past.scheduled_at == now  # clamped
    with pytest.raises(InvalidArgumentError):
        queuert.start_chain(conn, "plain", None, schedule_at=at, schedule_after=timedelta(1))


def test_dedup_returns_the_existing_chain(db: Db, conn: Conn) -> None:
    first = queuert.start_chain(conn, welcome, WelcomeInput(1), dedup_key="user-1")
    again = queuert.start_chain(conn, welcome, WelcomeInput(2), dedup_key="user-1")
    assert again.deduplicated is True
    assert again.chain_id == first.chain_id
    assert again.created_at == first.created_at
    assert db.count_jobs(conn) == 1

    other_key = queuert.start_chain(conn, welcome, WelcomeInput(1), dedup_key="user-2")
    assert other_key.deduplicated is False

    # once the chain is completed, 'incomplete' no longer matches but 'any' does
    queuert.complete_chain(conn, first.chain_id, EmailSent("m"), job_type=welcome)
    fresh = queuert.start_chain(conn, welcome, WelcomeInput(1), dedup_key="user-1")
    assert fresh.deduplicated is False and fresh.chain_id != first.chain_id
    anyscope = queuert.start_chain(
        conn, welcome, WelcomeInput(1), dedup_key="user-1", dedup_scope="any"
    )
    assert anyscope.deduplicated is True and anyscope.chain_id == fresh.chain_id


def test_start_chain_with_given_id_and_blockers(db: Db, conn: Conn) -> None:
    child_id = uuid.uuid4()
    child = queuert.start_chain(conn, "child", {"n": 1}, id=child_id)
    assert child.id == child_id
    parent = queuert.start_chain(conn, report, {"n": 1}, blockers=[child_id])
    assert parent.status == "blocked"
    queuert.complete_chain(conn, child_id, {"ok": True})
    assert db.job(conn, parent.id)["status"] == "pending"


# ---------------------------------------------------------------- start_chains


def test_start_chains_one_call_in_order_with_fan_in(db: Db, conn: Conn) -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    specs: list[ChainSpec] = [ChainSpec("child", {"i": i}, id=ids[i]) for i in range(3)]
    specs.append(ChainSpec(report, {"children": 3}, blockers=ids))
    specs.append(ChainSpec(welcome, WelcomeInput(5), dedup_key="k", priority=2))
    specs.append(ChainSpec(welcome, WelcomeInput(6), dedup_key="k"))
    specs.append(ChainSpec("later", None, schedule_after=timedelta(hours=1)))
    started = queuert.start_chains(conn, specs)

    assert [s.id for s in started[:3]] == ids
    assert [s.type_name for s in started] == [
        "child", "child", "child", "report", "send-welcome-email", "send-welcome-email", "later",
    ]
    assert started[3].status == "blocked"
    assert started[5].deduplicated is True and started[5].chain_id == started[4].chain_id
    assert started[6].scheduled_at - started[0].scheduled_at == timedelta(hours=1)
    assert db.count_jobs(conn) == 6
    assert queuert.start_chains(conn, []) == []


def test_start_chains_answers_the_same_whatever_the_connections_row_factory(db: Db, conn: Conn) -> None:
    """The client reads its rows its own way, whatever the caller set on the
    connection (psycopg's dict_row, sqlite3.Row)."""
    if db.name == "postgres":
        from psycopg.rows import dict_row

        conn.row_factory = dict_row
    else:
        conn.row_factory = sqlite3.Row
    plain = queuert.start_chains(conn, [ChainSpec("plain", {"i": i}, priority=i) for i in range(3)])
    assert [s.status for s in plain] == ["pending"] * 3
    assert all(isinstance(s.id, uuid.UUID) and s.id == s.chain_id for s in plain)
    assert all(isinstance(s.created_at, datetime) and s.deduplicated is False for s in plain)
    assert [s.type_name for s in plain] == ["plain"] * 3
    assert [(j["id"], j["priority"]) for j in db.jobs(conn)] == [(s.id, i) for i, s in enumerate(plain)]
    assert queuert.get_chain(conn, plain[0].chain_id).jobs[0].input == {"i": 0}


@pytest.mark.backend("postgres", reason="SQLite stores times in UTC; a session time zone is PostgreSQL's")
def test_start_chains_timestamps_are_the_rows_timestamps(db: Db, conn: Conn) -> None:
    """The batch's rows share their timestamps and the client reuses the
    parsed value when the text repeats: what comes back is what is stored,
    with the connection's time zone, row by row."""
    conn.execute("SET TIME ZONE 'America/New_York'")
    specs = [ChainSpec("t", i) for i in range(3)]
    specs += [ChainSpec("t", 3, schedule_after=timedelta(minutes=1)), ChainSpec("t", 4)]
    started = queuert.start_chains(conn, specs)
    rows = {
        r[0]: (r[1], r[2])
        for r in conn.execute("SELECT id, scheduled_at, created_at FROM queuert.job")
    }
    assert [(s.scheduled_at, s.created_at) for s in started] == [rows[s.id] for s in started]
    assert [s.scheduled_at.tzinfo for s in started] == [rows[s.id][0].tzinfo for s in started]
    assert str(started[0].created_at.tzinfo) == "America/New_York"
    assert started[3].scheduled_at - started[3].created_at == timedelta(minutes=1)
    assert started[4].scheduled_at == started[4].created_at == started[0].created_at


def test_start_chains_timestamps_are_what_is_stored(db: Db, conn: Conn) -> None:
    specs = [ChainSpec("t", i) for i in range(3)]
    specs += [ChainSpec("t", 3, schedule_after=timedelta(minutes=1)), ChainSpec("t", 4)]
    started = queuert.start_chains(conn, specs)
    rows = {j["id"]: (j["scheduled_at"], j["created_at"]) for j in db.jobs(conn)}
    assert [(s.scheduled_at, s.created_at) for s in started] == [rows[s.id] for s in started]
    assert started[3].scheduled_at - started[3].created_at == timedelta(minutes=1)
    assert started[4].scheduled_at == started[4].created_at == started[0].created_at


def test_start_chains_rejects_a_bad_item_and_writes_nothing(db: Db, conn: Conn) -> None:
    with pytest.raises(ChainNotFoundError) as info:
        queuert.start_chains(
            conn, [ChainSpec("a", None), ChainSpec("b", None, blockers=[uuid.uuid4()])]
        )
    assert info.value.sqlstate == "QU002"
    conn.rollback()
    assert db.count_jobs(conn) == 0


# ---------------------------------------------------------------- complete_chain


def test_complete_chain_completes_the_current_job(conn: Conn) -> None:
    started = queuert.start_chain(conn, welcome, WelcomeInput(1))
    done = queuert.complete_chain(conn, started.chain_id, EmailSent("m-1"), job_type=welcome)
    assert done.job_id == started.id
    assert done.chain_completed is True
    assert done.continued_to is None
    chain = queuert.get_chain(conn, started.chain_id)
    assert chain.status == "completed"
    assert chain.output == {"message_id": "m-1"}
    assert chain.output_as(welcome) == EmailSent("m-1")
    assert chain.jobs[0].completed_by is None

    with pytest.raises(InvalidJobStatusError) as info:
        queuert.complete_chain(conn, started.chain_id, EmailSent("again"))
    assert info.value.job_id == started.id
    assert info.value.sqlstate == "QU003"


def test_complete_chain_continues_then_completes(conn: Conn) -> None:
    started = queuert.start_chain(conn, welcome, WelcomeInput(1))
    step = queuert.complete_chain(
        conn,
        started.chain_id,
        continue_with=continue_with(follow_up, WelcomeInput(1), schedule_after=timedelta(0)),
        job_type=welcome,
    )
    assert step.job_id == started.id and step.chain_completed is False
    nxt = step.continued_to
    assert nxt is not None
    assert (nxt.chain_id, nxt.chain_index, nxt.type_name, nxt.status) == (
        started.chain_id, 1, "follow-up", "pending",
    )
    done = queuert.complete_chain(conn, started.chain_id, "sent", job_type=follow_up)
    assert done.job_id == nxt.id and done.chain_completed
    chain = queuert.get_chain(conn, started.chain_id)
    assert [j.type_name for j in chain.jobs] == ["send-welcome-email", "follow-up"]
    assert chain.jobs[0].continued_to == nxt.id
    assert chain.output == "sent"


def test_repeated_continuation_of_a_given_job_is_idempotent(db: Db, conn: Conn) -> None:
    started = queuert.start_chain(conn, welcome, WelcomeInput(1))
    cont = continue_with(follow_up, WelcomeInput(1))
    first = queuert.complete_chain(conn, started.chain_id, continue_with=cont, job_id=started.id)
    second = queuert.complete_chain(conn, started.chain_id, continue_with=cont, job_id=started.id)
    assert first.continued_to is not None and second.continued_to is not None
    assert second.continued_to.id == first.continued_to.id
    assert second.continued_to.deduplicated is True
    assert db.count_jobs(conn) == 2


def test_complete_chain_checks_type_and_continuation(db: Db, conn: Conn) -> None:
    started = queuert.start_chain(conn, welcome, WelcomeInput(1))
    with pytest.raises(InvalidArgumentError) as info:
        queuert.complete_chain(conn, started.chain_id, "x", job_type=follow_up)
    assert info.value.chain_id == started.chain_id and info.value.job_id == started.id
    with pytest.raises(InvalidArgumentError, match="may not continue with"):
        queuert.complete_chain(
            conn, started.chain_id, continue_with=continue_with(report, {}), job_type=welcome
        )
    with pytest.raises(PayloadValidationError) as bad:
        queuert.complete_chain(conn, started.chain_id, {"nope": 1}, job_type=welcome)
    assert bad.value.kind == "output"
    with pytest.raises(InvalidArgumentError):
        queuert.complete_chain(
            conn, started.chain_id, "out", continue_with=continue_with(follow_up, WelcomeInput(1))
        )
    assert db.job(conn, started.id)["status"] == "pending"


def test_complete_chain_unknown_chain_or_job(conn: Conn) -> None:
    missing = uuid.uuid4()
    with pytest.raises(ChainNotFoundError) as info:
        queuert.complete_chain(conn, missing, None)
    assert info.value.chain_id == missing
    started = queuert.start_chain(conn, "x", None)
    with pytest.raises(ChainNotFoundError, match="is not a job of chain") as not_its:
        queuert.complete_chain(conn, started.chain_id, None, job_id=missing)
    assert (not_its.value.chain_id, not_its.value.job_id) == (started.chain_id, missing)


# ---------------------------------------------------------------- cancel / delete


def test_cancel_and_delete_chains(db: Db, conn: Conn) -> None:
    child = queuert.start_chain(conn, "child", None)
    parent = queuert.start_chain(conn, "parent", None, blockers=[child.chain_id])
    lone = queuert.start_chain(conn, "lone", None)

    with pytest.raises(ChainHasDependentsError) as info:
        queuert.cancel_chains(conn, [child.chain_id])
    assert info.value.chain_id == child.chain_id
    assert info.value.job_id == parent.id
    assert info.value.sqlstate == "QU005"
    conn.rollback()

    child = queuert.start_chain(conn, "child", None)
    parent = queuert.start_chain(conn, "parent", None, blockers=[child.chain_id])
    lone = queuert.start_chain(conn, "lone", None)
    cancelled = queuert.cancel_chains(conn, [parent.chain_id, uuid.uuid4()], cascade=True)
    assert set(cancelled) == {parent.chain_id, child.chain_id}
    assert db.job(conn, child.id)["status"] == "cancelled"
    assert db.job(conn, lone.id)["status"] == "pending"

    deleted = queuert.delete_chains(conn, [parent.chain_id], cascade=True)
    assert set(deleted) == {parent.chain_id, child.chain_id}
    assert db.count_jobs(conn) == 1
    with pytest.raises(InvalidArgumentError):
        queuert.cancel_chains(conn, "not-a-list")  # type: ignore[arg-type]


# ---------------------------------------------------------------- trigger / retry


def test_trigger_jobs(db: Db, conn: Conn) -> None:
    later = queuert.start_chain(conn, "later", None, schedule_after=timedelta(hours=1))
    with db.fixed_now(conn) as now:
        assert queuert.trigger_jobs(conn, [later.id, later.id]) == [later.id]
    assert db.job(conn, later.id)["scheduled_at"] <= now

    missing = uuid.uuid4()
    with pytest.raises(JobNotFoundError) as info:
        queuert.trigger_jobs(conn, [later.id, missing])
    assert info.value.job_id == missing and info.value.sqlstate == "QU001"


def test_trigger_a_job_that_is_not_pending(conn: Conn) -> None:
    started = queuert.start_chain(conn, "x", None)
    queuert.complete_chain(conn, started.chain_id, None)
    with pytest.raises(InvalidJobStatusError) as info:
        queuert.trigger_jobs(conn, [started.id])
    assert info.value.job_id == started.id


def test_retry_jobs(db: Db, conn: Conn) -> None:
    started = queuert.start_chain(conn, "x", None)
    queuert.cancel_chains(conn, [started.chain_id])
    assert queuert.retry_jobs(conn, [started.id]) == [started.id]
    row = db.job(conn, started.id)
    assert (row["status"], row["attempt"]) == ("pending", 0)
    with pytest.raises(InvalidJobStatusError) as info:
        queuert.retry_jobs(conn, [started.id])
    assert info.value.job_id == started.id


# ---------------------------------------------------------------- errors


def test_every_sqlstate_maps_to_its_class_with_ids(db: Db) -> None:
    conn = db.connect(autocommit=True)
    started = queuert.start_chain(conn, "x", None)

    with pytest.raises(JobNotFoundError) as e1:
        queuert.retry_jobs(conn, [missing := uuid.uuid4()])
    assert e1.value.job_id == missing

    with pytest.raises(ChainNotFoundError) as e2:
        queuert.start_chain(conn, "x", None, blockers=[missing])
    assert e2.value.chain_id == missing

    with pytest.raises(InvalidArgumentError) as e6:
        queuert.start_chain(conn, "x", None, id=started.id)
    assert e6.value.job_id == started.id and e6.value.sqlstate == "QU006"

    with pytest.raises(InvalidArgumentError) as e6b:
        queuert.start_chain(conn, "x", None, dedup_key="k", dedup_scope="sometimes")
    assert e6b.value.sqlstate == "QU006"

    # QU004 needs a worker: claim as w1, complete as w2, through the engine
    db.claim(conn, "w1")
    with pytest.raises(JobTakenError) as e4:
        db.complete_as(conn, started.id, "w2")
    assert e4.value.job_id == started.id
    assert e4.value.details["worker_id"] == "w1"

    for exc in (e1.value, e2.value, e4.value, e6.value):
        assert isinstance(exc, QueuertError)
        assert exc.message and str(exc)
    conn.close()


@pytest.mark.backend("postgres", reason="queuert.translate_errors translates psycopg's errors")
def test_translate_leaves_other_errors_alone(db: Db, conn: Conn) -> None:
    with pytest.raises(psycopg.errors.UndefinedTable):
        with queuert.translate_errors():
            conn.execute("SELECT * FROM nope")
    conn.rollback()
    started = queuert.start_chain(conn, "x", None)
    db.claim(conn, "w1")
    with pytest.raises(JobTakenError) as taken:
        db.complete_as(conn, started.id, "w2")
    assert isinstance(taken.value.__cause__, psycopg.Error)


def test_invalid_schema_name_is_refused(conn: Conn) -> None:
    with pytest.raises(InvalidArgumentError):
        queuert.start_chain(conn, "x", None, schema="bad; DROP TABLE x")


def test_one_schema_name_rule_for_the_client_and_the_migrator(db: Db, conn: Conn) -> None:
    """One validator: the client and queuert.migrate refuse a bad name with
    the same exception (an InvalidArgumentError and a MigrationError) and
    the same message, before anything is sent."""
    from queuert.migrate import migrate

    with pytest.raises(queuert.InvalidSchemaNameError) as by_client:
        queuert.get_chain(conn, uuid.uuid4(), schema="Jobs")
    with pytest.raises(queuert.InvalidSchemaNameError) as by_migrate:
        migrate("postgresql://nobody@127.0.0.1:1/none", schema="Jobs")
    assert str(by_client.value) == str(by_migrate.value)
    assert isinstance(by_client.value, queuert.MigrationError)
    assert by_client.value.sqlstate == "QU006"
    assert not db.in_transaction(conn)


def test_a_database_without_queuert_is_a_clear_error(db: Db, conn: Conn) -> None:
    with pytest.raises((queuert.MigrationError, psycopg.errors.InvalidSchemaName)) as info:
        queuert.start_chain(conn, "x", None, schema="elsewhere")
    if db.name == "sqlite":
        assert "queuert migrate --dsn sqlite:///" in str(info.value)
        assert "--schema elsewhere" in str(info.value)


def test_async_connection_is_refused_by_the_sync_client() -> None:
    with pytest.raises(InvalidArgumentError, match="queuert.aio"):
        queuert.start_chain(object(), "x", None)  # type: ignore[call-overload]


# ---------------------------------------------------------------- get / list


def test_get_chain(conn: Conn) -> None:
    started = queuert.start_chain(conn, welcome, WelcomeInput(3), trace_context="00-abc")
    chain = queuert.get_chain(conn, started.chain_id)
    assert chain.chain_id == started.chain_id
    assert chain.type_name == "send-welcome-email"
    assert chain.status == "pending"
    assert chain.job_count == 1
    assert chain.current_job_id == started.id
    assert chain.current_job is not None and chain.current_job.trace_context == "00-abc"
    assert chain.jobs[0].input == {"user_id": 3}
    with pytest.raises(ChainNotFoundError):
        queuert.get_chain(conn, uuid.uuid4())


def test_list_chains_filters_and_pages(conn: Conn) -> None:
    created = []
    for i in range(7):
        created.append(queuert.start_chain(conn, "even" if i % 2 == 0 else "odd", {"i": i}))
        conn.commit()  # distinct created_at per chain
        time.sleep(0.002)
    newest_first = [c.chain_id for c in reversed(created)]
    queuert.cancel_chains(conn, [created[0].chain_id])

    seen = []
    page = queuert.list_chains(conn, limit=3)
    pages = 1
    seen += [c.chain_id for c in page.items]
    while page.next_cursor:
        page = queuert.list_chains(conn, limit=3, after=page.next_cursor)
        pages += 1
        seen += [c.chain_id for c in page.items]
    assert seen == newest_first
    assert pages == 3

    odd = queuert.list_chains(conn, type_name="odd")
    assert [c.chain_id for c in odd.items] == [c.chain_id for c in reversed(created) if c.type_name == "odd"]
    assert odd.next_cursor is None

    cancelled = queuert.list_chains(conn, status="cancelled")
    assert [c.chain_id for c in cancelled.items] == [created[0].chain_id]
    both = queuert.list_chains(conn, type_name="even", status=["pending", "cancelled"], limit=10)
    assert len(both.items) == 4

    with pytest.raises(InvalidArgumentError):
        queuert.list_chains(conn, after="garbage!")
    with pytest.raises(InvalidArgumentError):
        queuert.list_chains(conn, limit=0)


def test_list_chains_pages_through_ties_in_created_at(conn: Conn) -> None:
    # one batch: every chain has the same created_at; the chain id breaks ties
    started = queuert.start_chains(conn, [ChainSpec("t", {"i": i}) for i in range(5)])
    seen = []
    after = None
    while True:
        page = queuert.list_chains(conn, limit=2, after=after)
        seen += [c.chain_id for c in page.items]
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert sorted(seen, reverse=True) == seen
    assert set(seen) == {s.chain_id for s in started}


# ---------------------------------------------------------------- wait_for_chain


def _complete_later(
    db: Db, chain_id: uuid.UUID, delay: float, output: object, *, listening_pid: int | None = None
) -> threading.Thread:
    """Complete the chain from another connection after ``delay``, or (with
    ``listening_pid``) once that backend has listened and found the chain
    unfinished: its probe is its last statement and it sits idle on LISTEN."""

    def run() -> None:
        c = db.connect(autocommit=True)
        try:
            if listening_pid is None:
                time.sleep(delay)
            while listening_pid is not None and not c.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND state = 'idle'"
                " AND query LIKE '%%transaction_isolation%%'", (listening_pid,)
            ).fetchone():
                time.sleep(0.01)
            queuert.complete_chain(c, chain_id, output)
        finally:
            c.close()

    t = threading.Thread(target=run)
    t.start()
    return t


@pytest.mark.backend("postgres", reason=LISTEN)
def test_wait_for_chain_wakes_on_notification(db: Db) -> None:
    with psycopg.connect(db.target, autocommit=True) as ac:
        started = queuert.start_chain(ac, "x", None)
        t = _complete_later(db, started.chain_id, 0, {"done": 1}, listening_pid=ac.info.backend_pid)
        # poll_interval far above the timeout: only the notification can wake it
        chain = queuert.wait_for_chain(ac, started.chain_id, timeout=30, poll_interval=60)
        t.join()
        assert chain.status == "completed" and chain.output == {"done": 1}
        # it stopped listening afterwards
        assert ac.execute("SELECT pg_listening_channels()").fetchall() == []


@pytest.mark.backend("postgres", reason=LISTEN)
def test_wait_for_chain_keeps_an_existing_listen(db: Db) -> None:
    with psycopg.connect(db.target, autocommit=True) as ac:
        ac.execute("LISTEN queuert_chain_completed")
        started = queuert.start_chain(ac, "x", None)
        queuert.complete_chain(ac, started.chain_id, 1)
        assert queuert.wait_for_chain(ac, started.chain_id, timeout=5).output == 1
        assert ac.execute("SELECT pg_listening_channels()").fetchall() == [("queuert_chain_completed",)]


def test_wait_for_chain_sees_another_connections_completion(db: Db) -> None:
    ac = db.connect(autocommit=True)
    try:
        started = queuert.start_chain(ac, "x", None)
        t = _complete_later(db, started.chain_id, 0.2, {"done": 1})
        chain = queuert.wait_for_chain(ac, started.chain_id, timeout=30, poll_interval=0.05)
        t.join()
        assert chain.status == "completed" and chain.output == {"done": 1}
    finally:
        ac.close()


def test_wait_for_chain_times_out(db: Db) -> None:
    ac = db.connect(autocommit=True)
    try:
        started = queuert.start_chain(ac, "x", None)
        with pytest.raises(ChainWaitTimeout) as info:
            queuert.wait_for_chain(ac, started.chain_id, timeout=0.3, poll_interval=0.1)
        assert info.value.chain_id == started.chain_id
        assert isinstance(info.value, TimeoutError)
        assert not db.in_transaction(ac)
    finally:
        ac.close()


@pytest.mark.backend("postgres", reason="a READ COMMITTED transaction sees each commit; SQLite reads one snapshot")
def test_wait_for_chain_in_a_read_committed_transaction_polls(db: Db, conn: Conn) -> None:
    with psycopg.connect(db.target, autocommit=True) as ac:
        started = queuert.start_chain(ac, "x", None)
    conn.execute("SELECT 1")  # the caller's transaction is open
    t = _complete_later(db, started.chain_id, 0.2, "late")
    chain = queuert.wait_for_chain(conn, started.chain_id, timeout=30, poll_interval=0.05)
    t.join()
    assert chain.output == "late"
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS


@pytest.mark.backend("postgres", reason="isolation levels are PostgreSQL's")
def test_wait_for_chain_refuses_repeatable_read(db: Db, conn: Conn) -> None:
    with psycopg.connect(db.target, autocommit=True) as ac:
        started = queuert.start_chain(ac, "x", None)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    with pytest.raises(InvalidArgumentError, match="REPEATABLE READ"):
        queuert.wait_for_chain(conn, started.chain_id, timeout=5)


@pytest.mark.backend("sqlite", reason="an SQLite transaction reads one snapshot (PostgreSQL polls in READ COMMITTED)")
def test_wait_for_chain_refuses_an_sqlite_transaction(db: Db, conn: Conn) -> None:
    started = queuert.start_chain(conn, "x", None)
    with pytest.raises(InvalidArgumentError, match="inside an SQLite transaction"):
        queuert.wait_for_chain(conn, started.chain_id, timeout=5)
    assert db.in_transaction(conn), "the caller's transaction is left as it was"


def test_wait_for_chain_reports_cancelled_failed_and_missing(db: Db) -> None:
    ac = db.connect(autocommit=True)
    try:
        cancelled = queuert.start_chain(ac, "x", None)
        queuert.cancel_chains(ac, [cancelled.chain_id])
        with pytest.raises(ChainCancelledError):
            queuert.wait_for_chain(ac, cancelled.chain_id, timeout=5)

        db.set_job_type(ac, "fragile", max_attempts=1)
        failing = queuert.start_chain(ac, "fragile", None)
        db.claim(ac, "w1")
        db.fail(ac, failing.id, "w1", "boom")
        with pytest.raises(ChainFailedError, match="boom") as info:
            queuert.wait_for_chain(ac, failing.chain_id, timeout=5)
        assert info.value.job_id == failing.id
        with pytest.raises(ChainWaitTimeout):
            queuert.wait_for_chain(
                ac, failing.chain_id, timeout=0.2, poll_interval=0.05, raise_on_failure=False
            )

        with pytest.raises(ChainNotFoundError):
            queuert.wait_for_chain(ac, uuid.uuid4(), timeout=5)
    finally:
        ac.close()


# ---------------------------------------------------------------- conflicts


@pytest.mark.backend("postgres", reason="a dedup race under REPEATABLE READ is PostgreSQL's 40001")
def test_retry_on_conflict_reruns_a_dedup_race_under_repeatable_read(db: Db) -> None:
    attempts = []

    with psycopg.connect(db.target, autocommit=True) as mine, psycopg.connect(db.target, autocommit=True) as rival:

        @queuert.retry_on_conflict(attempts=3)
        def signup() -> queuert.StartedChain:
            attempts.append(1)
            with mine.transaction():
                mine.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                mine.execute("SELECT 1")  # the snapshot is taken here
                if len(attempts) == 1:
                    # a rival start with the same key commits after our snapshot
                    queuert.start_chain(rival, "signup", {"who": "rival"}, dedup_key="u1")
                return queuert.start_chain(mine, "signup", {"who": "me"}, dedup_key="u1")

        result = signup()
        assert len(attempts) == 2
        assert result.deduplicated is True
        assert db.count_jobs() == 1


@pytest.mark.backend("sqlite", reason="SQLite's stale snapshot (BUSY_SNAPSHOT) is its own conflict")
def test_retry_on_conflict_reruns_a_transaction_whose_snapshot_went_stale(db: Db) -> None:
    attempts = []
    mine, rival = db.connect(autocommit=True), db.connect(autocommit=True)

    @queuert.retry_on_conflict(attempts=3)
    def signup() -> queuert.StartedChain:
        attempts.append(1)
        mine.execute("BEGIN")
        try:
            mine.execute("SELECT count(*) FROM queuert_job").fetchall()  # the snapshot
            if len(attempts) == 1:
                queuert.start_chain(rival, "signup", {"who": "rival"}, dedup_key="u1")
            started = queuert.start_chain(mine, "signup", {"who": "me"}, dedup_key="u1")
        except BaseException:
            mine.execute("ROLLBACK")
            raise
        mine.execute("COMMIT")
        return started

    result = signup()
    assert len(attempts) == 2
    assert result.deduplicated is True
    assert db.count_jobs() == 1
    mine.close()
    rival.close()


def test_retry_on_conflict_gives_up_and_ignores_other_errors() -> None:
    calls = []

    @queuert.retry_on_conflict(attempts=3, base_delay=0)
    def always_conflicts() -> None:
        calls.append(1)
        raise psycopg.errors.SerializationFailure("conflict")

    with pytest.raises(psycopg.errors.SerializationFailure):
        always_conflicts()
    assert len(calls) == 3

    @queuert.retry_on_conflict
    def other() -> None:
        calls.append(2)
        raise ValueError("no")

    with pytest.raises(ValueError):
        other()
    assert calls.count(2) == 1


# ---------------------------------------------------------------- transaction hooks


def test_client_reports_ready_types_and_completed_chains_to_hooks(conn: Conn) -> None:
    with transaction_hooks():
        hooks = current_hooks()
        assert hooks is not None
        queuert.start_chain(conn, welcome, WelcomeInput(1))
        queuert.start_chains(conn, [ChainSpec("bulk", None), ChainSpec("bulk", None)])
        blocker = queuert.start_chain(conn, "child", None)
        queuert.start_chain(conn, "blocked-type", None, blockers=[blocker.chain_id])
        done = queuert.start_chain(conn, "x", None, schedule_after=timedelta(hours=1))
        queuert.complete_chain(conn, done.chain_id, None)
        _, ready, chains, _ = hooks.pending
        conn.commit()
    assert ready == ["send-welcome-email", "bulk", "child", "x"]
    assert chains == [str(done.chain_id)]


def test_completing_a_running_job_from_outside_reports_it_lost(db: Db, conn: Conn) -> None:
    started = queuert.start_chain(conn, "x", None)
    db.claim(conn, "w1")
    with transaction_hooks() as hooks:
        queuert.complete_chain(conn, started.chain_id, "from the API")
        _, _, chains, lost = hooks.pending
    assert chains == [str(started.chain_id)]
    assert lost == [str(started.id)]


def test_a_fan_in_completed_from_outside_reports_its_dependents_ready(db: Db, conn: Conn) -> None:
    """Both backends report the unblocked type to the hooks (a broker
    notifier hears of it only from them); PostgreSQL's engine also sends its
    own NOTIFY."""
    child = queuert.start_chain(conn, "child", None)
    queuert.start_chain(conn, "parent", None, blockers=[child.chain_id])
    with transaction_hooks() as hooks:
        queuert.complete_chain(conn, child.chain_id, None)
        _, ready, chains, _ = hooks.pending
    assert chains == [str(child.chain_id)]
    assert ready == ["parent"]


FLAKY_START_CHAIN = """
CREATE SCHEMA flaky;
CREATE SEQUENCE flaky.calls;
-- A start_chain with the engine's signature and defaults that fails with a
-- serialization failure on its first call (the sequence survives the
-- rollback), then delegates to the real one.
CREATE FUNCTION flaky.start_chain(
    type_name text, input jsonb DEFAULT NULL, id uuid DEFAULT NULL,
    schedule_at timestamptz DEFAULT NULL, schedule_after interval DEFAULT NULL,
    blockers uuid[] DEFAULT NULL, dedup_key text DEFAULT NULL,
    dedup_scope text DEFAULT 'incomplete', dedup_window interval DEFAULT NULL,
    priority int DEFAULT 0, trace_context text DEFAULT NULL
) RETURNS SETOF queuert.start_chain_result LANGUAGE plpgsql AS $$
BEGIN
    IF nextval('flaky.calls') = 1 THEN
        RAISE EXCEPTION 'simulated conflict' USING ERRCODE = '40001';
    END IF;
    RETURN QUERY SELECT * FROM queuert.start_chain(
        type_name => type_name, input => input, dedup_key => dedup_key);
END $$;
"""


@pytest.mark.backend("postgres", reason="a call that is its own SQLite transaction begins IMMEDIATE and never conflicts")
def test_autocommit_calls_are_retried_after_a_conflict_but_transactions_are_not(db: Db) -> None:
    with psycopg.connect(db.target, autocommit=True) as ac:
        ac.execute(FLAKY_START_CHAIN)
        started = queuert.start_chain(ac, "x", {"n": 1}, schema="flaky")
        assert started.type_name == "x"
        assert ac.execute("SELECT last_value FROM flaky.calls").fetchone() == (2,)

        ac.execute("SELECT setval('flaky.calls', 1, false)")  # next call fails again
        with pytest.raises(psycopg.errors.SerializationFailure):
            with ac.transaction():
                queuert.start_chain(ac, "x", {"n": 2}, schema="flaky")
        assert ac.execute("SELECT count(*) FROM queuert.job").fetchone() == (1,)
