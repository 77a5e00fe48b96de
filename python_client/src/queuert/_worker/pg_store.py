"""The worker's store on PostgreSQL (see ``store``): every statement the
worker sends goes through here.

Round trips are the ones the worker always had: a flush is one
simple-protocol message (acknowledgements, then the claim) and so one
implicit transaction; an atomic slot sends the previous job's
acknowledgement and COMMIT with the next BEGIN, claim and SAVEPOINT.
Driver errors become the store's typed errors in ``_typed``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Generic, Literal, TypeVar

import psycopg

from queuert._worker.pg_text import bind_literals, close_quietly, execute_many, execute_many_sync
from queuert._worker import pg_sql
from queuert._worker.outcomes import Ack
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
from queuert.errors import sqlstate_of, translate
from queuert.job import JobContext

_LOST_SQLSTATES = frozenset({"QU001", "QU003", "QU004"})
_CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})
#: invalid_sql_statement_name: the session lost an atomic slot's prepared
#: statements (a handler's DEALLOCATE on job.conn): treated as a lost
#: connection, so the slot reconnects (and prepares again); closing the
#: connection rolls its transaction back
_UNPREPARED_SQLSTATE = "26000"

_TX_STATE: dict[int, TransactionState] = {
    psycopg.pq.TransactionStatus.IDLE: "idle",
    psycopg.pq.TransactionStatus.INTRANS: "open",
    psycopg.pq.TransactionStatus.ACTIVE: "open",
    psycopg.pq.TransactionStatus.INERROR: "aborted",
}


def is_connection_error(exc: BaseException) -> bool:
    """The connection is gone (or its state unknown), as opposed to an error
    the server reported on a live connection. psycopg files deadlocks and
    serialization failures (class 40) under OperationalError too: those are
    not connection errors, the transaction is simply rolled back."""
    state = sqlstate_of(exc)
    if state is not None:
        return state.startswith(("08", "57P"))  # connection exception, admin shutdown
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, OSError))


def _typed(exc: Exception) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    if is_connection_error(exc):
        return ConnectionLost(str(exc))
    state = sqlstate_of(exc)
    if state in _CONFLICT_SQLSTATES:
        return Conflict(str(exc))
    if state == _UNPREPARED_SQLSTATE:
        return ConnectionLost(str(exc))
    err = translate(exc)
    if state in _LOST_SQLSTATES:
        return JobLost(str(err))
    return Rejected(err if isinstance(err, Exception) else exc)


async def _execute(
    conn: psycopg.AsyncConnection[Any],
    statements: Sequence[tuple[str, Any]],
    cur: psycopg.AsyncClientCursor[Any] | None = None,
) -> list[list[Any]]:
    """``execute_many`` with driver errors as the store's typed errors."""
    try:
        return await execute_many(conn, statements, cur)
    except Exception as exc:
        raise _typed(exc) from exc


