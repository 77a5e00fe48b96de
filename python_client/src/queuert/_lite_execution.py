"""Running an operation on SQLite: a ``sqlite3.Connection`` (sync) or an
``aiosqlite.Connection`` (async).

Every operation carries its SQLite twin (:mod:`queuert._instructions`): a
:class:`~queuert._instructions.Call`'s ``lite`` is a function of the
connection; a :class:`~queuert._instructions.Steps`' ``lite()`` yields such
functions and :class:`~queuert._instructions.Sleep`. The SQLite engine
(:mod:`queuert._sqlite`) waits out the write lock within the connection's
busy timeout and raises queuert's exceptions itself, so there is no retry
loop here: a call that was its own transaction took the write lock before
it read (``BEGIN IMMEDIATE``) and cannot meet a conflict.

Async: aiosqlite owns each ``sqlite3.Connection`` in a thread of its own
and runs every statement there, in order. A client call runs there too, as
one function (through the method aiosqlite runs its own statements with),
so it joins the transaction the application's statements on that
connection are in, and never overlaps them. The function runs in a copy of
the caller's context, so the engine reports to the caller's transaction
hooks (:mod:`queuert.hooks`). ``wait_for_chain`` sleeps between polls in
the event loop, not in that thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._instructions import Call, Op, Operation, Sleep
from .errors import MigrationError

if TYPE_CHECKING:
    import aiosqlite

__all__ = ["run_aiosqlite", "run_sqlite"]

T = TypeVar("T")

_NO_TABLE = re.compile(r"no such table: ((\w+)_(?:job|job_blocker|job_type|chain|stats))\b")


def _not_installed(e: sqlite3.OperationalError) -> MigrationError | None:
    """A clear error for a database file queuert was never migrated into."""
    found = _NO_TABLE.search(str(e))
    if found is None:
        return None
    return MigrationError(
        f"queuert is not installed in this SQLite database (no table {found.group(1)}): "
        f"run `queuert migrate --dsn sqlite:///PATH --schema {found.group(2)}`"
    )


def _call(fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    try:
        return fn(conn)
    except sqlite3.OperationalError as e:
        clearer = _not_installed(e)
        if clearer is None:
            raise
        raise clearer from e


def run_sqlite(conn: sqlite3.Connection, op: Operation[T]) -> T:
    """Run an operation on a sqlite3 connection."""
    if isinstance(op, Call):
        return _call(op.lite, conn)
    steps: Op[T] = op.lite()
    try:
        instr = next(steps)
        while True:
            try:
                if isinstance(instr, Sleep):
                    time.sleep(instr.seconds)
                    result: Any = None
                else:
                    result = _call(instr, conn)
            except BaseException as e:
                instr = steps.throw(e)
            else:
                instr = steps.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def _in_thread(aconn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    # aiosqlite's own way of running a function in the connection's thread
    # (its execute() and commit() go through it); tests_py pins it.
    context = contextvars.copy_context()
    run_there: Callable[..., Awaitable[T]] = aconn._execute  # untyped in aiosqlite
    return await run_there(context.run, _call, fn, aconn._conn)


async def run_aiosqlite(aconn: aiosqlite.Connection, op: Operation[T]) -> T:
    """Run an operation on an aiosqlite connection, in its thread."""
    if isinstance(op, Call):
        return await _in_thread(aconn, op.lite)
    steps: Op[T] = op.lite()
    try:
        instr = next(steps)
        while True:
            try:
                if isinstance(instr, Sleep):
                    await asyncio.sleep(instr.seconds)
                    result: Any = None
                else:
                    result = await _in_thread(aconn, instr)
            except BaseException as e:
                instr = steps.throw(e)
            else:
                instr = steps.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
