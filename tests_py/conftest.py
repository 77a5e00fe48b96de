"""Shared fixtures: a real PostgreSQL, a brand-new database per test.

* ``base_dsn``: the server to test against: ``QUEUERT_TEST_DSN``, else the
  local server; when neither is set nor reachable and ``testcontainers`` and a
  Docker engine are available, a throwaway postgres container.
* ``dsn``: conninfo of a new database, with queuert migrated into schema
  ``queuert``, dropped after the test. Migration runs once per session into
  a template database ``queuert_tpl_<pid>``; each test copies it with
  ``CREATE DATABASE ... TEMPLATE`` (fast, and every test starts clean).
* ``conn`` / ``aconn``: a psycopg (sync / async) connection to ``dsn``,
  autocommit off.
* ``new_database``: factory for extra empty databases (no queuert), dropped
  after the test.

A test marked ``pg_major(N, reason=...)`` depends on the server's major
version (say, a committed pg_dump of version N): against another version it
is deselected, and the session header names it with its reason. Likewise
``server_library(name, reason=...)``: a test that LOADs a server module
(auto_explain) is deselected on a server built without it (the embedded
PostgreSQL 16 of ``make pytest-pg16``), and the header says so.

* ``db``: the client behaviour suite's database, once per backend
  (``postgres``, ``sqlite``: backends.py). A test that only one backend can
  pass is marked ``backend(name, reason=...)``; its other case is
  deselected and named in the session header with the reason.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from backends import Db, PostgresDb, SqliteDb
from queuert.migrate import migrate

DEFAULT_BASE_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
_counter = itertools.count(1)
_deselected_for_version: list[str] = []
_deselected_for_backend: list[str] = []
BACKENDS = ("postgres", "sqlite")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "pg_major(n, reason): only against PostgreSQL major version n; deselected elsewhere",
    )
    config.addinivalue_line(
        "markers",
        "server_library(name, reason): needs the server module NAME (LOAD); deselected where it is missing",
    )
    config.addinivalue_line(
        "markers",
        "backend(name, reason): only the db fixture's backend NAME can pass this test; "
        "its other cases are deselected",
    )


def _deselect_other_backends(config: pytest.Config, items: list[pytest.Item]) -> None:
    drop = []
    for item in items:
        marker = item.get_closest_marker("backend")
        callspec = getattr(item, "callspec", None)
        if marker is None or callspec is None or "db" not in callspec.params:
            continue
        if callspec.params["db"] != marker.args[0]:
            drop.append(item)
            _deselected_for_backend.append(
                f"{item.nodeid} ({marker.args[0]} only: {marker.kwargs.get('reason', '')})"
            )
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if item not in drop]


def _server_loads(library: str) -> bool | None:
    dsn = os.environ.get("QUEUERT_TEST_DSN") or DEFAULT_BASE_DSN
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute(sql.SQL("LOAD {}").format(sql.Literal(library)))
            return True
    except psycopg.errors.UndefinedFile:
        return False
    except psycopg.OperationalError:
        return None  # the fixtures will say so


def _deselect_missing_libraries(config: pytest.Config, items: list[pytest.Item]) -> None:
    loads: dict[str, bool | None] = {}
    drop = []
    for item in items:
        marker = item.get_closest_marker("server_library")
        if marker is None:
            continue
        library = marker.args[0]
        if library not in loads:
            loads[library] = _server_loads(library)
        if loads[library] is False:
            drop.append(item)
            _deselected_for_version.append(
                f"{item.nodeid} (needs the server module {library}: {marker.kwargs.get('reason', '')})"
            )
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if item not in drop]


def _server_major() -> int | None:
    dsn = os.environ.get("QUEUERT_TEST_DSN") or DEFAULT_BASE_DSN
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            return conn.info.server_version // 10000
    except psycopg.OperationalError:
        return None  # the fixtures will say so


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _deselect_other_backends(config, items)
    _deselect_missing_libraries(config, items)
    marked = [item for item in items if item.get_closest_marker("pg_major") is not None]
    major = _server_major() if marked else None
    if major is None:
        return
    drop = []
    for item in marked:
        marker = item.get_closest_marker("pg_major")
        assert marker is not None
        if marker.args[0] != major:
            drop.append(item)
            reason = marker.kwargs.get("reason", "")
            _deselected_for_version.append(f"{item.nodeid} (PostgreSQL {marker.args[0]} only: {reason})")
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = [item for item in items if item not in drop]


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    return [f"deselected for this server: {line}" for line in _deselected_for_version] + [
        f"deselected for its backend: {line}" for line in _deselected_for_backend
    ]


def _reachable(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _start_container() -> tuple[str, object] | None:
    """A postgres container via testcontainers, if it and Docker are available."""
    try:
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        container = PostgresContainer("postgres:15", driver=None)
        container.start()
    except Exception:  # noqa: BLE001 - no Docker engine: report the plain error below
        return None
    url = container.get_connection_url()
    # testcontainers may name a SQLAlchemy driver ("postgresql+psycopg2://")
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url), container


@pytest.fixture(scope="session")
def base_dsn() -> Iterator[str]:
    env = os.environ.get("QUEUERT_TEST_DSN")
    if env:
        yield env
        return
    if _reachable(DEFAULT_BASE_DSN):
        yield DEFAULT_BASE_DSN
        return
    started = _start_container()
    if started is None:
        pytest.exit(
            f"no PostgreSQL: set QUEUERT_TEST_DSN, start the local server "
            f"({DEFAULT_BASE_DSN}; `make test` does it), or install testcontainers "
            "with a Docker engine",
            returncode=2,
        )
    url, container = started
    try:
        yield url
    finally:
        container.stop()  # type: ignore[attr-defined]


def dsn_for(base: str, dbname: str) -> str:
    """``base`` with its database replaced by ``dbname``."""
    params = conninfo_to_dict(base)
    params["dbname"] = dbname
    return make_conninfo(**params)  # type: ignore[arg-type]


def _admin(base: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(base, autocommit=True)


def create_database(base: str, name: str, template: str | None = None) -> str:
    with _admin(base) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        if template is None:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        else:
            admin.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
    return dsn_for(base, name)


def drop_database(base: str, name: str) -> None:
    with _admin(base) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_stale_databases(base: str) -> None:
    """Drop test databases left by killed pytest runs on this machine.

    Only for a server on this host (the pid in the name is a local pid).
    """
    host = conninfo_to_dict(base).get("host") or ""
    if host not in ("", "127.0.0.1", "localhost", "::1") and not str(host).startswith("/"):
        return
    with _admin(base) as admin:
        names = [
            str(r[0])
            for r in admin.execute(
                "SELECT datname FROM pg_database WHERE datname ~ '^queuert_(tpl|t)_[0-9]+'"
            ).fetchall()
        ]
    for name in names:
        pid = int(name.split("_")[2])
        if pid != os.getpid() and not _pid_alive(pid):
            drop_database(base, name)


@pytest.fixture(scope="session")
def template_db(base_dsn: str) -> Iterator[str]:
    """Name of a database with queuert migrated into schema ``queuert``."""
    drop_stale_databases(base_dsn)
    name = f"queuert_tpl_{os.getpid()}"
    tpl_dsn = create_database(base_dsn, name)
    try:
        migrate(tpl_dsn, schema="queuert")
        yield name
    finally:
        drop_database(base_dsn, name)


@pytest.fixture
def new_database(base_dsn: str) -> Iterator[Callable[[], str]]:
    """Factory: ``new_database()`` returns the DSN of a new, empty database."""
    names: list[str] = []

    def make() -> str:
        name = f"queuert_t_{os.getpid()}_{next(_counter)}"
        names.append(name)
        return create_database(base_dsn, name)

    yield make
    for name in names:
        drop_database(base_dsn, name)


@pytest.fixture
def dsn(base_dsn: str, template_db: str) -> Iterator[str]:
    name = f"queuert_t_{os.getpid()}_{next(_counter)}"
    test_dsn = create_database(base_dsn, name, template=template_db)
    try:
        yield test_dsn
    finally:
        drop_database(base_dsn, name)


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    connection = psycopg.connect(dsn, autocommit=False)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
async def aconn(dsn: str) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
    connection = await psycopg.AsyncConnection.connect(dsn, autocommit=False)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    """A fresh, migrated database of each backend (backends.py)."""
    if request.param == "postgres":
        return PostgresDb(request.getfixturevalue("dsn"))
    return SqliteDb(str(tmp_path / "app.db"))
