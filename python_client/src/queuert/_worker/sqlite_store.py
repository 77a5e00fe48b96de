"""The worker's store on SQLite (see ``store``): ``queuert.Worker("sqlite:///app.db")``.

Every call is one transaction of the SQLite engine (:mod:`queuert._sqlite`)
on the worker's own connection, run in-process: a flush is ``BEGIN
IMMEDIATE``, the batched acknowledgements (``complete_jobs``,
``continue_jobs``, ``fail_jobs``, ``release_jobs``), the next claim and
``COMMIT``. There are no round trips to save; what costs is the write lock,
which all writers of the file take in turn (no SKIP LOCKED: claims never
overlap, they take turns). A call runs on the event loop and waits for that
lock only in the connection's thread (:mod:`queuert._sqlite.worker_connection`).

An atomic slot's transaction (claim, the handler's statements on
``job.conn``, the acknowledgement) holds the write lock for the handler's
whole run: on SQLite atomic jobs of one file run one at a time, whatever
the concurrency.

Errors: the engine's refusals are queuert's exceptions (JobLost for QU001,
QU003 and QU004, else Rejected); a write lock not had within the busy
timeout is a Conflict (the same is sent again); any other SQLite error (a
full disk, a file that is not a queuert database) a ConnectionLost, after
which the worker opens a new connection with backoff.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, NoReturn, TypeVar

import queuert._sqlite as qs
from queuert._sqlite._connection import retry_locked
from queuert._sqlite.claim import WorkerClaim
from queuert._sqlite.worker_connection import SqliteTarget, WorkerConnection
from queuert._worker.outcomes import Ack
from queuert._worker.sqlite_acks import write_acks
from queuert._worker.store import (
    ClaimRow,
    Conflict,
    ConnectionLost,
    JobLost,
    Reaped,
    Rejected,
    StoreError,
    TransactionState,
    Written,
)
from queuert.errors import MigrationError, QueuertError
from queuert.job import JobContext

T = TypeVar("T")

_SAVEPOINT = "SAVEPOINT queuert_handler"
_ROLLBACK_TO = "ROLLBACK TO queuert_handler"
_LOST_SQLSTATES = frozenset({"QU001", "QU003", "QU004"})


def _typed(exc: BaseException) -> BaseException:
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


class SqliteStore:
    """Sessions of one worker run on one SQLite file."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str,
        worker_id: str,
        type_names: Sequence[str],
        lease: timedelta | None,
    ) -> None:
        self.target = SqliteTarget(dsn)
        self.schema = schema
        self.worker_id = worker_id
        self.type_names = tuple(type_names)  # a tuple: the claim caches its JSON
        self.lease = lease
        self._sync_sessions: dict[int, SqliteSyncAtomicSession] = {}
        # a prepared claim per set of types (a flush's, each kind of slot's)
        self._claims: dict[tuple[str, ...], WorkerClaim] = {}

    def connect(self) -> WorkerConnection:
        try:
            return WorkerConnection(self.target)
        except BaseException as exc:
            raise _typed(exc) from exc

    async def open(self, purpose: Literal["main", "maintenance"]) -> SqliteSession:
        return SqliteSession(self, self.connect())

    async def open_atomic(self) -> SqliteAtomicSession:
        return SqliteAtomicSession(self, self.connect())

    async def open_announcer(self) -> SilentAnnouncer:
        """SQLite has no NOTIFY: a worker on SQLite announces through its
        notifier (in-process by default), never through the database."""
        return SilentAnnouncer()

    def open_atomic_sync(self) -> SqliteSyncAtomicSession:
        session = SqliteSyncAtomicSession(self, self.connect())
        self._sync_sessions[session.backend_id] = session
        return session

    async def interrupt(self, backend_ids: Sequence[int]) -> None:
        """Past the grace period: a sync handler's thread cannot be stopped,
        but its transaction (claim included) must not commit. Its running
        statement is interrupted and the session refuses to acknowledge;
        the transaction is rolled back when the session closes (or with the
        process), leaving the job pending with its attempt unspent."""
        for backend_id in backend_ids:
            session = self._sync_sessions.get(backend_id)
            if session is not None:
                session.doomed = True
                session.wc.conn.interrupt()

    # -- the transactions, run by a WorkerConnection ------------------------

    def flush_tx(self, conn: sqlite3.Connection, acks: Sequence[Ack], claim_n: int, single: bool) -> Written:
        written = Written()
        with qs.transaction(conn):
            if acks:
                write_acks(conn, self.worker_id, acks, written, schema=self.schema, single=single)
            if claim_n:
                written.claimed = self.claim_rows(conn, claim_n, self.type_names)
        return written

    def claim_rows(
        self, conn: sqlite3.Connection, n: int, type_names: tuple[str, ...], texts: list[tuple[str, str]] | None = None
    ) -> list[ClaimRow]:
        """In the open transaction: up to ``n`` jobs of these types
        (``texts`` gets each one's id and chain id as stored)."""
        claim = self._claims.get(type_names)
        if claim is None:
            claim = self._claims[type_names] = WorkerClaim(self.worker_id, type_names, self.lease, schema=self.schema)
        return claim(conn, n, texts)

    def begin_attempt_tx(
        self, conn: sqlite3.Connection, type_names: tuple[str, ...], texts: list[tuple[str, str]] | None = None
    ) -> ClaimRow | None:
        """BEGIN IMMEDIATE, claim one job; the transaction stays open for
        the handler (rolled back when nothing was claimed). The handler's
        savepoint is taken at its first use of ``job.conn`` (``lend``)."""
        retry_locked(conn, "BEGIN IMMEDIATE", "claim a job")
        try:
            rows = self.claim_rows(conn, 1, type_names, texts)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if not rows:
            conn.execute("ROLLBACK")
            return None
        return rows[0]

    def ack_tx(
        self, conn: sqlite3.Connection, ack: Ack, rollback: bool, texts: tuple[Any, str, str] | None = None
    ) -> Written:
        """In the attempt's open transaction: undo the handler (``rollback``:
        to its savepoint, when it took one), write the acknowledgement,
        COMMIT. A refusal leaves the transaction open, the handler's work in
        it, for the failure the worker writes next. ``texts``: the claimed
        job's UUID, id and chain id as stored."""
        if rollback:
            conn.execute(_ROLLBACK_TO)
        written = Written()
        write_acks(conn, self.worker_id, (ack,), written, schema=self.schema, single=False, texts=texts)
        conn.execute("COMMIT")
        return written

    @staticmethod
    def restart_tx(conn: sqlite3.Connection) -> None:
        retry_locked(conn, "BEGIN IMMEDIATE", "begin a transaction")
        conn.execute(_SAVEPOINT)

    @staticmethod
    def rollback_tx(conn: sqlite3.Connection, to_savepoint: bool, savepoint: bool = True) -> None:
        """``ROLLBACK``, or ``ROLLBACK TO`` the handler's savepoint (nothing
        to undo when ``savepoint`` is False: the handler never used
        ``job.conn``)."""
        if not conn.in_transaction:
            if to_savepoint:
                # the worker reads this as "the acknowledgement committed"
                raise StoreError("no attempt is open: its transaction has ended")
            return
        if not to_savepoint:
            conn.execute("ROLLBACK")
        elif savepoint:
            conn.execute(_ROLLBACK_TO)


