"""The pytest plugin of queuert.testing (entry point ``pytest11``: ``queuert``).

Fixtures, all named ``queuert_*`` so that they never shadow yours:

* ``queuert_server`` (session): conninfo of the server test databases are
  made on: ``--queuert-dsn``, else the ini key ``queuert_dsn``, else
  ``$QUEUERT_TEST_DSN``, else the local server when it answers, else an
  embedded PostgreSQL in a temporary directory (``queuert[embedded]``).
* ``queuert_setup`` (session): override it to return ``setup(dsn)``, run
  once on the template database after ``queuert migrate`` (your tables).
* ``queuert_dsn``: conninfo of a new database, a copy of that template,
  dropped after the test.
* ``queuert_conn``: a psycopg connection to ``queuert_dsn`` (autocommit
  off), closed after the test.

The ini key ``queuert_schema`` names the schema (default ``queuert``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from queuert.testing.databases import DatabaseFactory, TestServer


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("queuert", "queuert.testing")
    group.addoption(
        "--queuert-dsn",
        dest="queuert_dsn",
        default=None,
        metavar="DSN",
        help="PostgreSQL server for the queuert_* fixtures' test databases "
        "(default: ini queuert_dsn, $QUEUERT_TEST_DSN, the local server, the embedded one).",
    )
    parser.addini("queuert_dsn", "PostgreSQL server for the queuert_* fixtures", default=None)
    parser.addini("queuert_schema", "schema queuert is migrated into", default="queuert")


@pytest.fixture(scope="session")
def queuert_server(request: pytest.FixtureRequest) -> Iterator[str]:
    config = request.config
    given = (
        config.getoption("queuert_dsn")
        or config.getini("queuert_dsn")
        or os.environ.get("QUEUERT_TEST_DSN")
    )
    server = TestServer(given or None)
    try:
        yield server.dsn
    finally:
        server.close()


@pytest.fixture(scope="session")
def queuert_setup() -> Callable[[str], Any] | None:
    """Override to return a function that prepares the template database
    (it gets its conninfo), e.g. creates your tables."""
    return None


@pytest.fixture(scope="session")
def queuert_databases(
    request: pytest.FixtureRequest,
    queuert_server: str,
    queuert_setup: Callable[[str], Any] | None,
) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(
        queuert_server, schema=str(request.config.getini("queuert_schema")), setup=queuert_setup
    )
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def queuert_dsn(queuert_databases: DatabaseFactory) -> Iterator[str]:
    dsn = queuert_databases.create()
    try:
        yield dsn
    finally:
        queuert_databases.drop(dsn)


@pytest.fixture
def queuert_conn(queuert_dsn: str) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    conn = psycopg.connect(queuert_dsn, autocommit=False)
    try:
        yield conn
    finally:
        conn.close()
