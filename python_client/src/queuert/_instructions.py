"""What a client operation asks of the connection it runs on.

Every client call is written once, as an operation (:mod:`queuert._operations`,
:mod:`queuert._waiting`): a :class:`Call` when it is one statement (its query,
and what makes the result of the rows), else a generator that yields
instructions and receives each one's result. The sync and async drivers in
:mod:`queuert._execution` perform them: a :class:`Query` is executed and its
rows sent back; :class:`Sleep`, :class:`WaitNotify` and :class:`Cleanup` are
what ``wait_for_chain`` needs besides queries. So the statement text,
parameters, row mapping and hook calls exist once, and the two clients
differ only in ``conn.execute`` against ``await conn.execute``.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Generic, TypeVar, Union

from psycopg.rows import BaseRowFactory, dict_row

__all__ = [
    "Call",
    "CanListen",
    "Cleanup",
    "Op",
    "OpFactory",
    "Operation",
    "Query",
    "Sleep",
    "Steps",
    "WaitNotify",
]

T = TypeVar("T")


class Query:
    """One statement. ``row_factory`` says how its rows come back (psycopg's
    ``tuple_row``, ``dict_row``, or one that builds the result objects
    directly); the client sets its own, whatever the caller's connection
    has. ``prepare``, if given, is called with the cursor before the
    statement runs (to register a loader for this cursor only). A slotted
    class: built on every call, it should cost nothing (a NamedTuple's
    ``__new__`` cost several times as much)."""

    __slots__ = ("params", "prepare", "row_factory", "sql")

    def __init__(
        self,
        sql: str,
        params: Sequence[Any] | Mapping[str, Any],
        row_factory: BaseRowFactory[Any] = dict_row,
        prepare: Callable[[Any], None] | None = None,
    ) -> None:
        self.sql = sql
        self.params = params
        self.row_factory = row_factory
        self.prepare = prepare

    def __repr__(self) -> str:
        return f"Query({self.sql!r}, {self.params!r})"


@dataclasses.dataclass(frozen=True)
class CanListen:
    """Whether a LISTEN on this connection would take effect now (an
    autocommit connection outside a transaction block); the driver answers
    with a bool."""


@dataclasses.dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclasses.dataclass(frozen=True)
class WaitNotify:
    """Wait up to ``timeout`` s for a notification on ``channel`` with
    ``payload``; the driver sends back True if it came."""

    channel: str
    payload: str
    timeout: float


@dataclasses.dataclass(frozen=True)
class Cleanup:
    """Run ``query`` unless the connection is closed or broken."""

    query: Query


class Call(Generic[T]):
    """A one-statement operation: run ``query``, then ``finish(rows)`` is the
    call's result. No generator to create and step through: the common calls
    (``start_chain`` above all) pay for nothing but their statement.

    ``lite`` is the same call on SQLite: a function of the
    ``sqlite3.Connection`` (:mod:`queuert._sqlite.client_calls`, its other
    arguments bound) that returns the call's result."""

    __slots__ = ("finish", "lite", "query")

    def __init__(
        self,
        query: Query,
        finish: Callable[[list[Any]], T],
        lite: Callable[[sqlite3.Connection], T],
    ) -> None:
        self.query = query
        self.finish = finish
        self.lite = lite


#: A multi-step operation: yields instructions, receives each one's result
#: (a query's rows), returns the call's result.
Op = Generator[Any, Any, T]
#: Makes a fresh multi-step operation; called again when an autocommit call
#: is retried.
OpFactory = Callable[[], Op[T]]


class Steps(Generic[T]):
    """A multi-step operation: ``start()`` makes a fresh generator of
    instructions (:class:`Query`, :class:`Sleep` ...) for PostgreSQL;
    ``lite()`` the SQLite one, whose instructions are :class:`Sleep` and
    functions of the ``sqlite3.Connection`` (the driver sends back what each
    returns)."""

    __slots__ = ("lite", "start")

    def __init__(self, start: OpFactory[T], lite: OpFactory[T]) -> None:
        self.start = start
        self.lite = lite


#: What a client call hands to the driver.
Operation = Union[Call[T], Steps[T]]