class SilentAnnouncer:
    """The database's announcements on SQLite: none (see open_announcer)."""

    closed = False

    async def close(self) -> None:
        return None

    async def announce(self, ready: Sequence[str], chains: Sequence[str]) -> None:
        return None


def _raise_typed(exc: BaseException) -> NoReturn:
    typed = _typed(exc)
    if typed is exc:
        raise exc
    raise typed from exc


async def _run(wc: WorkerConnection, fn: Callable[..., T], *args: Any) -> T:
    try:
        return await wc.call(fn, *args)
    except BaseException as exc:
        _raise_typed(exc)


def _run_here(wc: WorkerConnection, fn: Callable[..., T], *args: Any) -> T:
    try:
        return wc.call_here(fn, *args)
    except BaseException as exc:
        _raise_typed(exc)


class SqliteSession:
    """A staged worker's connection (a flush lane, or maintenance)."""

    def __init__(self, store: SqliteStore, wc: WorkerConnection) -> None:
        self.store = store
        self.wc = wc
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.wc.close()

    async def flush(self, acks: Sequence[Ack], claim_n: int) -> Written:
        return await _run(self.wc, self.store.flush_tx, acks, claim_n, False)

    async def acknowledge(self, ack: Ack) -> Written:
        return await _run(self.wc, self.store.flush_tx, (ack,), 0, True)

    async def claim(self, n: int) -> list[ClaimRow]:
        return (await _run(self.wc, self.store.flush_tx, (), n, False)).claimed

    async def release_orphans(self, known: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, str]]:
        store = self.store
        known_ids = set(known)
        running = await _run(self.wc, lambda c: qs.running_jobs(c, store.worker_id, schema=store.schema))
        orphans = [r for r in running if r["id"] not in known_ids]
        if not orphans:
            return []
        rows = await _run(
            self.wc,
            lambda c: qs.release_jobs(
                c, store.worker_id, [r["id"] for r in orphans], [r["attempt"] for r in orphans], schema=store.schema
            ),
        )
        return [(r["id"], o["type_name"]) for r, o in zip(rows, orphans) if r["outcome"] == "released"]

    async def renew(self, job_ids: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, str]]:
        store = self.store
        rows = await _run(
            self.wc, lambda c: qs.renew_leases(c, store.worker_id, list(job_ids), store.lease, schema=store.schema)
        )
        return [(r["job_id"], r["outcome"]) for r in rows if r["outcome"] != "renewed"]

    async def reap(self, max_jobs: int) -> list[Reaped]:
        schema = self.store.schema
        rows = await _run(self.wc, lambda c: qs.reap(c, max_jobs, schema=schema))
        return [Reaped(r["job_id"], r["previous_worker"], r["status"], r["type_name"]) for r in rows]

    async def queue_stats(self) -> list[tuple[str, str, int, float | None]]:
        schema = self.store.schema
        rows = await _run(self.wc, lambda c: qs.stats(c, schema=schema))
        return [
            (
                r["type_name"],
                r["status"],
                r["count"],
                None if r["oldest_due_age"] is None else r["oldest_due_age"].total_seconds(),
            )
            for r in rows
        ]

    async def seconds_until_due(self) -> float | None:
        store = self.store
        due = await _run(self.wc, lambda c: qs.next_due_at(c, store.type_names, schema=store.schema))
        if due is None:
            return None
        return (due - datetime.now(timezone.utc)).total_seconds()


