"""Fresh, migrated databases for tests: the server, a template, copies of it.

A test database is a copy of a template database (``CREATE DATABASE ...
TEMPLATE``) into which queuert was migrated once per test session, and your
own set-up applied (your tables), so each test starts clean in a few
milliseconds. Names carry the process id (``queuert_kit_t_<pid>_<n>``), so
parallel sessions (pytest-xdist) never meet, and databases left behind by a
killed session on this machine are dropped by the next one.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from queuert.migrate import migrate

__all__ = ["DEFAULT_SERVER_DSN", "DatabaseFactory", "TestServer", "dsn_for"]

DEFAULT_SERVER_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
_PREFIX = "queuert_kit"


def dsn_for(server_dsn: str, dbname: str) -> str:
    """``server_dsn`` with its database replaced by ``dbname``."""
    params = conninfo_to_dict(server_dsn)
    params["dbname"] = dbname
    return make_conninfo(**params)  # type: ignore[arg-type]


class TestServer:
    """The PostgreSQL server test databases are created on.

    ``dsn`` given (the ``--queuert-dsn`` option, the ``queuert_dsn`` ini key
    or ``$QUEUERT_TEST_DSN``): that server. Otherwise ``default_dsn`` (the
    local server, ``postgresql://postgres@127.0.0.1:5432/postgres``) when it
    answers, else an embedded PostgreSQL in a temporary directory (``pip
    install 'queuert[embedded]'``), stopped and deleted by :meth:`close`.
    The role needs CREATEDB.
    """

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, dsn: str | None = None, *, default_dsn: str = DEFAULT_SERVER_DSN) -> None:
        # imported here: the plugin loads in every pytest run where queuert is
        # installed, and queuert.embedded is POSIX-only (pwd, fcntl)
        from queuert.embedded import EmbeddedPostgres, EmbeddedPostgresError, server_answers

        self._embedded: EmbeddedPostgres | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if dsn:
            self.dsn = dsn
            self.source = "given"
            return
        if server_answers(default_dsn):
            self.dsn = default_dsn
            self.source = "local"
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="queuert-test-pg-")
        self._embedded = EmbeddedPostgres(Path(self._tmp.name) / "pgdata")
        try:
            self.dsn = self._embedded.start()
        except EmbeddedPostgresError as exc:
            self._tmp.cleanup()
            raise EmbeddedPostgresError(
                f"no PostgreSQL for the tests: none answers at {default_dsn}, none was "
                f"given (--queuert-dsn, ini queuert_dsn, $QUEUERT_TEST_DSN), and {exc}"
            ) from exc
        self.source = "embedded"

    def close(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class DatabaseFactory:
    """Creates databases on ``server_dsn`` that are copies of a template with
    queuert migrated into ``schema`` and ``setup(template_dsn)`` applied."""

    def __init__(
        self,
        server_dsn: str,
        *,
        schema: str = "queuert",
        setup: Callable[[str], object] | None = None,
    ) -> None:
        self.server_dsn = server_dsn
        self.schema = schema
        self.setup = setup
        self._template: str | None = None
        self._counter = itertools.count(1)
        self._created: set[str] = set()

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.server_dsn, autocommit=True)

    @property
    def template(self) -> str:
        """Name of the template database, made on first use."""
        if self._template is None:
            self.drop_stale()
            name = f"{_PREFIX}_tpl_{os.getpid()}"
            self._create(name, None)
            try:
                migrate(dsn_for(self.server_dsn, name), schema=self.schema)
                if self.setup is not None:
                    self.setup(dsn_for(self.server_dsn, name))
            except BaseException:
                self._drop(name)
                raise
            self._template = name
        return self._template

    def create(self) -> str:
        """A new database copied from the template; returns its conninfo."""
        name = f"{_PREFIX}_t_{os.getpid()}_{next(self._counter)}"
        self._create(name, self.template)
        self._created.add(name)
        return dsn_for(self.server_dsn, name)

    def drop(self, dsn: str) -> None:
        name = str(conninfo_to_dict(dsn).get("dbname"))
        self._drop(name)
        self._created.discard(name)

    def close(self) -> None:
        for name in list(self._created):
            self._drop(name)
        self._created.clear()
        if self._template is not None:
            self._drop(self._template)
            self._template = None

    def drop_stale(self) -> None:
        """Drop kit databases of processes on this machine that no longer run."""
        host = str(conninfo_to_dict(self.server_dsn).get("host") or "")
        if host not in ("", "127.0.0.1", "localhost", "::1") and not host.startswith("/"):
            return  # a pid in a name means nothing on another machine
        with self._admin() as admin:
            names = [
                str(row[0])
                for row in admin.execute(
                    "SELECT datname FROM pg_database WHERE datname ~ %s",
                    (f"^{_PREFIX}_(tpl|t)_[0-9]+",),
                )
            ]
        for name in names:
            pid = int(name.split("_")[3])
            if pid != os.getpid() and not _pid_alive(pid):
                self._drop(name)

    def _create(self, name: str, template: str | None) -> None:
        with self._admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
            if template is not None:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            admin.execute(statement)

    def _drop(self, name: str) -> None:
        with self._admin() as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
