"""The client on Django's connection (Django >= 4.2 on psycopg 3), against
the real PostgreSQL: calls inside ``transaction.atomic()`` join it, so a
rollback leaves no job and a commit exactly one; outside an atomic block
(Django's autocommit) each call is its own transaction."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from django.db import connection, connections, transaction
from django.db.transaction import TransactionManagementError
from django_support import use_database

import queuert
from queuert import ChainSpec, InvalidArgumentError, JobNotFoundError, JobType, aio


@dataclass
class SignupInput:
    user_id: int


signup = JobType("signup", input=SignupInput)


@pytest.fixture
def django_db(dsn: str) -> Iterator[str]:
    use_database(dsn)
    with connection.cursor() as cur:
        cur.execute("CREATE TABLE app_user (id int PRIMARY KEY)")
    try:
        yield dsn
    finally:
        connections.close_all()


def committed(dsn: str, sql: str) -> list[object]:
    """What another session sees."""
    with psycopg.connect(dsn) as other:
        return [r[0] for r in other.execute(sql)]


def test_atomic_rollback_leaves_no_job_and_commit_exactly_one(django_db: str) -> None:
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("INSERT INTO app_user VALUES (1)")
            queuert.start_chain(connection, signup, SignupInput(user_id=1))
            raise RuntimeError("signup failed")
    assert committed(django_db, "SELECT count(*) FROM queuert.job") == [0]
    assert committed(django_db, "SELECT count(*) FROM app_user") == [0]

    with transaction.atomic():
        with connection.cursor() as cur:
            cur.execute("INSERT INTO app_user VALUES (2)")
        started = queuert.start_chain(connection, signup, SignupInput(user_id=2))
        assert committed(django_db, "SELECT count(*) FROM queuert.job") == [0]
    assert committed(django_db, "SELECT id FROM queuert.job") == [started.id]
    assert committed(django_db, "SELECT id FROM app_user") == [2]


def test_a_savepoint_rolled_back_takes_its_jobs_only(django_db: str) -> None:
    with transaction.atomic():
        kept = queuert.start_chain(connection, "kept", None)
        try:
            with transaction.atomic():  # a savepoint
                queuert.start_chains(connection, [ChainSpec("dropped", i) for i in range(3)])
                raise RuntimeError("inner step failed")
        except RuntimeError:
            pass
    assert committed(django_db, "SELECT id FROM queuert.job") == [kept.id]


def test_reads_on_django_connection_see_json_as_json(django_db: str) -> None:
    """Django loads jsonb as text for its JSONField; the client's own
    statements still read JSON as Python values."""
    with transaction.atomic():
        started = queuert.start_chain(connection, signup, SignupInput(user_id=3))
        queuert.complete_chain(connection, started.chain_id, {"welcomed": True})
        chain = queuert.get_chain(connection, started.chain_id)
    assert chain.output == {"welcomed": True}
    assert chain.jobs[0].input == {"user_id": 3}
    assert queuert.list_chains(connection, status="completed").items[0].output == {"welcomed": True}


def test_a_failing_call_marks_the_atomic_block_for_rollback(django_db: str) -> None:
    with transaction.atomic():
        queuert.start_chain(connection, "before", None)
        with pytest.raises(JobNotFoundError):
            queuert.trigger_jobs(connection, [uuid.uuid4()])
        # as after a failing ORM query: the block can only roll back now
        assert connection.needs_rollback
        with pytest.raises(TransactionManagementError):
            queuert.start_chain(connection, "after", None)
    assert committed(django_db, "SELECT count(*) FROM queuert.job") == [0]


def test_outside_atomic_each_call_is_its_own_transaction(django_db: str) -> None:
    queuert.start_chain(connections["default"], "autocommitted", None)
    assert committed(django_db, "SELECT count(*) FROM queuert.job") == [1]


def test_the_async_client_refuses_django_connection(django_db: str) -> None:
    with pytest.raises(InvalidArgumentError, match="synchronous"):
        asyncio.run(aio.start_chain(connection, "x", None))  # type: ignore[arg-type]