class PgStore:
    """Sessions of one worker run on PostgreSQL."""

    def __init__(
        self,
        conninfo: str,
        *,
        schema: str,
        worker_id: str,
        type_names: Sequence[str],
        lease: timedelta | None,
        prepare_threshold: int | None,
        notify_setting: str | None,
        reap_notify_setting: str | None = None,
        unblocked_wanted: bool = False,
    ) -> None:
        self.conninfo = conninfo
        self.worker_id = worker_id
        self.type_names = list(type_names)
        self.lease = lease
        self.prepare_threshold = prepare_threshold
        # None: the engine's notifications as usual; else the worker's
        # acknowledging (reaping) transactions SET LOCAL queuert.notify to
        # this: per transaction, never per session, which behind PgBouncer
        # in transaction mode would stay on one server connection for
        # whoever gets it next while our next transaction runs elsewhere
        self.notify_setting = notify_setting
        # whether Written.unblocked must be filled: then even a single
        # completion goes through complete_jobs, which reports them
        self.unblocked_wanted = unblocked_wanted
        self.schema = schema
        self.texts = pg_sql.Texts.for_schema(schema, notify_setting, reap_notify_setting)
        # an atomic slot's claim and complete, prepared once per connection
        # (not behind PgBouncer in transaction mode: prepare_threshold None)
        self.slot_texts, self.slot_prepares = (
            (self.texts, []) if prepare_threshold is None else self.texts.prepared()
        )

    async def connect(self, purpose: str, *, prepares: bool = True) -> psycopg.AsyncConnection[Any]:
        """A connection of ours. ``prepares=False`` for one that only ever
        sends one-off texts: psycopg tallies every single-statement text it
        runs, ``prepare=False`` or not, keeping the last 100 per connection
        (``prepared_max``), and with prepared statements off it keeps none."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.conninfo,
                autocommit=True,
                prepare_threshold=self.prepare_threshold if prepares else None,
                application_name=f"queuert-{purpose}",
            )
            if conn.info.parameter_status("standard_conforming_strings") != "on":
                await conn.execute("SET standard_conforming_strings = on")  # see pg_text.quote
            return conn
        except Exception as exc:
            raise ConnectionLost(str(exc)) from exc

    async def open(self, purpose: Literal["main", "maintenance"]) -> PgSession:
        return PgSession(self, await self.connect(purpose))

    async def open_atomic(self) -> PgAtomicSession:
        conn = await self.connect("atomic")
        if self.slot_prepares:
            try:
                await execute_many(conn, [(p, None) for p in self.slot_prepares])
            except Exception as exc:
                await close_quietly(conn)
                raise _typed(exc) from exc
        return PgAtomicSession(self, conn)

    async def open_announcer(self) -> PgAnnouncer:
        # every announcement is a new text (the chain ids are in it): kept
        # by psycopg's tally, 100 of them were 0.8 MiB at 20,000 jobs/s
        # (200 chains each) and grow with the chains per announcement
        return PgAnnouncer(self.schema, await self.connect("notify", prepares=False))

    def open_atomic_sync(self) -> PgSyncAtomicSession:
        try:
            conn = psycopg.connect(
                self.conninfo,
                autocommit=True,
                prepare_threshold=self.prepare_threshold,
                application_name="queuert-atomic",
            )
            if conn.info.parameter_status("standard_conforming_strings") != "on":
                conn.execute("SET standard_conforming_strings = on")  # see pg_text.quote
        except Exception as exc:
            raise ConnectionLost(str(exc)) from exc
        if self.slot_prepares:
            try:
                execute_many_sync(conn, [(p, None) for p in self.slot_prepares])
            except Exception as exc:
                conn.close()
                raise _typed(exc) from exc
        return PgSyncAtomicSession(self, conn)

    async def interrupt(self, backend_ids: Sequence[int]) -> None:
        try:
            async with await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True) as c:
                await c.execute("SELECT pg_terminate_backend(p) FROM unnest(%s::int[]) AS p", (list(backend_ids),))
        except Exception as exc:
            raise _typed(exc) from exc

    def claim_statement(self, n: int, type_names: Sequence[str] | None = None) -> tuple[str, Any]:
        return (self.texts.claim, (self.worker_id, list(type_names or self.type_names), n, self.lease))


class PgSession:
    """A staged worker's connection (a flush lane, or maintenance)."""

    def __init__(self, store: PgStore, conn: psycopg.AsyncConnection[Any]) -> None:
        self.store = store
        self.conn = conn
        self.t = store.texts
        self.worker_id = store.worker_id

    @property
    def closed(self) -> bool:
        return self.conn.closed

    async def close(self) -> None:
        await close_quietly(self.conn)

    async def _rows(self, query: str, params: Any) -> list[Any]:
        try:
            cur = await self.conn.execute(query, params)
            return await cur.fetchall()
        except Exception as exc:
            raise _typed(exc) from exc

    async def _in_setting(self, setting: str | None, statements: Sequence[tuple[str, Any]]) -> list[list[Any]]:
        """``statements`` in one transaction (one round trip) that begins
        with ``setting`` (a SET LOCAL, or None); their rows."""
        if setting is None:
            return await _execute(self.conn, statements)
        return (await _execute(self.conn, [(setting, None), *statements]))[1:]

    async def flush(self, acks: Sequence[Ack], claim_n: int) -> Written:
        plan = pg_sql.plan_acks(self.t, self.worker_id, acks)
        statements = plan.statements
        if claim_n:
            statements.append(self.store.claim_statement(claim_n))
        # a claim alone notifies nothing: the setting only with acknowledgements
        results = await self._in_setting(self.t.notify_setting_local if acks else None, statements)
        written = Written()
        pg_sql.read_acks(plan, results, written)
        if claim_n:
            written.claimed = results[-1]
        return written

    async def acknowledge(self, ack: Ack) -> Written:
        plan = pg_sql.plan_acks(self.t, self.worker_id, (ack,), alone=not self.store.unblocked_wanted)
        written = Written()
        pg_sql.read_acks(plan, await _execute(self.conn, plan.statements), written)
        return written

    async def claim(self, n: int) -> list[ClaimRow]:
        query, params = self.store.claim_statement(n)
        return await self._rows(query, params)

    async def release_orphans(self, known: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, str]]:
        (rows,) = await self._in_setting(
            self.t.notify_setting_local, [(self.t.release_unknown, (self.worker_id, list(known)))]
        )
        return [(job_id, type_name) for job_id, type_name in rows]

    async def renew(self, job_ids: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, str]]:
        rows = await self._rows(self.t.renew, (self.worker_id, list(job_ids), self.store.lease))
        return [(job_id, outcome) for job_id, outcome in rows if outcome != "renewed"]

    async def reap(self, max_jobs: int) -> list[Reaped]:
        (rows,) = await self._in_setting(self.t.reap_setting_local, [(self.t.reap, (max_jobs,))])
        return [Reaped(*row) for row in rows]

    async def queue_stats(self) -> list[tuple[str, str, int, float | None]]:
        return [
            (str(t), str(status), int(count), None if age is None else float(age))
            for t, status, count, age in await self._rows(self.t.queue_stats, None)
        ]

    async def seconds_until_due(self) -> float | None:
        rows = await self._rows(self.t.next_due, (self.store.type_names,))
        if not rows or rows[0][0] is None:
            return None
        due, now = rows[0]
        return float((due - now).total_seconds())


