"""Running an operation on a connection: the sync and the async driver.

The two clients share everything but this: :func:`run` performs an
operation's instructions (:mod:`queuert._instructions`) with ``conn.execute``,
:func:`run_async` with ``await conn.execute``. Each is the same four steps,
written side by side so they stay twins:

- execute: one query on a cursor of its own (the query's row factory,
  whatever the connection's), engine errors translated to queuert's;
- perform: one instruction (query, sleep, notification wait, cleanup);
- drive: feed an operation its results until it returns;
- run: resolve the connection (psycopg, SQLAlchemy, Django:
  :mod:`queuert._connections`) and run the operation (a one-statement Call
  directly, a multi-step one through drive), again after a serialization
  failure or deadlock when the call was its own transaction.

Inside a hooks block that publishes through a broker, the first query of
the caller's transaction goes out pipelined behind ``SET LOCAL
queuert.notify = 'none'`` (:mod:`queuert._engine_quiet`): one round trip.

A connection that resolves to SQLite's runs the operation's SQLite twin
instead (:mod:`queuert._lite_execution`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any, TypeVar

import psycopg
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.rows import tuple_row
from psycopg.types.json import JsonbLoader

from ._connections import async_connection, sync_connection
from ._engine_quiet import QUIET, _quiet_sessions, learn, quiet_needed
from .hooks import _current

#: hooks.current_hooks without its frame (asked before every statement)
_current_hooks = _current.get
from ._instructions import Call, CanListen, Cleanup, Op, Operation, Query, Sleep, WaitNotify
from ._lite_execution import run_aiosqlite, run_sqlite
from .errors import is_conflict, translate

__all__ = ["can_listen", "run", "run_async"]

T = TypeVar("T")

#: attempts of a call that is its own transaction, after 40001 / 40P01
AUTO_RETRIES = 5

_TUPLES_OK = ExecStatus.TUPLES_OK
_IDLE = TransactionStatus.IDLE


def can_listen(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """True on an autocommit connection outside a transaction block: there
    a LISTEN takes effect at once, and each call is its own transaction.

    Also asked after a call failed, to decide whether it may be run again:
    a failed statement outside a transaction block leaves the connection
    idle, one inside a block (the caller's transaction) leaves the block
    failed, and only its owner may run it again. So a call that succeeds
    pays nothing for the retry rule."""
    return conn.autocommit and conn.pgconn.transaction_status == _IDLE


def _backoff(attempt: int) -> float:
    return 0.005 * 2.0**attempt


# -------------------------------------------------------------------- sync


def _execute(conn: psycopg.Connection[Any], query: Query, json_as_text: bool = False) -> list[Any]:
    try:
        # the quiet-session set first: a producer with the role setting asks it every call
        if _current_hooks() is not None and id(conn) not in _quiet_sessions and quiet_needed(conn):
            with conn.pipeline():  # one round trip; results read at its end
                quiet = conn.cursor(row_factory=tuple_row)
                quiet.execute(QUIET)
                cur = _send(conn, query, json_as_text)
            learn(conn, quiet.fetchone())
        else:
            cur = _send(conn, query, json_as_text)
        # a row set or not, from the result status (cheaper than building
        # cur.description)
        result = cur.pgresult
        return cur.fetchall() if result is not None and result.status == _TUPLES_OK else []
    except psycopg.Error as e:
        new = translate(e)
        if new is e:
            raise
        raise new from e


def _send(conn: psycopg.Connection[Any], query: Query, json_as_text: bool) -> psycopg.Cursor[Any]:
    cur = conn.cursor(row_factory=query.row_factory)
    if json_as_text:  # a Django connection: read JSON as JSON (_connections)
        cur.adapters.register_loader("jsonb", JsonbLoader)
    if query.prepare is not None:
        query.prepare(cur)
    cur.execute(query.sql, query.params)
    return cur


def _perform(conn: psycopg.Connection[Any], instr: Any, json_as_text: bool) -> Any:
    if type(instr) is Query:
        return _execute(conn, instr, json_as_text)
    if isinstance(instr, CanListen):
        return can_listen(conn)
    if isinstance(instr, WaitNotify):
        for note in conn.notifies(timeout=instr.timeout):
            if note.channel == instr.channel and note.payload == instr.payload:
                return True
        return False
    if isinstance(instr, Sleep):
        time.sleep(instr.seconds)
        return None
    if isinstance(instr, Cleanup):
        if not conn.closed and not conn.broken:
            _execute(conn, instr.query, json_as_text)
        return None
    raise TypeError(f"unknown instruction {instr!r}")  # pragma: no cover


def _drive(conn: psycopg.Connection[Any], op: Op[T], json_as_text: bool) -> T:
    try:
        instr = next(op)
        while True:
            try:
                result = _perform(conn, instr, json_as_text)
            except BaseException as e:
                instr = op.throw(e)  # lets the operation clean up, or re-raises
            else:
                instr = op.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def _retrying(conn: psycopg.Connection[Any], op: Operation[T], json_as_text: bool = False) -> T:
    attempt = 0
    while True:
        try:
            if isinstance(op, Call):
                return op.finish(_execute(conn, op.query, json_as_text))
            return _drive(conn, op.start(), json_as_text)
        except psycopg.Error as e:
            attempt += 1
            if not (can_listen(conn) and is_conflict(e) and attempt < AUTO_RETRIES):
                raise
            time.sleep(_backoff(attempt))


def run(conn: object, op: Operation[T]) -> T:
    """Run an operation on a sync connection (or a framework's handle on one)."""
    if type(conn) is psycopg.Connection:
        return _retrying(conn, op)
    if type(conn) is sqlite3.Connection:
        return run_sqlite(conn, op)
    driver, context, json_as_text = sync_connection(conn)
    if isinstance(driver, sqlite3.Connection):
        if context is None:
            return run_sqlite(driver, op)
        with context:
            return run_sqlite(driver, op)
    if context is None:
        return _retrying(driver, op, json_as_text)
    with context:
        return _retrying(driver, op, json_as_text)


# ------------------------------------------------------------------- async


async def _execute_async(conn: psycopg.AsyncConnection[Any], query: Query) -> list[Any]:
    try:
        # the quiet-session set first: a producer with the role setting asks it every call
        if _current_hooks() is not None and id(conn) not in _quiet_sessions and quiet_needed(conn):
            async with conn.pipeline():  # one round trip; results read at its end
                quiet_async = conn.cursor(row_factory=tuple_row)
                await quiet_async.execute(QUIET)
                cur = await _send_async(conn, query)
            learn(conn, await quiet_async.fetchone())
        else:
            cur = await _send_async(conn, query)
        result = cur.pgresult
        if result is not None and result.status == _TUPLES_OK:
            return await cur.fetchall()
        return []
    except psycopg.Error as e:
        new = translate(e)
        if new is e:
            raise
        raise new from e


async def _send_async(conn: psycopg.AsyncConnection[Any], query: Query) -> psycopg.AsyncCursor[Any]:
    cur = conn.cursor(row_factory=query.row_factory)
    if query.prepare is not None:
        query.prepare(cur)
    await cur.execute(query.sql, query.params)
    return cur


async def _perform_async(conn: psycopg.AsyncConnection[Any], instr: Any) -> Any:
    if type(instr) is Query:
        return await _execute_async(conn, instr)
    if isinstance(instr, CanListen):
        return can_listen(conn)
    if isinstance(instr, WaitNotify):
        async for note in conn.notifies(timeout=instr.timeout):
            if note.channel == instr.channel and note.payload == instr.payload:
                return True
        return False
    if isinstance(instr, Sleep):
        await asyncio.sleep(instr.seconds)
        return None
    if isinstance(instr, Cleanup):
        if not conn.closed and not conn.broken:
            await _execute_async(conn, instr.query)
        return None
    raise TypeError(f"unknown instruction {instr!r}")  # pragma: no cover


async def _drive_async(conn: psycopg.AsyncConnection[Any], op: Op[T]) -> T:
    try:
        instr = next(op)
        while True:
            try:
                result = await _perform_async(conn, instr)
            except BaseException as e:
                instr = op.throw(e)  # lets the operation clean up, or re-raises
            else:
                instr = op.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def _retrying_async(conn: psycopg.AsyncConnection[Any], op: Operation[T]) -> T:
    attempt = 0
    while True:
        try:
            if isinstance(op, Call):
                return op.finish(await _execute_async(conn, op.query))
            return await _drive_async(conn, op.start())
        except psycopg.Error as e:
            attempt += 1
            if not (can_listen(conn) and is_conflict(e) and attempt < AUTO_RETRIES):
                raise
            await asyncio.sleep(_backoff(attempt))


async def run_async(conn: object, op: Operation[T]) -> T:
    """Run an operation on an async connection (or a framework's handle on one)."""
    if type(conn) is psycopg.AsyncConnection:
        return await _retrying_async(conn, op)
    driver = await async_connection(conn)
    if isinstance(driver, psycopg.AsyncConnection):
        return await _retrying_async(driver, op)
    return await run_aiosqlite(driver, op)
