"""How the SQLite store's calls run and fail (``sqlite_store``,
``sqlite_slots``): on the worker connection (:mod:`queuert._sqlite.worker_connection`),
their errors turned into the store's.

The engine's refusals are queuert's exceptions (JobLost for QU001, QU003
and QU004, else Rejected); a write lock not had within the busy timeout is
a Conflict (the same is sent again); any other SQLite error (a full disk, a
file that is not a queuert database) a ConnectionLost, after which the
worker opens a new connection with backoff.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import queuert._sqlite as qs
from queuert._sqlite.worker_connection import WorkerConnection
from queuert._worker.store import Conflict, ConnectionLost, JobLost, Rejected, StoreError
from queuert.errors import MigrationError, QueuertError

T = TypeVar("T")

_LOST_SQLSTATES = frozenset({"QU001", "QU003", "QU004"})


def typed(exc: BaseException) -> BaseException:
    """``exc`` as the store's error (itself when it is none of them)."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, qs.DatabaseBusyError):
        # the engine names the client's knob; a worker's is in its DSN
        return Conflict(str(exc).replace("sqlite3.connect(timeout=...)", "sqlite:///PATH?busy_timeout=SECONDS"))
    if isinstance(exc, QueuertError) and not isinstance(exc, MigrationError):
        if exc.sqlstate in _LOST_SQLSTATES:
            return JobLost(str(exc))
        return Rejected(exc)
    if isinstance(exc, (sqlite3.Error, MigrationError, OSError)):
        return ConnectionLost(f"{type(exc).__name__}: {exc}")
    return exc


def raise_typed(exc: BaseException) -> NoReturn:
    found = typed(exc)
    if found is exc:
        raise exc
    raise found from exc


async def run(wc: WorkerConnection, fn: Callable[..., T], *args: Any) -> T:
    """``fn(conn, *args)`` on the loop (in the connection's thread while
    it waits for the write lock)."""
    try:
        return await wc.call(fn, *args)
    except BaseException as exc:
        raise_typed(exc)


def run_here(wc: WorkerConnection, fn: Callable[..., T], *args: Any) -> T:
    """``fn(conn, *args)`` in the calling thread (a sync slot's)."""
    try:
        return wc.call_here(fn, *args)
    except BaseException as exc:
        raise_typed(exc)
