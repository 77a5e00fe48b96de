"""Connections and transactions for the SQLite engine.

Every engine call runs in the caller's ``sqlite3.Connection``:

* inside the caller's transaction (``conn.in_transaction``): the call's
  statements run in a SAVEPOINT, so a refused or failed call writes nothing
  and the caller's own writes stay; a writing call first takes SQLite's write
  lock (a write that changes nothing), so its reads and writes see one state
  even when other processes write the same file. The caller commits.
* outside a transaction on an autocommit connection (``isolation_level=None``,
  or ``autocommit=True`` on Python 3.12+): the call is its own transaction,
  begun with ``BEGIN IMMEDIATE`` (writers take the write lock up front: no
  SKIP LOCKED in SQLite, writers simply take turns) and committed before it
  returns.
* outside a transaction on a connection in Python's default mode (where
  sqlite3 itself begins a transaction before an INSERT, UPDATE or DELETE): a
  writing call begins it (``BEGIN IMMEDIATE``) and leaves it open, as such a
  statement would: the caller's ``commit()`` or ``rollback()`` settles the
  jobs with the caller's own rows, as on a psycopg connection that is not in
  autocommit mode. A refused call rolls back the transaction it began.

``database is locked`` is waited out for the connection's busy timeout
(``sqlite3.connect(timeout=...)``, 5 s by default) and then raised as
:class:`~queuert._sqlite.DatabaseBusyError`, never as a bare
``sqlite3.OperationalError``.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Union

from ..errors import InvalidArgumentError
from ._errors import DatabaseBusyError, is_locked, locked_error
from ._statements import statements

__all__ = ["begins_implicitly", "connect", "one", "reading", "rows", "run", "transaction", "writing"]

Params = Union[Mapping[str, Any], Sequence[Any]]
#: Python's own default busy timeout (sqlite3.connect(timeout=5.0)).
DEFAULT_TIMEOUT = 5.0


def connect(
    target: str | os.PathLike[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    synchronous: str = "FULL",
    **kwargs: Any,
) -> sqlite3.Connection:
    """An autocommit connection set up for queuert: busy timeout,
    temporary b-trees in memory, the given durability.

    ``target`` is a path or a ``sqlite:///path`` URL (``sqlite:///:memory:``
    for an in-memory database). Each engine call on it is its own
    transaction; ``with queuert._sqlite.transaction(conn):`` groups calls and
    your own statements into one. ``synchronous`` is the PRAGMA of that name
    (FULL: a committed job survives a power cut; NORMAL in WAL mode survives
    any application crash and is faster).
    """
    path = database_path(target)
    if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
        raise InvalidArgumentError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {synchronous!r}")
    kwargs.setdefault("isolation_level", None)
    kwargs.setdefault("cached_statements", 256)
    conn: sqlite3.Connection = sqlite3.connect(path, timeout=timeout, **kwargs)
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    # The engine's multi-row statements (an UPDATE whose WHERE reads a JSON
    # list, with the fan-in triggers) build small temporary b-trees; most
    # builds keep those in files, which made each such statement ten times
    # slower. In memory they cost nothing worth measuring.
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


def database_path(target: str | os.PathLike[str]) -> str:
    """The file name of a path or ``sqlite:///path`` URL."""
    text = os.fspath(target)
    if text.startswith("sqlite:"):
        rest = text[len("sqlite:") :]
        if not rest.startswith("///"):
            raise InvalidArgumentError(
                f"an SQLite URL is sqlite:///relative/path or sqlite:////absolute/path, got {text!r}"
            )
        return rest[3:]
    return text


def run(conn: sqlite3.Connection, sql: str, params: Params = ()) -> sqlite3.Cursor:
    """Execute one statement; rows come back as tuples whatever the
    connection's ``row_factory``."""
    cur = conn.cursor()
    cur.row_factory = None
    cur.execute(sql, params)
    return cur