class _SlotConnection:
    """What both atomic slot sessions are: a worker connection whose
    ``sqlite3.Connection`` is the handler's ``job.conn``.

    The handler's savepoint (what a failure rolls back to) and the full
    busy timeout are set at the handler's first use of ``job.conn``, not
    at every claim: a handler that never touches it has written nothing to
    undo, and its attempt runs three statements fewer (SAVEPOINT, the
    PRAGMA for the full timeout and the one WorkerConnection would run
    to set it back to zero)."""

    def __init__(self, store: SqliteStore, wc: WorkerConnection) -> None:
        self.store = store
        self.wc = wc
        self._closed = False
        self.attempts = 0  # which attempt a job.conn hook belongs to
        self.savepoint = False  # taken in the open attempt
        # the open attempt's job: its UUID, id and chain id as stored
        self.texts: tuple[Any, str, str] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def lend(self, job: JobContext[Any]) -> None:
        job.conn = self.wc.conn
        self.attempts += 1
        self.savepoint = False
        attempt = self.attempts

        def first_use() -> None:
            # a job.conn kept past its attempt changes nothing of the next
            if attempt == self.attempts and not self.savepoint and not self._closed:
                self.wc.full_timeout()
                if self.wc.conn.in_transaction:
                    self.wc.conn.execute(_SAVEPOINT)
                    self.savepoint = True

        job._conn_hook = first_use

    def transaction_state(self) -> TransactionState:
        return "open" if self.wc.conn.in_transaction else "idle"

    def _ack_tx(self, conn: sqlite3.Connection, ack: Ack, rollback: bool) -> Written:
        return self.store.ack_tx(conn, ack, rollback and self.savepoint, self.texts)

    def _begin_tx(self, conn: sqlite3.Connection, type_names: tuple[str, ...]) -> ClaimRow | None:
        texts: list[tuple[str, str]] = []
        row = self.store.begin_attempt_tx(conn, type_names, texts)
        self.texts = None if row is None else (row[0], *texts[0])
        return row

    def _restart_tx(self, conn: sqlite3.Connection) -> None:
        self.store.restart_tx(conn)
        self.savepoint = True


class SqliteAtomicSession(_SlotConnection):
    """An atomic slot's connection, async handlers: ``job.conn`` is its
    ``sqlite3.Connection``, in the attempt's transaction."""

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.wc.close()

    async def open_attempt(
        self, type_names: Sequence[str], carry: tuple[Ack, bool] | None
    ) -> tuple[Written | None, ClaimRow | None]:
        written = None
        if carry is not None:
            # the previous attempt's transaction holds the lock: no wait
            written = await _run(self.wc, self._ack_tx, carry[0], carry[1])
        try:
            row = await _run(self.wc, self._begin_tx, tuple(type_names))
        except Conflict:
            # another writer held the file longer than the busy timeout:
            # as if nothing were due; the due-time poll looks again soon
            row = None
        return written, row

    async def acknowledge(self, ack: Ack, rollback: bool) -> Written:
        return await _run(self.wc, self._ack_tx, ack, rollback)

    async def restart_transaction(self) -> None:
        await _run(self.wc, self._restart_tx)

    async def rollback_to_savepoint(self) -> None:
        await _run(self.wc, self.store.rollback_tx, True, self.savepoint)

    async def rollback(self) -> None:
        await _run(self.wc, self.store.rollback_tx, False)


class SqliteSyncAtomicSession(_SlotConnection):
    """An atomic slot's connection for sync handlers (the slot's thread)."""

    def __init__(self, store: SqliteStore, wc: WorkerConnection) -> None:
        super().__init__(store, wc)
        self.doomed = False

    @property
    def backend_id(self) -> int:
        return id(self)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.store._sync_sessions.pop(self.backend_id, None)
            self.wc.close()

    def open_attempt(self, type_names: Sequence[str]) -> ClaimRow | None:
        try:
            return _run_here(self.wc, self._begin_tx, tuple(type_names))
        except Conflict:
            return None  # as SqliteAtomicSession.open_attempt

    def acknowledge(self, ack: Ack, rollback: bool) -> Written:
        if self.doomed:
            # interrupted at shutdown: nothing of this attempt commits
            self.store.rollback_tx(self.wc.conn, False)
            raise ConnectionLost("released at shutdown")
        return _run_here(self.wc, self._ack_tx, ack, rollback)

    def restart_transaction(self) -> None:
        _run_here(self.wc, self._restart_tx)

    def rollback(self) -> None:
        _run_here(self.wc, self.store.rollback_tx, False)
