"""Fixtures of the SQLite engine tests.

``engine`` is the engine under test, once per backend (sqlite_backends.py):
``sqlite`` (each call its own transaction), ``sqlite-tx`` (one caller
transaction for the whole test) and ``postgres`` (the PL/pgSQL engine, in
one transaction rolled back at the end, as the pgTAP suites run; all
postgres tests share one database migrated once). ``db_path`` is a fresh,
migrated SQLite file for tests that need the file itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from .sqlite_backends import Engine, PostgresEngine, sqlite_engine_factory

import queuert._sqlite as qs

BACKENDS = ("sqlite", "sqlite-tx", "postgres")


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    path = str(tmp_path / "app.db")
    qs.migrate(path)
    return path


@pytest.fixture(scope="session")
def engine_pg_dsn(base_dsn: str, template_db: str) -> Iterator[str]:
    """One database for every postgres engine test: each runs in a
    transaction that is rolled back, so none sees another's rows."""
    name = f"queuert_t_{os.getpid()}_sqlite_parity"
    params = conninfo_to_dict(base_dsn)
    with psycopg.connect(base_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db))
        )
    params["dbname"] = name
    try:
        yield make_conninfo(**params)  # type: ignore[arg-type]
    finally:
        with psycopg.connect(base_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "postgres":
        dsn = request.getfixturevalue("engine_pg_dsn")
        with psycopg.connect(dsn, autocommit=False) as conn:
            try:
                yield PostgresEngine(conn)
            finally:
                conn.rollback()
        return
    yield from sqlite_engine_factory(str(tmp_path / "app.db"), request.param)()
