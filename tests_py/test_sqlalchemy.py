"""The SQL API used without the queuert client: SQLAlchemy with named arguments.

The engine's functions are plain SQL, so an application on SQLAlchemy can
start chains inside its own ``engine.begin()`` transaction with ``text()``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from psycopg.conninfo import conninfo_to_dict

import queuert
from queuert import InvalidArgumentError, JobNotFoundError

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
