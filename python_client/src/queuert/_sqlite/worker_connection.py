"""A SQLite connection driven from the worker's event loop.

An engine call is a few statements run in-process, microseconds each: it
runs right on the event loop, with no thread hop. What must never run
there is a wait for the file's write lock, which another process (or an
atomic slot's open transaction) may hold for as long as its busy timeout:
the loop would stall, and with it renewals and async handlers. So each call
first runs with a busy timeout of zero; if the lock is taken it is run
again, from the start, in the connection's own thread with the full busy
timeout. The first try wrote nothing: a locked ``BEGIN IMMEDIATE`` is where
every engine call meets the lock (in WAL mode nothing after it waits), and
the engine rolls back whatever a refused call began.

The connection keeps a busy timeout of zero between calls, so a call costs
no PRAGMA. Only an atomic handler's ``job.conn`` gets the full timeout
(:meth:`WorkerConnection.full_timeout`, at the handler's first use of it):
inside the attempt's transaction no statement waits (it holds the write
lock), but a handler that ends that transaction itself and writes again
waits for the lock as any other connection would. The next worker call sets
zero again.

The connection: ``check_same_thread`` off (the loop and that thread take
turns, never overlap: one call at a time per connection), autocommit
(each engine call its own ``BEGIN IMMEDIATE`` ... ``COMMIT``, or an atomic
job's open transaction), temp_store in memory, the DSN's ``synchronous``
(FULL by default, as PostgreSQL runs with fsync on).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from ..errors import InvalidArgumentError, MigrationError
from ._connection import DEFAULT_TIMEOUT, connect, database_path
from ._errors import DatabaseBusyError, SnapshotConflictError, is_locked, locked_error

__all__ = ["SqliteTarget", "WorkerConnection", "is_sqlite_dsn"]


T = TypeVar("T")

#: at most this long (seconds) between a connection's turns of the event loop
YIELD_EVERY = 0.001


def is_sqlite_dsn(dsn: str | None) -> bool:
    """True for a ``sqlite:///...`` URL (the worker's SQLite backend)."""
    return dsn is not None and dsn.startswith("sqlite:")


class SqliteTarget:
    """A worker's ``sqlite:///path?busy_timeout=5&synchronous=FULL``.

    ``busy_timeout`` (seconds, default 5, Python's own) is how long a call
    waits for the write lock before it is retried by the worker (a staged
    flush, a renewal) or reported as busy; ``synchronous`` is the PRAGMA.
    """

    __slots__ = ("path", "busy_timeout", "synchronous")

    def __init__(self, dsn: str) -> None:
        base, _, query = dsn.partition("?")
        self.path = database_path(base)
        if not self.path:
            raise InvalidArgumentError(f"an SQLite worker needs a database file: sqlite:///PATH, got {dsn!r}")
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
        unknown = sorted(set(options) - {"busy_timeout", "synchronous"})
        if unknown:
            raise InvalidArgumentError(
                f"unknown option(s) {', '.join(unknown)} in {dsn!r}: an SQLite worker takes busy_timeout and synchronous"
            )
        try:
            self.busy_timeout = float(options.get("busy_timeout", DEFAULT_TIMEOUT))
        except ValueError:
            raise InvalidArgumentError(f"busy_timeout must be a number of seconds, got {options['busy_timeout']!r}")
        if not self.busy_timeout >= 0:
            raise InvalidArgumentError(f"busy_timeout must not be negative, got {self.busy_timeout}")
        self.synchronous = options.get("synchronous", "FULL").upper()
        if self.synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise InvalidArgumentError(f"synchronous must be OFF, NORMAL, FULL or EXTRA, got {self.synchronous!r}")


