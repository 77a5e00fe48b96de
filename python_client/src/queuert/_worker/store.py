"""THE SEAM between the worker and the engine.

The worker's loops speak to the database only through these protocols; the
unit is what the worker does, not SQL: one flush (acknowledgements and the
next claim, in one transaction), one acknowledgement on its own, renew,
reap, release, the next due time, and an atomic slot's claim and
acknowledgement inside the handler's transaction. PostgreSQL implements them
in ``pg_store``; another backend plugs in here without touching the loops.
Nothing backend-specific appears in these types.

Failures reach the loops as a few typed errors:

* ``ConnectionLost``: the connection is gone; whether the last transaction
  committed is unknown (reconnect; fencing makes a repeat harmless).
* ``Conflict``: a serialization failure or deadlock rolled the whole
  transaction back (send the same again).
* ``JobLost``: the job is no longer this worker's (finished or taken from
  outside, or a stale attempt): its outcome is discarded.
* ``Rejected``: the engine refused what was sent (an invalid continuation,
  a bad argument); ``error`` is the typed queuert exception.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from queuert._worker.outcomes import Ack
from queuert.job import JobContext


class StoreError(Exception):
    """Base of the errors a store raises to the worker."""


class ConnectionLost(StoreError):
    """The connection broke; the commit state of the last transaction is unknown."""


class Conflict(StoreError):
    """A serialization failure or deadlock rolled the transaction back."""


class JobLost(StoreError):
    """The job is no longer this worker's; its outcome cannot be written."""


class Rejected(StoreError):
    """The engine refused the statement; ``error`` says why (a QueuertError)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


#: One claimed job, in this order: id, type_name, chain_id, chain_type_name,
#: chain_index, input (parsed JSON), priority, attempt, scheduled_at,
#: created_at, leased_until, last_attempt_error, trace_context, blockers
#: (JSON text or None), seq (claim order), the database's clock at the claim.
ClaimRow = tuple[Any, ...]

#: a transaction's state on an atomic slot's session
TransactionState = Literal["idle", "open", "aborted"]


class NotNow(Exception):
    """A session's call that cannot run right now without waiting or
    letting the loop's other tasks run first (``atomic_lean``: the slot
    then takes the Protocol's awaited calls). Nothing was done."""


@dataclasses.dataclass(slots=True)
class Written:
    """What a committed acknowledgement did.

    ``done``: acknowledgements written as asked. ``lost``: refused because the
    job is no longer ours, with the engine's reason ('taken', 'finished',
    'not_found'). ``ready``: job types the acknowledgements made pending
    (continuations, retries, releases), with how many jobs of each (the
    wake budget published). ``unblocked``: job types of
    dependents that completions made pending (the engine announces those
    itself unless the worker publishes through another notifier).
    ``chains``: chains completed. ``claimed``: the rows of the claim sent
    with it. ``retry_at``: failed jobs pending again, and when they are due;
    ``continued_to``: the next job of each continued one and its status;
    ``dependents``: per completed job whose attempt had a span, the jobs
    waiting on its chain (the engine's ``dependents``: job_id, type_name,
    trace_context, pending) (all three for telemetry).
    """

    done: list[Ack] = dataclasses.field(default_factory=list)
    lost: list[tuple[Ack, str]] = dataclasses.field(default_factory=list)
    ready: dict[str, int] = dataclasses.field(default_factory=dict)
    unblocked: dict[str, int] = dataclasses.field(default_factory=dict)
    chains: list[str] = dataclasses.field(default_factory=list)
    claimed: list[ClaimRow] = dataclasses.field(default_factory=list)
    retry_at: dict[uuid.UUID, datetime] = dataclasses.field(default_factory=dict)
    continued_to: dict[uuid.UUID, tuple[uuid.UUID, str]] = dataclasses.field(default_factory=dict)
    dependents: dict[uuid.UUID, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)

    def count_ready(self, type_name: str) -> None:
        """One more job of ``type_name`` made pending."""
        self.ready[type_name] = self.ready.get(type_name, 0) + 1

    def count_unblocked(self, type_names: Iterable[str]) -> None:
        """Dependents of these types made pending by a completion."""
        for type_name in type_names:
            self.unblocked[type_name] = self.unblocked.get(type_name, 0) + 1


@dataclasses.dataclass(frozen=True, slots=True)
class Reaped:
    job_id: uuid.UUID
    previous_worker: str | None
    status: str
    #: its type (a reaped job back to pending is announced as job_ready)
    type_name: str


