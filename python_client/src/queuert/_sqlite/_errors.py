"""Errors of the SQLite engine.

The engine's refusals are the PostgreSQL engine's: the same SQLSTATE
(QU001..QU006), message and DETAIL, turned into the same exception classes
by :func:`queuert.errors.translate` (its mapping, not a copy of it).

SQLite adds one condition PostgreSQL reports differently: its single write
lock. ``database is locked`` never reaches the caller as a bare
``sqlite3.OperationalError``: it becomes :class:`DatabaseBusyError` once the
connection's busy timeout has run out, or :class:`SnapshotConflictError` when
a transaction that had already read must write after another connection
committed (SQLite's BUSY_SNAPSHOT: only a new transaction can proceed).
"""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace

from ..errors import QueuertError, translate

__all__ = [
    "DatabaseBusyError",
    "SnapshotConflictError",
    "engine_error",
    "is_locked",
    "locked_error",
]

_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_BUSY_SNAPSHOT = 517


class DatabaseBusyError(QueuertError):
    """SQLite's write lock stayed held by another connection for longer than
    this connection's busy timeout. Nothing of the call was written."""


class SnapshotConflictError(DatabaseBusyError):
    """The caller's transaction read the database, another connection then
    committed, and this transaction may no longer write (BUSY_SNAPSHOT).

    Roll back and run the whole transaction again: ``sqlstate`` is 40001, so
    :func:`queuert.retry_on_conflict` does exactly that. Transactions that
    write are best begun with ``BEGIN IMMEDIATE``, which never meets it.
    """

    default_sqlstate = "40001"


class _EngineError(Exception):
    """The shape :func:`queuert.errors.translate` reads from a driver error."""

    def __init__(self, sqlstate: str, message: str, detail: str | None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.diag = SimpleNamespace(message_primary=message, message_detail=detail)


def engine_error(sqlstate: str, message: str, detail: str | None = None) -> BaseException:
    """The queuert exception for an engine refusal, e.g. ``QU001``."""
    return translate(_EngineError(sqlstate, message, detail))


def is_locked(exc: BaseException) -> bool:
    """True for SQLite's "database is locked" / "database table is locked"."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(exc)
    return "database is locked" in text or "database table is locked" in text


def locked_error(exc: sqlite3.OperationalError, doing: str) -> DatabaseBusyError:
    """The typed error for a lock that could not be had while ``doing``."""
    if getattr(exc, "sqlite_errorcode", None) == _SQLITE_BUSY_SNAPSHOT:
        return SnapshotConflictError(
            f"cannot {doing}: another connection committed after this transaction "
            "read the database, so it may not write; roll back and run the "
            "transaction again (begin writing transactions with BEGIN IMMEDIATE)"
        )
    return DatabaseBusyError(
        f"cannot {doing}: the database is locked by another connection for longer "
        "than the busy timeout (sqlite3.connect(timeout=...)); nothing was written"
    )