class PgAnnouncer:
    """Announces on the schema's channels with one autocommit statement."""

    def __init__(self, schema: str, conn: psycopg.AsyncConnection[Any]) -> None:
        self.schema = schema
        self.conn = conn

    @property
    def closed(self) -> bool:
        return self.conn.closed

    async def close(self) -> None:
        await close_quietly(self.conn)

    async def announce(self, ready: Sequence[str], chains: Sequence[str]) -> None:
        await _execute(self.conn, [(pg_sql.notify_statement(self.schema, ready, chains), None)])


_SlotConn = TypeVar("_SlotConn", bound="psycopg.BaseConnection[Any]")


class _SlotSession(Generic[_SlotConn]):
    """What the async and the sync atomic session share: the slot's own
    connection and its state."""

    def __init__(self, store: PgStore, conn: _SlotConn) -> None:
        self.store = store
        self.conn = conn
        self.t = store.slot_texts
        # the slot's claim, its literals rendered once: the same statement
        # every time for the same types
        self._claims: dict[tuple[str, ...], tuple[str, None]] = {}

    def _claim(self, type_names: Sequence[str]) -> tuple[str, None]:
        key = tuple(type_names)
        claim = self._claims.get(key)
        if claim is None:
            params = (self.store.worker_id, list(type_names), 1, self.store.lease)
            claim = self._claims[key] = (bind_literals(self.t.claim, params), None)
        return claim

    def _ack(self, ack: Ack, rollback: bool) -> pg_sql.AtomicAck:
        store = self.store
        return pg_sql.atomic_ack_statements(
            self.t, store.worker_id, ack, rollback, unblocked_wanted=store.unblocked_wanted
        )

    @property
    def closed(self) -> bool:
        return self.conn.closed

    def lend(self, job: JobContext[Any]) -> None:
        job.conn = self.conn

    def transaction_state(self) -> TransactionState:
        return _TX_STATE.get(self.conn.info.transaction_status, "aborted")


