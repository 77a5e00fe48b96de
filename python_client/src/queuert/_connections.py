"""Which driver connection a client call runs on: psycopg's or SQLite's.

Every client function takes, besides a psycopg ``Connection`` (an
``AsyncConnection`` for :mod:`queuert.aio`) or a ``sqlite3.Connection``
(an ``aiosqlite.Connection`` for :mod:`queuert.aio`), a framework's handle
on one, and runs on the driver connection underneath, inside the
framework's transaction. It never commits or rolls back a transaction it did
not begin: the framework's own commit or rollback settles the jobs together
with the caller's rows. (On SQLite, a call outside a transaction on a
connection in Python's default mode begins one and leaves it to the
caller, as sqlite3 does for a write: :mod:`queuert._sqlite._connection`.)

- SQLAlchemy ``Session`` / ``scoped_session`` / ``Connection`` on a psycopg 3
  engine (``postgresql+psycopg://``), and ``AsyncSession`` /
  ``async_scoped_session`` / ``AsyncConnection`` on its async engine. A
  Session hands over the connection of its transaction
  (``Session.connection()``, which begins the Session's transaction if none
  has begun, as any statement would). On a Connection whose transaction has
  not begun, the call begins it the way SQLAlchemy's autobegin does on a
  first statement (no SQL is sent), so the caller's ``commit()`` commits
  the jobs; on an AUTOCOMMIT connection each call is its own transaction.
- Django's ``connection`` (or ``connections[alias]``) on the PostgreSQL
  backend with psycopg 3 (Django >= 4.2): inside ``transaction.atomic()``
  the call joins the atomic block; a failing call marks the block for
  rollback, as a failing ORM query does. Outside one (Django's autocommit)
  each call is its own transaction. Django loads ``jsonb`` as text on its
  connections (its JSONField parses it); the client's own cursors load it
  as JSON again, so results are the same on every connection.
- The same handles on SQLite: a SQLAlchemy engine ``sqlite://`` (pysqlite)
  or ``sqlite+aiosqlite://``, and Django's ``sqlite3`` backend.

Frameworks are recognised by the modules of the object's classes, so
neither is imported unless the caller passed one of its objects.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple, Union

import psycopg

from .errors import InvalidArgumentError

if TYPE_CHECKING:
    from typing import TypeAlias

    import aiosqlite

    from django.db.backends.base.base import BaseDatabaseWrapper
    from sqlalchemy.engine import Connection as SAConnection
    from sqlalchemy.ext.asyncio import AsyncConnection as SAAsyncConnection
    from sqlalchemy.ext.asyncio import AsyncSession, async_scoped_session
    from sqlalchemy.orm import Session, scoped_session

__all__ = [
    "AsyncConnectionLike",
    "ConnectionLike",
    "AsyncDriver",
    "Resolved",
    "async_connection",
    "sync_connection",
]

#: What the sync client accepts as its connection.
ConnectionLike: TypeAlias = Union[
    "psycopg.Connection[Any]",
    "sqlite3.Connection",
    "Session",
    "scoped_session[Any]",
    "SAConnection",
    "BaseDatabaseWrapper",
]
#: What :mod:`queuert.aio` accepts as its connection.
AsyncConnectionLike: TypeAlias = Union[
    "psycopg.AsyncConnection[Any]",
    "aiosqlite.Connection",
    "AsyncSession",
    "async_scoped_session[Any]",
    "SAAsyncConnection",
]
#: A driver connection of :mod:`queuert.aio`.
AsyncDriver: TypeAlias = Union["psycopg.AsyncConnection[Any]", "aiosqlite.Connection"]

_SYNC_KINDS = (
    "a psycopg.Connection or sqlite3.Connection, a SQLAlchemy Session or Connection "
    "on a psycopg 3 or SQLite engine, or a Django connection"
)
_ASYNC_KINDS = (
    "a psycopg.AsyncConnection or aiosqlite.Connection, or a SQLAlchemy AsyncSession "
    "or AsyncConnection on a psycopg 3 or aiosqlite engine"
)


def _framework(conn: object) -> str:
    """"sqlalchemy", "django", "aiosqlite" or "" from the modules of the
    object's classes (a subclass defined in the application still counts)."""
    for cls in type(conn).__mro__:
        root = cls.__module__.partition(".")[0]
        if root in ("sqlalchemy", "django", "aiosqlite"):
            return root
    return ""


class Resolved(NamedTuple):
    """A sync call's driver connection, and how to run on it."""

    conn: psycopg.Connection[Any] | sqlite3.Connection
    #: entered around the call (Django's: a failure marks the atomic block
    #: for rollback), or None
    context: AbstractContextManager[Any] | None = None
    #: the connection loads jsonb as text (Django): the client's cursors
    #: register psycopg's JSON loader again
    json_as_text: bool = False


def sync_connection(conn: object) -> Resolved:
    """The psycopg or sqlite3 Connection under ``conn``, and how to run on it."""
    if isinstance(conn, (psycopg.Connection, sqlite3.Connection)):
        return Resolved(conn)
    framework = _framework(conn)
    if framework == "sqlalchemy":
        return Resolved(_sqlalchemy_sync(conn))
    if framework == "django":
        return _django(conn)
    raise InvalidArgumentError(
        f"expected {_SYNC_KINDS}, got {type(conn).__name__} "
        "(use queuert.aio for an AsyncConnection)"
    )


