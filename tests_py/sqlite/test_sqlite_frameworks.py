"""The client on SQLite through the frameworks' handles, as on PostgreSQL
(tests_py/test_sqlalchemy.py, test_client_django.py): a SQLAlchemy Session
or Connection on a ``sqlite://`` engine, an AsyncSession on
``sqlite+aiosqlite://``, Django's sqlite3 connection. Every call runs in
the framework's transaction: its rollback leaves no job, its commit
exactly the ones started."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from django_support import use_sqlite_database
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import queuert
from queuert import ChainSpec, JobNotFoundError, aio


def committed(path: str, sql: str) -> list[object]:
    """What another connection sees."""
    with sqlite3.connect(path) as other:
        return [r[0] for r in other.execute(sql)]


@pytest.fixture
def app_db(db_path: str) -> str:
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE app_user (id INTEGER PRIMARY KEY)")
    return db_path


@pytest.fixture
def engine(app_db: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(f"sqlite:///{app_db}")
    try:
        yield eng
    finally:
        eng.dispose()


def test_a_session_rolls_back_and_commits_its_jobs(engine: sa.Engine, app_db: str) -> None:
    with Session(engine) as session:
        session.execute(sa.text("INSERT INTO app_user VALUES (1)"))
        queuert.start_chain(session, "welcome", {"user_id": 1})
        session.rollback()
    assert committed(app_db, "SELECT count(*) FROM queuert_job") == [0]

    with Session(engine) as session:
        started = queuert.start_chain(session, "welcome", {"user_id": 2})  # before the app's row
        session.execute(sa.text("INSERT INTO app_user VALUES (2)"))
        assert committed(app_db, "SELECT count(*) FROM queuert_job") == [0]
        session.commit()
    assert committed(app_db, "SELECT id FROM queuert_job") == [str(started.id)]
    assert committed(app_db, "SELECT id FROM app_user") == [2]


def test_a_connection_transaction_and_autocommit(engine: sa.Engine, app_db: str) -> None:
    with engine.connect() as c:
        kept = queuert.start_chains(c, [ChainSpec("t", i) for i in range(3)])
        chain = queuert.get_chain(c, kept[0].chain_id)
        assert chain.jobs[0].input == 0
        c.commit()
    with engine.connect() as c:
        queuert.start_chain(c, "dropped", None)
        c.rollback()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        queuert.start_chain(c, "alone", None)
        assert committed(app_db, "SELECT count(*) FROM queuert_job") == [4]
    assert sorted(committed(app_db, "SELECT type_name FROM queuert_job")) == ["alone", "t", "t", "t"]


async def test_an_async_session_on_aiosqlite(app_db: str) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{app_db}")
    try:
        async with AsyncSession(engine) as session:
            await session.execute(sa.text("INSERT INTO app_user VALUES (1)"))
            await aio.start_chain(session, "welcome", {"user_id": 1})
            await session.rollback()
        assert committed(app_db, "SELECT count(*) FROM queuert_job") == [0]
        async with AsyncSession(engine) as session:
            started = await aio.start_chain(session, "welcome", {"user_id": 2})
            await session.execute(sa.text("INSERT INTO app_user VALUES (2)"))
            done = await aio.complete_chain(session, started.chain_id, "sent")
            await session.commit()
        assert done.chain_completed
        assert committed(app_db, "SELECT status FROM queuert_job") == ["completed"]
    finally:
        await engine.dispose()


@pytest.fixture
def django_sqlite(app_db: str) -> Iterator[str]:
    use_sqlite_database(app_db)
    yield app_db
    from django.db import connections

    connections["default"].close()


def test_django_atomic_rolls_back_and_commits_its_jobs(django_sqlite: str) -> None:
    from django.db import connection, transaction

    with pytest.raises(RuntimeError):
        with transaction.atomic():
            with connection.cursor() as cur:
                cur.execute("INSERT INTO app_user VALUES (1)")
            queuert.start_chain(connection, "welcome", {"user_id": 1})
            raise RuntimeError("signup failed")
    assert committed(django_sqlite, "SELECT count(*) FROM queuert_job") == [0]

    with transaction.atomic():
        started = queuert.start_chain(connection, "welcome", {"user_id": 2})
        with connection.cursor() as cur:
            cur.execute("INSERT INTO app_user VALUES (2)")
        try:
            with transaction.atomic():  # a savepoint
                queuert.start_chains(connection, [ChainSpec("dropped", i) for i in range(3)])
                raise RuntimeError("inner step failed")
        except RuntimeError:
            pass
    assert committed(django_sqlite, "SELECT id FROM queuert_job") == [str(started.id)]
    queuert.start_chain(connection, "autocommitted", None)  # outside atomic: its own transaction
    assert committed(django_sqlite, "SELECT count(*) FROM queuert_job") == [2]


def test_django_a_failing_call_marks_the_atomic_block_for_rollback(django_sqlite: str) -> None:
    from django.db import connection, transaction
    from django.db.transaction import TransactionManagementError

    with transaction.atomic():
        queuert.start_chain(connection, "before", None)
        with pytest.raises(JobNotFoundError):
            queuert.trigger_jobs(connection, [uuid.uuid4()])
        assert connection.needs_rollback
        with pytest.raises(TransactionManagementError):
            queuert.start_chain(connection, "after", None)
    assert committed(django_sqlite, "SELECT count(*) FROM queuert_job") == [0]