class PgAtomicSession(_SlotSession[psycopg.AsyncConnection[Any]]):
    """An atomic slot's connection, async handlers; ``cur``: the one cursor
    its statements run on."""

    def __init__(self, store: PgStore, conn: psycopg.AsyncConnection[Any]) -> None:
        super().__init__(store, conn)
        self.cur = psycopg.AsyncClientCursor(conn)

    async def close(self) -> None:
        await close_quietly(self.conn)

    async def open_attempt(
        self, type_names: Sequence[str], carry: tuple[Ack, bool] | None
    ) -> tuple[Written | str | None, ClaimRow | None]:
        """The carried acknowledgement (with its COMMIT), then BEGIN, the
        claim and the savepoint, in one round trip. Returns what the
        acknowledgement wrote (a plain completion: its chain id alone, see
        ``pg_sql.read_atomic_completion``) and the claimed row."""
        prefix: list[tuple[str, Any]] = []
        a = None
        if carry is not None:
            a = self._ack(carry[0], carry[1])
            prefix = a.statements
        begin = self.t.begin_attempt
        results = await _execute(
            self.conn, (*prefix, *begin, self._claim(type_names), (pg_sql.SAVEPOINT, None)), self.cur
        )
        written: Written | str | None = None
        if a is not None:
            written = pg_sql.read_atomic_completion(a, results)
            if written is None:
                written = pg_sql.read_atomic_acks(a, results)
        rows = results[len(prefix) + len(begin)]
        if not rows:
            await self.rollback()
            return written, None
        return written, rows[0]

    async def acknowledge(self, ack: Ack, rollback: bool) -> Written:
        a = self._ack(ack, rollback)
        return pg_sql.read_atomic_acks(a, await _execute(self.conn, a.statements, self.cur))

    async def restart_transaction(self) -> None:
        await _execute(self.conn, (("BEGIN", None), (pg_sql.SAVEPOINT, None)), self.cur)

    async def rollback_to_savepoint(self) -> None:
        await _execute(self.conn, ((pg_sql.ROLLBACK_TO, None),), self.cur)

    async def rollback(self) -> None:
        await _execute(self.conn, (("ROLLBACK", None),), self.cur)


class PgSyncAtomicSession(_SlotSession[psycopg.Connection[Any]]):
    """An atomic slot's connection, sync handlers (used from the slot's thread)."""

    @property
    def backend_id(self) -> int:
        return self.conn.info.backend_pid

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            pass

    def _run(self, statements: Sequence[tuple[str, Any]]) -> list[list[Any]]:
        try:
            return execute_many_sync(self.conn, statements)
        except Exception as exc:
            raise _typed(exc) from exc

    def open_attempt(self, type_names: Sequence[str]) -> ClaimRow | None:
        begin = self.t.begin_attempt
        rows = self._run((*begin, self._claim(type_names), (pg_sql.SAVEPOINT, None)))[len(begin)]
        if not rows:
            self._run((("ROLLBACK", None),))
            return None
        row: ClaimRow = rows[0]
        return row

    def acknowledge(self, ack: Ack, rollback: bool) -> Written:
        a = self._ack(ack, rollback)
        return pg_sql.read_atomic_acks(a, self._run(a.statements))

    def restart_transaction(self) -> None:
        self._run((("BEGIN", None), (pg_sql.SAVEPOINT, None)))

    def rollback(self) -> None:
        self._run((("ROLLBACK", None),))