class WorkerConnection:
    """One connection of a worker: calls run on the loop, and in the
    connection's thread only while they wait for the write lock."""

    __slots__ = ("conn", "target", "_thread", "_busy_ms", "_full", "_waits", "_waiting", "_yield_at")

    def __init__(self, target: SqliteTarget) -> None:
        self.target = target
        self.conn = open_connection(target)
        self._busy_ms = round(target.busy_timeout * 1000)
        self._full = f"PRAGMA busy_timeout = {self._busy_ms}"
        # whether SQLite's own busy handler is on (the full timeout): off
        # between calls, on for an atomic handler's job.conn
        self._waits = True  # as connect() left it
        self._no_wait()
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self._waiting: asyncio.Future[Any] | None = None
        self._yield_at = 0.0  # when the next call lets the loop's other tasks run first

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)``: now, else (the write lock is taken) in the
        connection's thread once the lock is free, within the busy timeout."""
        conn = self.conn
        if self._waiting is not None and not self._waiting.done():
            # a call cancelled while its thread waited: let it end first
            await asyncio.wait([self._waiting])
        elif conn.in_transaction:
            # an atomic attempt's transaction holds the lock already: its
            # acknowledgement waits for nothing (and the claim after it
            # lets the other tasks run)
            return fn(conn, *args)
        elif time.monotonic() >= self._yield_at:
            # A database call is a point where the loop's other tasks run,
            # as they do while PostgreSQL answers: without it a busy slot
            # or lane would run claim after claim and never let the others
            # (the publisher, renewals, a stop, other slots) take their turn.
            # Once per YIELD_EVERY, not per call: a turn of the loop costs
            # as much as the claim's own Python, and these calls take
            # microseconds, so the others still run within a millisecond.
            await asyncio.sleep(0)
            self._yield_at = time.monotonic() + YIELD_EVERY
        if self._waits:
            self._no_wait()
        try:
            return fn(conn, *args)
        except SnapshotConflictError:
            raise
        except DatabaseBusyError:
            if self._busy_ms == 0:
                raise
        if self._thread is None:
            self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="queuert-sqlite-wait")
        waiting = asyncio.get_running_loop().run_in_executor(self._thread, self._patiently, fn, args)
        self._waiting = waiting
        return await waiting

    def begin_now(self) -> bool:
        """``BEGIN IMMEDIATE`` right now on the loop, as :meth:`call` would
        run a call's first statement without awaiting anything; False
        (nothing done) when :meth:`call` would wait or first let the
        loop's other tasks run (a call of its thread still ending, the
        write lock taken, its turn of the loop due, a transaction open):
        the caller then uses :meth:`call`. For a caller that runs call
        after call (an atomic slot): no coroutine per call."""
        conn = self.conn
        if (
            (self._waiting is not None and not self._waiting.done())
            or conn.in_transaction
            or time.monotonic() >= self._yield_at
        ):
            return False
        if self._waits:
            self._no_wait()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if is_locked(e):
                return False
            raise
        return True

    def turn_due(self) -> bool:
        """Whether the next call lets the loop's other tasks run first
        (:meth:`call`'s once per YIELD_EVERY)."""
        return time.monotonic() >= self._yield_at

    async def take_turn(self) -> None:
        """Let the loop's other tasks run, as :meth:`call` does when
        :meth:`turn_due`."""
        await asyncio.sleep(0)
        self._yield_at = time.monotonic() + YIELD_EVERY

    def call_here(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(conn, *args)`` in the calling thread (a sync handler's slot),
        waiting for the lock within the busy timeout."""
        return self._patiently(fn, args)

    def _patiently(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """Try ``fn`` until it gets the lock or the busy timeout has passed.

        Not SQLite's own busy handler: that one sleeps up to 100 ms between
        looks, so a writer that commits and begins again at once (an atomic
        worker, back to back) keeps the lock from it for seconds. Looking
        every millisecond or two, at random, finds the short gaps."""
        conn = self.conn
        deadline = time.monotonic() + self.target.busy_timeout
        if self._waits:
            self._no_wait()
        while True:
            try:
                return fn(conn, *args)
            except SnapshotConflictError:
                raise
            except DatabaseBusyError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(random.uniform(0.0002, 0.002))

    def full_timeout(self) -> None:
        """SQLite's busy handler with the full busy timeout, until the next
        call: for an atomic handler's own statements on ``job.conn``."""
        if not self._waits:
            self.conn.execute(self._full)
            self._waits = True

    def _no_wait(self) -> None:
        self.conn.execute("PRAGMA busy_timeout = 0")
        self._waits = False

    def close(self) -> None:
        """Roll back what is open and close; the waiting thread ends after
        its call (it closes nothing itself)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.shutdown(wait=True)
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        self.conn.close()


def open_connection(target: SqliteTarget) -> sqlite3.Connection:
    """An autocommit connection to an installed queuert file in WAL mode."""
    if not os.path.isfile(target.path):  # never create it (sqlite3 would)
        raise MigrationError(
            f"no SQLite database at {target.path!r}: create and install it with "
            f"`queuert migrate --dsn sqlite:///{target.path}`"
        )
    # opening reads the WAL index, which a checkpoint of another process
    # may hold for a moment: waited out within the busy timeout
    try:
        conn = connect(
            target.path, timeout=target.busy_timeout, synchronous=target.synchronous, check_same_thread=False
        )
    except sqlite3.OperationalError as e:
        if is_locked(e):
            raise locked_error(e, "open the database") from e
        raise
    try:
        mode = conn.execute("PRAGMA journal_mode").fetchone()
        if mode is None or str(mode[0]).lower() != "wal":
            raise MigrationError(
                f"the SQLite database {target.path!r} is not in WAL mode (journal_mode={mode and mode[0]}), "
                f"which several processes need to share it: run `queuert migrate --dsn sqlite:///{target.path}`"
            )
    except BaseException:
        conn.close()
        raise
    return conn