class Session(Protocol):
    """One connection of a staged worker: its flush lanes and its maintenance."""

    @property
    def closed(self) -> bool: ...

    async def close(self) -> None: ...

    async def flush(self, acks: Sequence[Ack], claim_n: int) -> Written:
        """Write ``acks`` and claim up to ``claim_n`` jobs in one transaction
        (one round trip). Raises Conflict, Rejected (nothing was written) or
        ConnectionLost."""
        ...

    async def acknowledge(self, ack: Ack) -> Written:
        """Write one acknowledgement in its own transaction. Raises JobLost,
        Conflict, Rejected or ConnectionLost."""
        ...

    async def claim(self, n: int) -> list[ClaimRow]: ...

    async def release_orphans(self, known: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, str]]:
        """Give back the jobs running under this worker that are not in
        ``known`` (a claim whose answer was lost): (job id, type name) of
        each one released."""
        ...

    async def renew(self, job_ids: Sequence[uuid.UUID]) -> list[tuple[uuid.UUID, str]]:
        """Renew the leases; (job id, outcome) of each one not renewed."""
        ...

    async def reap(self, max_jobs: int) -> list[Reaped]: ...

    async def seconds_until_due(self) -> float | None:
        """Seconds until the next job of our types is due (may be negative:
        due now but locked); None: nothing scheduled."""
        ...

    async def queue_stats(self) -> list[tuple[str, str, int, float | None]]:
        """The ``stats`` view: (type, status, count, seconds the oldest due
        pending job has waited or None), for the queue-depth gauges."""
        ...


class AtomicSession(Protocol):
    """An atomic slot's connection (async form): claim, the handler's SQL and
    the acknowledgement share one transaction. ``open_attempt`` begins it
    with a savepoint after the claim, so a failure can undo the handler's
    writes and still be recorded in the same transaction.

    ``lend(job)`` makes the connection the handler's ``job.conn``."""

    @property
    def closed(self) -> bool: ...

    def lend(self, job: JobContext[Any]) -> None:
        """Set ``job.conn`` for this attempt (and whatever the session must
        do before the handler's first statement on it)."""
        ...

    def transaction_state(self) -> TransactionState: ...

    async def close(self) -> None: ...

    async def open_attempt(
        self, type_names: Sequence[str], carry: tuple[Ack, bool] | None
    ) -> tuple[Written | str | None, ClaimRow | None]:
        """Begin a transaction and claim one job. ``carry`` (an ack and
        whether to roll back to the savepoint first) is the previous job's
        acknowledgement, committed in the same round trip before the claim;
        what it wrote is returned as a Written, or (a store that can tell) a
        plain completion of a chain without telemetry as the chain id alone
        (``Acknowledger.record_completed``). With no job claimed the
        transaction is rolled back."""
        ...

    async def acknowledge(self, ack: Ack, rollback: bool) -> Written:
        """Write ``ack`` in the open transaction (after rolling back to the
        savepoint if ``rollback``) and commit."""
        ...

    async def restart_transaction(self) -> None:
        """The handler ended the transaction itself: begin a new one with
        the savepoint, for the acknowledgement."""
        ...

    async def rollback_to_savepoint(self) -> None: ...

    async def rollback(self) -> None: ...


class SyncAtomicSession(Protocol):
    """The same as AtomicSession for a sync handler's slot thread."""

    @property
    def closed(self) -> bool: ...

    def lend(self, job: JobContext[Any]) -> None: ...

    @property
    def backend_id(self) -> int:
        """What ``Store.interrupt`` needs to end this session's transaction."""
        ...

    def transaction_state(self) -> TransactionState: ...

    def close(self) -> None: ...

    def open_attempt(self, type_names: Sequence[str]) -> ClaimRow | None: ...

    def acknowledge(self, ack: Ack, rollback: bool) -> Written: ...

    def restart_transaction(self) -> None: ...

    def rollback(self) -> None: ...


class Announcer(Protocol):
    """A connection that announces, after their commit, what acknowledgements
    did: job types made pending (job_ready) and chains completed."""

    @property
    def closed(self) -> bool: ...

    async def close(self) -> None: ...

    async def announce(self, ready: Sequence[str], chains: Sequence[str]) -> None: ...


class Store(Protocol):
    """Opens sessions for one worker run (worker id, types, lease fixed)."""

    async def open(self, purpose: Literal["main", "maintenance"]) -> Session:
        """Raises ConnectionLost when the database cannot be reached."""
        ...

    async def open_atomic(self) -> AtomicSession: ...

    async def open_announcer(self) -> Announcer: ...

    def open_atomic_sync(self) -> SyncAtomicSession: ...

    async def interrupt(self, backend_ids: Sequence[int]) -> None:
        """End the transactions of these sync sessions (rolled back): past
        the grace period, a thread inside a handler cannot be interrupted."""
        ...
