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
the concurrency (``sqlite_slots``).

The atomic slots' sessions are ``sqlite_slots``; how calls run and their
errors become the store's, ``sqlite_calls``.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Literal

import queuert._sqlite as qs
from queuert._sqlite.claim import WorkerClaim
from queuert._sqlite.worker_connection import SqliteTarget, WorkerConnection
from queuert._worker.outcomes import Ack
from queuert._worker.sqlite_acks import write_acks
from queuert._worker.sqlite_calls import run, typed
from queuert._worker.sqlite_slots import SqliteAtomicSession, SqliteSyncAtomicSession
from queuert._worker.store import ClaimRow, Reaped, Written


class SqliteStore:
    """Sessions of one worker run on one SQLite file."""

    #: atomic slots take atomic_lean's short path (SqliteAtomicSession.claim_now)
    lean_atomic = True

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
        self.sync_sessions: dict[int, SqliteSyncAtomicSession] = {}
        # a prepared claim per set of types (a flush's, each kind of slot's)
        self._claims: dict[tuple[str, ...], WorkerClaim] = {}

    def connect(self) -> WorkerConnection:
        try:
            return WorkerConnection(self.target)
        except BaseException as exc:
            raise typed(exc) from exc

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
        self.sync_sessions[session.backend_id] = session
        return session

    async def interrupt(self, backend_ids: Sequence[int]) -> None:
        """Past the grace period: a sync handler's thread cannot be stopped,
        but its transaction (claim included) must not commit. Its running
        statement is interrupted and the session refuses to acknowledge;
        the transaction is rolled back when the session closes (or with the
        process), leaving the job pending with its attempt unspent."""
        for backend_id in backend_ids:
            session = self.sync_sessions.get(backend_id)
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
        return self.claim_for(type_names)(conn, n, texts)

    def claim_for(self, type_names: tuple[str, ...]) -> WorkerClaim:
        """The prepared claim of these types (a flush's, each kind of slot's)."""
        claim = self._claims.get(type_names)
        if claim is None:
            claim = self._claims[type_names] = WorkerClaim(self.worker_id, type_names, self.lease, schema=self.schema)
        return claim


class SilentAnnouncer:
    """The database's announcements on SQLite: none (see open_announcer)."""

    closed = False

    async def close(self) -> None:
        return None

    async def announce(self, ready: Sequence[str], chains: Sequence[str]) -> None:
        return None


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
        return await run(self.wc, self.store.flush_tx, acks, claim_n, False)

    async def acknowledge(self, ack: Ack) -> Written:
        return await run(self.wc, self.store.flush_tx, (ack,), 0, True)

    async def claim(self, n: int) -> list[ClaimRow]:
        return (await run(self.wc, self.store.flush_tx, (), n, False)).claimed

    async def release_orphans(self, known: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, str]]:
        store = self.store
        known_ids = set(known)
        running = await run(self.wc, lambda c: qs.running_jobs(c, store.worker_id, schema=store.schema))
        orphans = [r for r in running if r["id"] not in known_ids]
        if not orphans:
            return []
        rows = await run(
            self.wc,
            lambda c: qs.release_jobs(
                c, store.worker_id, [r["id"] for r in orphans], [r["attempt"] for r in orphans], schema=store.schema
            ),
        )
        return [(r["id"], o["type_name"]) for r, o in zip(rows, orphans) if r["outcome"] == "released"]

    async def renew(self, job_ids: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, str]]:
        store = self.store
        rows = await run(
            self.wc, lambda c: qs.renew_leases(c, store.worker_id, list(job_ids), store.lease, schema=store.schema)
        )
        return [(r["job_id"], r["outcome"]) for r in rows if r["outcome"] != "renewed"]

    async def reap(self, max_jobs: int) -> list[Reaped]:
        schema = self.store.schema
        rows = await run(self.wc, lambda c: qs.reap(c, max_jobs, schema=schema))
        return [Reaped(r["job_id"], r["previous_worker"], r["status"], r["type_name"]) for r in rows]

    async def queue_stats(self) -> list[tuple[str, str, int, float | None]]:
        schema = self.store.schema
        rows = await run(self.wc, lambda c: qs.stats(c, schema=schema))
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
        due = await run(self.wc, lambda c: qs.next_due_at(c, store.type_names, schema=store.schema))
        if due is None:
            return None
        return (due - datetime.now(timezone.utc)).total_seconds()