async def async_connection(conn: object) -> AsyncDriver:
    """The psycopg AsyncConnection or aiosqlite Connection under ``conn``."""
    if isinstance(conn, psycopg.AsyncConnection):
        return conn
    framework = _framework(conn)
    if framework == "aiosqlite":
        return _aiosqlite(conn)
    if framework == "sqlalchemy":
        return await _sqlalchemy_async(conn)
    if isinstance(conn, sqlite3.Connection):
        raise InvalidArgumentError(
            "queuert.aio runs on SQLite through aiosqlite (an aiosqlite.Connection, whose "
            "thread owns the sqlite3 connection); for a sqlite3.Connection use queuert.client"
        )
    if framework == "django":
        raise InvalidArgumentError(
            "Django's database connection is synchronous: call queuert.client "
            "(from async code, through asgiref's sync_to_async)"
        )
    raise InvalidArgumentError(
        f"expected {_ASYNC_KINDS}, got {type(conn).__name__} "
        "(use queuert.client for a sync Connection)"
    )


def _not_psycopg(kind: str, driver: object) -> InvalidArgumentError:
    return InvalidArgumentError(
        f"queuert runs on psycopg 3 or SQLite: this {kind} uses {type(driver).__module__}."
        f"{type(driver).__name__} (create the engine with a postgresql+psycopg://, "
        "sqlite:// or sqlite+aiosqlite:// URL)"
    )


def _aiosqlite(conn: Any) -> aiosqlite.Connection:
    from aiosqlite import Connection

    if not isinstance(conn, Connection):
        raise InvalidArgumentError(f"expected {_ASYNC_KINDS}, got aiosqlite's {type(conn).__name__}")
    return conn


def _sqlalchemy_sync(conn: object) -> psycopg.Connection[Any] | sqlite3.Connection:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session, scoped_session

    if isinstance(conn, (Session, scoped_session)):
        # the connection of the Session's transaction (begun if need be)
        conn = conn.connection()
    if not isinstance(conn, Connection):
        raise InvalidArgumentError(
            f"expected {_SYNC_KINDS}, got SQLAlchemy's {type(conn).__name__} "
            "(use queuert.aio for an AsyncSession or AsyncConnection)"
        )
    driver = conn.connection.driver_connection
    if isinstance(driver, sqlite3.Connection):
        autocommit = driver.isolation_level is None  # SQLAlchemy's AUTOCOMMIT on pysqlite
    elif isinstance(driver, psycopg.Connection):
        autocommit = driver.autocommit
    else:
        raise _not_psycopg("SQLAlchemy connection", driver)
    if not autocommit and not conn.in_transaction():
        # What SQLAlchemy's autobegin does before a first statement (no SQL
        # is sent): the caller's commit() or rollback() then settles our rows.
        conn.begin()
    return driver


async def _sqlalchemy_async(conn: object) -> AsyncDriver:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_scoped_session

    if isinstance(conn, (AsyncSession, async_scoped_session)):
        conn = await conn.connection()
    if not isinstance(conn, AsyncConnection):
        raise InvalidArgumentError(
            f"expected {_ASYNC_KINDS}, got SQLAlchemy's {type(conn).__name__} "
            "(use queuert.client for a Session or Connection)"
        )
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if _framework(driver) == "aiosqlite":
        lite = _aiosqlite(driver)
        autocommit = lite.isolation_level is None
        if not autocommit and not conn.in_transaction():
            await conn.begin()  # as SQLAlchemy's autobegin would (below)
        return lite
    if not isinstance(driver, psycopg.AsyncConnection):
        raise _not_psycopg("SQLAlchemy connection", driver)
    if not driver.autocommit and not conn.in_transaction():
        await conn.begin()  # as SQLAlchemy's autobegin would (_sqlalchemy_sync)
    return driver


def _django(conn: Any) -> Resolved:
    from django.db import transaction
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.utils.connection import ConnectionProxy

    if not isinstance(conn, (BaseDatabaseWrapper, ConnectionProxy)):
        raise InvalidArgumentError(
            f"expected {_SYNC_KINDS}, got Django's {type(conn).__name__}"
        )
    if conn.vendor not in ("postgresql", "sqlite"):
        raise InvalidArgumentError(
            f"queuert needs PostgreSQL or SQLite: Django's connection {conn.alias!r} is {conn.vendor}"
        )
    # what Django does before each query of its own
    conn.validate_thread_sharing()
    conn.validate_no_broken_transaction()
    conn.ensure_connection()
    driver = conn.connection
    guard = transaction.mark_for_rollback_on_error(using=conn.alias)
    if isinstance(driver, sqlite3.Connection):
        return Resolved(driver, guard)
    if not isinstance(driver, psycopg.Connection):
        raise _not_psycopg("Django connection", driver)
    return Resolved(driver, guard, json_as_text=True)