def rows(conn: sqlite3.Connection, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    """Every row of one statement (run to completion, so no statement is
    left in progress before the transaction ends)."""
    return run(conn, sql, params).fetchall()


def one(conn: sqlite3.Connection, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
    """The first row of one statement (run to completion), or None."""
    found = run(conn, sql, params).fetchall()
    return found[0] if found else None


#: sqlite3.LEGACY_TRANSACTION_CONTROL (Python 3.12+): ``autocommit`` left
#: to ``isolation_level``.
_LEGACY_TRANSACTION_CONTROL = -1


def begins_implicitly(conn: sqlite3.Connection) -> bool:
    """True when sqlite3 itself would begin a transaction before a write on
    this connection (Python's default mode), which the caller then commits;
    False on an autocommit connection."""
    if getattr(conn, "autocommit", _LEGACY_TRANSACTION_CONTROL) != _LEGACY_TRANSACTION_CONTROL:
        return False  # autocommit=True; with False, sqlite3 is always in a transaction
    return conn.isolation_level is not None


def _busy_timeout(conn: sqlite3.Connection) -> float:
    row = conn.execute("PRAGMA busy_timeout").fetchone()
    return float(row[0]) / 1000.0 if row else 0.0


def retry_locked(conn: sqlite3.Connection, sql: str, doing: str) -> None:
    """Run ``sql`` (BEGIN IMMEDIATE, COMMIT), retrying "database is locked"
    until the busy timeout has passed. SQLite's busy handler does the
    waiting; the loop covers the few cases where it returns at once
    (e.g. while another connection recovers the WAL)."""
    started = time.monotonic()
    timeout: float | None = None
    pause = 0.001
    while True:
        try:
            conn.execute(sql)
            return
        except sqlite3.OperationalError as e:
            if not is_locked(e):
                raise
            if timeout is None:
                timeout = _busy_timeout(conn)
            if time.monotonic() - started >= timeout:
                raise locked_error(e, doing) from e
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


@contextmanager
def _text_as_str(conn: sqlite3.Connection) -> Iterator[None]:
    # The engine reads ids and names as str, whatever the caller set.
    factory = conn.text_factory
    if factory is str:
        yield
        return
    conn.text_factory = str
    try:
        yield
    finally:
        conn.text_factory = factory


class writing:
    """One engine call that writes, as a ``with`` block: atomic, holding the
    write lock.

    In the caller's transaction the block runs in a SAVEPOINT that first
    takes the write lock; a call that writes before it reads anything and
    refuses nothing once it wrote (claim, complete_jobs, a plain start_chain
    ...) passes ``single_write=True`` and runs without either: its first
    statement takes the lock itself, and a refusal has nothing to undo.
    (A statement failing later for another reason, say a full disk, fails
    the caller's transaction as a failed statement does in PostgreSQL: the
    caller rolls it back.) Outside a transaction the block is its own BEGIN
    IMMEDIATE ... COMMIT. Locked errors leave as DatabaseBusyError /
    SnapshotConflictError.
    """

    __slots__ = ("conn", "schema", "doing", "single_write", "own", "leave_open", "savepoint", "factory")

    def __init__(self, conn: sqlite3.Connection, schema: str, doing: str, *, single_write: bool = False) -> None:
        if not isinstance(conn, sqlite3.Connection):
            raise InvalidArgumentError(f"expected a sqlite3.Connection, got {type(conn).__name__}")
        self.conn = conn
        self.schema = schema
        self.doing = doing
        self.single_write = single_write
        self.own = False
        self.leave_open = False
        self.savepoint = False
        self.factory: Any = None

    def __enter__(self) -> None:
        conn = self.conn
        self.factory = conn.text_factory
        if self.factory is not str:  # the engine reads ids and names as str
            conn.text_factory = str
        try:
            if not conn.in_transaction:
                retry_locked(conn, "BEGIN IMMEDIATE", self.doing)
                self.own = True
                # Python's default mode: the transaction is the caller's to
                # commit, as the one sqlite3 begins before a DML statement.
                self.leave_open = begins_implicitly(conn)
            elif not self.single_write:
                conn.execute("SAVEPOINT queuert")
                self.savepoint = True
                # The write lock first: a read before it would pin a snapshot
                # that another connection's commit can make stale before we
                # write.
                run(conn, statements(self.schema)["take_write_lock"])
        except BaseException as e:
            self._undo()
            self._restore()
            if isinstance(e, sqlite3.OperationalError) and is_locked(e):
                raise locked_error(e, self.doing) from e
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is None:
                if self.own and not self.leave_open:
                    try:
                        retry_locked(self.conn, "COMMIT", self.doing)
                    except BaseException:
                        self._undo()
                        raise
                elif self.savepoint:
                    self.conn.execute("RELEASE queuert")
                return
            self._undo()
            if isinstance(exc, sqlite3.OperationalError) and is_locked(exc):
                raise locked_error(exc, self.doing) from exc
        finally:
            self._restore()

    def _undo(self) -> None:
        conn = self.conn
        if self.own and conn.in_transaction:
            conn.execute("ROLLBACK")
        elif self.savepoint:
            conn.execute("ROLLBACK TO queuert")
            conn.execute("RELEASE queuert")

    def _restore(self) -> None:
        if self.factory is not str:
            self.conn.text_factory = self.factory


@contextmanager
def reading(conn: sqlite3.Connection, doing: str) -> Iterator[None]:
    """An engine call that only reads, with one snapshot for its statements:
    the caller's transaction, else a deferred one of its own."""
    if not isinstance(conn, sqlite3.Connection):
        raise InvalidArgumentError(f"expected a sqlite3.Connection, got {type(conn).__name__}")
    with _text_as_str(conn):
        if conn.in_transaction:
            yield
            return
        try:
            conn.execute("BEGIN")
            yield
        except sqlite3.OperationalError as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if is_locked(e):
                raise locked_error(e, doing) from e
            raise
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


class transaction:
    """``with transaction(conn):`` is ``BEGIN IMMEDIATE`` ... ``COMMIT``
    (``ROLLBACK`` on an exception) on an autocommit connection: your
    statements and engine calls commit together.

    IMMEDIATE takes the write lock at once, waiting up to the busy timeout,
    so the transaction never meets a snapshot conflict later.
    """

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        conn = self.conn
        if conn.in_transaction:
            raise InvalidArgumentError(
                "queuert._sqlite.transaction() begins a transaction, but this connection "
                "is already in one: commit or roll it back first"
            )
        retry_locked(conn, "BEGIN IMMEDIATE", "begin a transaction")
        return conn

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn = self.conn
        if exc is not None:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return
        try:
            retry_locked(conn, "COMMIT", "commit")
        except DatabaseBusyError:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
