"""queuert from SQLAlchemy: the SQL API with ``text()`` and named arguments,
and the client called on SQLAlchemy's own Session / Connection, sync and
async, inside SQLAlchemy's transaction (a rollback leaves no job, a commit
exactly one)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

import queuert
from queuert import InvalidArgumentError, JobNotFoundError, aio

START_CHAIN = sa.text(
    "SELECT id, chain_id, status::text AS status, deduplicated "
    "FROM queuert.start_chain(type_name => :type_name, input => CAST(:input AS jsonb), "
    "dedup_key => :dedup_key)"
)


def sqlalchemy_url(dsn: str) -> sa.URL:
    p = conninfo_to_dict(dsn)
    return sa.URL.create(
        "postgresql+psycopg",
        username=str(p.get("user")) if p.get("user") else None,
        password=str(p.get("password")) if p.get("password") else None,
        host=str(p.get("host", "127.0.0.1")),
        port=int(p.get("port", 5432)),
        database=str(p["dbname"]),
    )


@pytest.fixture
def engine(dsn: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(sqlalchemy_url(dsn))
    try:
        yield eng
    finally:
        eng.dispose()


def test_transactional_enqueue_through_sqlalchemy(engine: sa.Engine) -> None:
    with engine.begin() as c:
        c.execute(sa.text("CREATE TABLE app_user (id int PRIMARY KEY, email text)"))

    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO app_user VALUES (1, 'a@example.com')"))
        row = c.execute(
            START_CHAIN,
            {"type_name": "send-welcome-email", "input": json.dumps({"user_id": 1}), "dedup_key": None},
        ).one()
    assert row.status == "pending" and row.deduplicated is False and row.id == row.chain_id

    with pytest.raises(RuntimeError):
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO app_user VALUES (2, 'b@example.com')"))
            c.execute(
                START_CHAIN,
                {"type_name": "send-welcome-email", "input": json.dumps({"user_id": 2}), "dedup_key": None},
            )
            raise RuntimeError("signup failed after the enqueue")

    with engine.connect() as c:
        assert c.execute(sa.text("SELECT id FROM app_user")).scalars().all() == [1]
        jobs = c.execute(sa.text("SELECT id, input FROM queuert.job")).all()
    assert [(j.id, j.input) for j in jobs] == [(row.id, {"user_id": 1})]


def test_dedup_and_inspection_through_sqlalchemy(engine: sa.Engine) -> None:
    params = {"type_name": "sync-account", "input": "{}", "dedup_key": "acct-9"}
    with engine.begin() as c:
        first = c.execute(START_CHAIN, params).one()
        again = c.execute(START_CHAIN, params).one()
        assert again.deduplicated is True and again.chain_id == first.chain_id
        done = c.execute(
            sa.text(
                "SELECT chain_completed FROM queuert.complete("
                "job_id => :job_id, worker_id => NULL, output => CAST(:output AS jsonb))"
            ),
            {"job_id": first.id, "output": json.dumps({"synced": True})},
        ).scalar_one()
        assert done is True
        chain = c.execute(
            sa.text("SELECT status::text AS status, output FROM queuert.chain WHERE chain_id = :id"),
            {"id": first.chain_id},
        ).one()
    assert chain.status == "completed" and chain.output == {"synced": True}


def test_engine_errors_translate_from_sqlalchemy(engine: sa.Engine) -> None:
    missing = uuid.uuid4()
    with engine.connect() as c:
        with pytest.raises(JobNotFoundError) as info:
            with queuert.translate_errors():
                c.execute(
                    sa.text("SELECT * FROM queuert.trigger_jobs(job_ids => CAST(:ids AS uuid[]))"),
                    {"ids": [str(missing)]},
                )
        assert info.value.job_id == missing
        assert isinstance(info.value.__cause__, sa.exc.DBAPIError)
        c.rollback()
        with pytest.raises(InvalidArgumentError):
            with queuert.translate_errors():
                c.execute(sa.text("SELECT * FROM queuert.start_chain(type_name => '')"))


def test_queuert_client_on_the_sqlalchemy_connection(engine: sa.Engine) -> None:
    # SQLAlchemy's psycopg dialect exposes the psycopg connection underneath,
    # so the typed client joins the SQLAlchemy transaction too.
    with engine.begin() as c:
        raw = c.connection.driver_connection
        started = queuert.start_chain(raw, "from-sqlalchemy", {"n": 1})  # type: ignore[arg-type]
        assert c.execute(sa.text("SELECT count(*) FROM queuert.job")).scalar_one() == 1
    with engine.connect() as c:
        status = c.execute(
            sa.text("SELECT status::text FROM queuert.job WHERE id = :id"), {"id": started.id}
        ).scalar_one()
    assert status == "pending"


# ---------------------------------------------------------------- the client on SQLAlchemy's own objects


def job_count(dsn: str) -> int:
    """Jobs as another session sees them: only what was committed."""
    with psycopg.connect(dsn) as other:
        row = other.execute("SELECT count(*) FROM queuert.job").fetchone()
    assert row is not None
    return int(row[0])


def test_client_calls_join_a_session_transaction(engine: sa.Engine, dsn: str) -> None:
    with Session(engine) as session:
        with session.begin():
            session.execute(sa.text("CREATE TABLE app_user (id int PRIMARY KEY)"))

    # rollback: neither the user nor the job
    with Session(engine) as session:
        session.begin()
        session.execute(sa.text("INSERT INTO app_user VALUES (1)"))
        queuert.start_chain(session, "from-session", {"user": 1})
        assert session.execute(sa.text("SELECT count(*) FROM queuert.job")).scalar_one() == 1
        session.rollback()
    assert job_count(dsn) == 0

    # commit: exactly one of each
    with Session(engine) as session, session.begin():
        session.execute(sa.text("INSERT INTO app_user VALUES (2)"))
        started = queuert.start_chain(session, "from-session", {"user": 2})
        assert job_count(dsn) == 0  # not before the commit
    assert job_count(dsn) == 1
    with engine.connect() as c:
        assert c.execute(sa.text("SELECT id FROM app_user")).scalars().all() == [2]
        row = c.execute(
            sa.text("SELECT id, input FROM queuert.job"),
        ).one()
    assert (row.id, row.input) == (started.id, {"user": 2})


def test_client_calls_join_a_connection_transaction(engine: sa.Engine, dsn: str) -> None:
    with engine.connect() as c:
        queuert.start_chains(c, [queuert.ChainSpec("batch", i) for i in range(3)])
        c.rollback()
    assert job_count(dsn) == 0

    # no begin(): the call begins the transaction as SQLAlchemy's autobegin
    # would, so the caller's commit() commits the job
    with engine.connect() as c:
        started = queuert.start_chain(c, "autobegun", None)
        assert c.in_transaction()
        c.commit()
    assert job_count(dsn) == 1

    with engine.begin() as c:
        chain = queuert.get_chain(c, started.chain_id)
        queuert.complete_chain(c, started.chain_id, {"ok": True})
    assert chain.status == "pending"
    with engine.connect() as c:
        assert queuert.get_chain(c, started.chain_id).output == {"ok": True}


def test_client_errors_and_refusals_on_sqlalchemy(engine: sa.Engine, dsn: str) -> None:
    with Session(engine) as session:
        with pytest.raises(JobNotFoundError):
            queuert.trigger_jobs(session, [uuid.uuid4()])
        session.rollback()
        with pytest.raises(InvalidArgumentError, match="queuert.client"):
            asyncio.run(aio.start_chain(session, "x", None))  # type: ignore[arg-type]
    # an AUTOCOMMIT connection: each call is its own transaction
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        queuert.start_chain(c, "autocommitted", None)
        assert job_count(dsn) == 1


async def test_aio_calls_join_an_async_session_transaction(dsn: str) -> None:
    engine = create_async_engine(sqlalchemy_url(dsn))
    try:
        async with AsyncSession(engine) as session:
            async with session.begin():
                await session.execute(sa.text("CREATE TABLE app_user (id int PRIMARY KEY)"))

        async with AsyncSession(engine) as session:
            await session.begin()
            await session.execute(sa.text("INSERT INTO app_user VALUES (1)"))
            await aio.start_chain(session, "from-async-session", {"user": 1})
            await session.rollback()
        assert job_count(dsn) == 0

        async with AsyncSession(engine) as session, session.begin():
            await session.execute(sa.text("INSERT INTO app_user VALUES (2)"))
            started = await aio.start_chains(
                session, [queuert.ChainSpec("from-async-session", {"user": 2})]
            )
            assert job_count(dsn) == 0
        assert job_count(dsn) == 1

        async with engine.connect() as c:
            await aio.start_chain(c, "autobegun", None)
            assert c.in_transaction()
            await c.commit()
            chain = await aio.get_chain(c, started[0].chain_id)
            await c.rollback()
        assert job_count(dsn) == 2 and chain.status == "pending"

        async with engine.connect() as c:
            await aio.start_chain(c, "rolled-back", None)
            await c.rollback()
        assert job_count(dsn) == 2

        async with AsyncSession(engine) as session:
            with pytest.raises(InvalidArgumentError, match="queuert.aio"):
                queuert.start_chain(session, "x", None)  # type: ignore[arg-type]
    finally:
        await engine.dispose()
