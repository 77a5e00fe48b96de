"""Atomic mode's slot sessions on SQLite (the store is ``sqlite_store``).

An attempt is one transaction on the slot's connection: ``BEGIN
IMMEDIATE``, the claim, the handler's statements on ``job.conn``, the
acknowledgement, ``COMMIT``. It holds the file's write lock from its first
statement to its last, so nobody else reads or writes the job meanwhile;
the claim is therefore written only when it can matter:

* the slot *picks* the job the claim would take (a read: ``pick_for_worker``,
  with the attempt and lease end the claim would give it);
* the claim is written (``claim_picked``) when the handler first uses
  ``job.conn`` (before its savepoint: the handler sees its job running, as
  in PostgreSQL) or when the outcome is not a completion (a failure, a
  continuation: the engine's usual calls then find the job running);
* a handler that completes without touching ``job.conn`` (most) has its job
  taken from pending to completed in one UPDATE (``complete_picked``):
  the end state of claim + completion, one row write and two index changes
  fewer. Both statements are fenced on the job's seq, status pending and
  attempt, so a job that is not as picked is reported lost, never written.

A crash or a rollback leaves the job pending at its old attempt, exactly as
when the claim was written in the same transaction.

The handler's savepoint (what a failure rolls back to) and the full busy
timeout are set at the handler's first use of ``job.conn`` too: a handler
that never touches it has written nothing to undo.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

import queuert._sqlite as qs
from queuert._sqlite._connection import retry_locked
from queuert._sqlite.claim import WorkerClaim
from queuert._sqlite.worker_connection import WorkerConnection
from queuert._worker.outcomes import Ack, Completed
from queuert._worker.sqlite_acks import write_acks
from queuert._worker.sqlite_calls import raise_typed, run, run_here
from queuert._worker.store import ClaimRow, Conflict, ConnectionLost, NotNow, StoreError, TransactionState, Written
from queuert._worker.telemetry_reports import completion_traceparents
from queuert.job import JobContext
from queuert.telemetry.attempts import NO_ATTEMPT

_SAVEPOINT = "SAVEPOINT queuert_handler"
_ROLLBACK_TO = "ROLLBACK TO queuert_handler"


class SlotStore(Protocol):
    """What the slots need of ``sqlite_store.SqliteStore``."""

    worker_id: str
    schema: str
    sync_sessions: dict[int, Any]

    def claim_for(self, type_names: tuple[str, ...]) -> WorkerClaim: ...


#: a picked job whose claim is not written yet: its claim, seq, the
#: attempt the claim counts, the lease's end (epoch microseconds), the
#: connection's total_changes after the pick, and the job's id, chain id,
#: chain index and has_dependents as picked (valid while nothing is written)
Picked = tuple[WorkerClaim, int, int, int, int, tuple[str, str, int, int]]


def begin_attempt_tx(
    store: SlotStore, conn: sqlite3.Connection, type_names: tuple[str, ...]
) -> tuple[ClaimRow, Picked | None, str, str] | None:
    """BEGIN IMMEDIATE, pick one job (or claim it, on a connection whose
    handler changed its row or text factory); the transaction stays open
    for the handler (rolled back when there is none). Returns the job's
    row, what its claim will write (None: written), its id and chain id as
    stored."""
    retry_locked(conn, "BEGIN IMMEDIATE", "claim a job")
    return _pick(store, conn, type_names)


def _pick(
    store: SlotStore, conn: sqlite3.Connection, type_names: tuple[str, ...]
) -> tuple[ClaimRow, Picked | None, str, str] | None:
    """begin_attempt_tx after its BEGIN IMMEDIATE."""
    try:
        claim = store.claim_for(type_names)
        if conn.row_factory is None and conn.text_factory is str:
            got = claim.pick(conn)
            if got is not None:
                row, leased_until, known = got
                return row, (claim, row[14], row[7], leased_until, conn.total_changes, known), known[0], known[1]
        else:
            texts: list[tuple[str, str]] = []
            rows = claim(conn, 1, texts)
            if rows:
                return rows[0], None, *texts[0]
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("ROLLBACK")
    return None


def write_claim(conn: sqlite3.Connection, picked: Picked) -> None:
    """The picked job's claim, in the pick's transaction (a job no longer
    as picked is left alone: the acknowledgement then reports it lost)."""
    claim, seq, attempt, leased_until, _, _ = picked
    claim.claim_picked(conn, seq, attempt, leased_until)


def ack_tx(
    store: SlotStore,
    conn: sqlite3.Connection,
    ack: Ack,
    rollback: bool,
    texts: tuple[Any, str, str] | None,
    picked: Picked | None,
) -> Written:
    """In the attempt's open transaction: undo the handler (``rollback``:
    to its savepoint, when it took one), write the acknowledgement (a
    picked job's completion in one statement; else its claim first), COMMIT.
    A refusal leaves the transaction open, the handler's work in it, for
    the failure the worker writes next. ``texts``: the claimed job's UUID,
    id and chain id as stored."""
    if rollback:
        conn.execute(_ROLLBACK_TO)
    written = Written()
    if picked is not None and type(ack.outcome) is Completed:
        _complete_picked(store, conn, ack, picked, texts, written)
    else:
        if picked is not None:
            write_claim(conn, picked)
        write_acks(conn, store.worker_id, (ack,), written, schema=store.schema, single=False, texts=texts)
    conn.execute("COMMIT")
    return written


def _complete_picked(
    store: SlotStore,
    conn: sqlite3.Connection,
    ack: Ack,
    picked: Picked,
    texts: tuple[Any, str, str] | None,
    written: Written,
) -> None:
    """write_acks' completion of one job, for a picked job (sqlite_acks)."""
    job = ack.job
    traceparents = completion_traceparents((ack,))
    by_chain: dict[str, list[dict[str, Any]]] = {}
    outcome, unblocked = qs.complete_picked(
        conn,
        store.worker_id,
        picked[1],
        picked[2],
        ack.outcome.output_json,  # type: ignore[union-attr]
        known=picked[5] if conn.total_changes == picked[4] else None,
        trace_context=traceparents[0] if traceparents else None,
        dependents=by_chain,
        schema=store.schema,
    )
    _sort(ack, outcome, unblocked, texts, by_chain, written)


def _sort(
    ack: Ack,
    outcome: str,
    unblocked: list[str],
    texts: tuple[Any, str, str] | None,
    by_chain: dict[str, list[dict[str, Any]]],
    written: Written,
) -> None:
    """A completion's result into ``written``, as write_acks does."""
    if outcome != "completed":
        written.lost.append((ack, outcome))
        return
    job = ack.job
    chain_text = texts[2] if texts is not None and texts[0] is job.id else str(job.chain_id)
    if by_chain:
        written.dependents[job.id] = by_chain[chain_text]
    written.done.append(ack)
    written.chains.append(chain_text)
    written.count_unblocked(unblocked)


def restart_tx(conn: sqlite3.Connection) -> None:
    retry_locked(conn, "BEGIN IMMEDIATE", "begin a transaction")
    conn.execute(_SAVEPOINT)


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


class _SlotConnection:
    """What both atomic slot sessions are: a worker connection whose
    ``sqlite3.Connection`` is the handler's ``job.conn``.

    The claim, the handler's savepoint and the full busy timeout are
    written and set at the handler's first use of ``job.conn`` (module
    docstring): a handler that never touches it runs the four statements
    of the floor (BEGIN IMMEDIATE, the pick, the completion, COMMIT)."""

    def __init__(self, store: SlotStore, wc: WorkerConnection) -> None:
        self.store = store
        self.wc = wc
        self._closed = False
        self.attempts = 0  # which attempt a job.conn hook belongs to
        self.savepoint = False  # taken in the open attempt
        # the open attempt's job: its UUID, id and chain id as stored
        self.texts: tuple[Any, str, str] | None = None
        #: the open attempt's job, picked and not claimed yet
        self.picked: Picked | None = None

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
                conn = self.wc.conn
                if conn.in_transaction:
                    picked, self.picked = self.picked, None
                    if picked is not None:
                        write_claim(conn, picked)
                    conn.execute(_SAVEPOINT)
                    self.savepoint = True

        job._conn_hook = first_use

    def transaction_state(self) -> TransactionState:
        return "open" if self.wc.conn.in_transaction else "idle"

    def _ack_tx(self, conn: sqlite3.Connection, ack: Ack, rollback: bool) -> Written:
        picked, self.picked = self.picked, None
        return ack_tx(self.store, conn, ack, rollback and self.savepoint, self.texts, picked)

    def _begin_tx(self, conn: sqlite3.Connection, type_names: tuple[str, ...]) -> ClaimRow | None:
        self.picked = None
        return self._opened(begin_attempt_tx(self.store, conn, type_names))

    def _opened(self, got: tuple[ClaimRow, Picked | None, str, str] | None) -> ClaimRow | None:
        if got is None:
            self.texts = None
            return None
        row, self.picked, id_text, chain_text = got
        self.texts = (row[0], id_text, chain_text)
        return row

    def _restart_tx(self, conn: sqlite3.Connection) -> None:
        restart_tx(conn)
        self.savepoint = True

    def _rollback_tx(self, conn: sqlite3.Connection, to_savepoint: bool) -> None:
        if not to_savepoint:
            self.picked = None
        rollback_tx(conn, to_savepoint, self.savepoint)


class SqliteAtomicSession(_SlotConnection):
    """An atomic slot's connection, async handlers: ``job.conn`` is its
    ``sqlite3.Connection``, in the attempt's transaction.

    ``claim_now`` and ``complete_now`` are an attempt's two calls run right
    away on the loop (``atomic_lean``): no coroutine, no carry, when the
    connection can take them at once; else the slot uses ``open_attempt``
    and ``acknowledge`` (the Protocol's calls)."""

    def turn_due(self) -> bool:
        """Whether the loop's other tasks run first before the next call
        (the worker connection's once a millisecond)."""
        return self.wc.turn_due()

    async def take_turn(self) -> None:
        await self.wc.take_turn()

    def claim_now(self, type_names: tuple[str, ...]) -> ClaimRow | None:
        """``open_attempt(type_names, None)``'s claim, now; raises NotNow
        (nothing done) when it must wait or yield to the loop first."""
        self.picked = None
        if not self.wc.begin_now():
            raise NotNow()
        try:
            return self._opened(_pick(self.store, self.wc.conn, type_names))
        except BaseException as exc:
            raise_typed(exc)

    def complete_now(self, ack: Ack) -> Written | str | None:
        """A completion and COMMIT of the open attempt whose job is picked
        and not claimed (the handler never used ``job.conn``): one
        statement. Returns what committed: the chain completed (its id as
        stored) when that is all there is to report (nothing unblocked, no
        telemetry), else a Written; None (nothing done): use
        ``acknowledge``."""
        picked = self.picked
        conn = self.wc.conn
        texts = self.texts
        if picked is None or texts is None or not conn.in_transaction:
            return None
        self.picked = None
        try:
            if ack.job._telemetry is NO_ATTEMPT:
                outcome, unblocked = qs.complete_picked(
                    conn,
                    self.store.worker_id,
                    picked[1],
                    picked[2],
                    ack.outcome.output_json,  # type: ignore[union-attr]
                    known=picked[5] if conn.total_changes == picked[4] else None,
                    schema=self.store.schema,
                )
                if outcome == "completed" and not unblocked:
                    conn.execute("COMMIT")
                    return texts[2]
                written = Written()
                _sort(ack, outcome, unblocked, texts, {}, written)
            else:
                written = Written()
                _complete_picked(self.store, conn, ack, picked, texts, written)
            conn.execute("COMMIT")
        except BaseException as exc:
            raise_typed(exc)
        return written

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
            written = await run(self.wc, self._ack_tx, carry[0], carry[1])
        try:
            row = await run(self.wc, self._begin_tx, tuple(type_names))
        except Conflict:
            # another writer held the file longer than the busy timeout:
            # as if nothing were due; the due-time poll looks again soon
            row = None
        return written, row

    async def acknowledge(self, ack: Ack, rollback: bool) -> Written:
        return await run(self.wc, self._ack_tx, ack, rollback)

    async def restart_transaction(self) -> None:
        await run(self.wc, self._restart_tx)

    async def rollback_to_savepoint(self) -> None:
        await run(self.wc, self._rollback_tx, True)

    async def rollback(self) -> None:
        await run(self.wc, self._rollback_tx, False)


class SqliteSyncAtomicSession(_SlotConnection):
    """An atomic slot's connection for sync handlers (the slot's thread)."""

    def __init__(self, store: SlotStore, wc: WorkerConnection) -> None:
        super().__init__(store, wc)
        self.doomed = False

    @property
    def backend_id(self) -> int:
        return id(self)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.store.sync_sessions.pop(self.backend_id, None)
            self.wc.close()

    def open_attempt(self, type_names: Sequence[str]) -> ClaimRow | None:
        try:
            return run_here(self.wc, self._begin_tx, tuple(type_names))
        except Conflict:
            return None  # as SqliteAtomicSession.open_attempt

    def acknowledge(self, ack: Ack, rollback: bool) -> Written:
        if self.doomed:
            # interrupted at shutdown: nothing of this attempt commits
            self.picked = None
            rollback_tx(self.wc.conn, False)
            raise ConnectionLost("released at shutdown")
        return run_here(self.wc, self._ack_tx, ack, rollback)

    def restart_transaction(self) -> None:
        run_here(self.wc, self._restart_tx)

    def rollback(self) -> None:
        run_here(self.wc, self._rollback_tx, False)
