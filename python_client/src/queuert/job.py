"""The handler-facing view of one claimed job: :class:`JobContext`.

A handler registered with :meth:`queuert.Worker.handler` receives a
``JobContext[InputType]``::

    @worker.handler(welcome_email)
    async def send(job: JobContext[WelcomeInput]) -> EmailSent:
        job.input.user_id        # parsed with the job type's input type
        job.attempt              # 1 on the first run
        job.last_attempt_error   # text of the previous failure, or None
        job.blockers             # outputs of the chains this job waited on
        job.conn                 # atomic mode: the transaction's connection
        return EmailSent(message_id="...")

Returning :meth:`JobContext.continue_with` hands the chain to a next job.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload
from uuid import UUID

from queuert.telemetry.attempts import NO_ATTEMPT, Attempt, _NoAttempt
from queuert.types import Continuation, JobType, continue_with

if TYPE_CHECKING:
    from queuert.hooks import TransactionHooks

__all__ = ["Blocker", "JobContext", "LeaseLost"]

InT = TypeVar("InT")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


@dataclass(frozen=True, slots=True)
class Blocker:
    """A chain this job waited on: its id, its type (the root's) and output."""

    chain_id: UUID
    type_name: str
    output: Any

    def output_as(self, job_type: JobType[Any, O]) -> O:
        """The output parsed as ``job_type``'s output type."""
        return job_type.parse_output(self.output, chain_id=self.chain_id)


class LeaseLost:
    """Set when the worker learns that this job is no longer its own.

    That happens when lease renewal reports the job ``taken`` by another
    worker, ``finished`` (cancelled, completed or failed from outside) or
    deleted, or when a graceful shutdown releases the job. Async handlers are
    also cancelled (``asyncio.CancelledError``); sync handlers cannot be
    interrupted and should poll :meth:`is_set` (or :meth:`wait`) in long loops.
    Whatever a handler returns after that is discarded.
    """

    __slots__ = ("_event", "reason")

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block (a sync handler's thread) until set or ``timeout``."""
        return self._event.wait(timeout)

    def _set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self._event.set()

    def __bool__(self) -> bool:
        return self._event.is_set()


class JobContext(Generic[InT]):
    """One attempt of one job, as seen by its handler."""

    __slots__ = (
        "id",
        "chain_id",
        "chain_type_name",
        "chain_index",
        "type_name",
        "input",
        "raw_input",
        "attempt",
        "priority",
        "scheduled_at",
        "created_at",
        "leased_until",
        "last_attempt_error",
        "trace_context",
        "_blockers_json",
        "_conn",
        "_conn_hook",
        "worker_id",
        "job_type",
        "_lease_lost",
        "_blockers",
        # worker bookkeeping (not part of the handler API)
        "_handler",
        "_task",
        "_state",
        "_renewed",
        "_telemetry",
        "_hooks",
    )

    def __init__(self) -> None:  # filled in by the worker
        self._lease_lost: LeaseLost | None = None
        self._blockers: tuple[Blocker, ...] | None = None
        self._blockers_json: Any = None
        self._conn: Any = None
        # run once, at the handler's first use of ``conn`` (the SQLite
        # atomic slot takes its savepoint and full busy timeout only then)
        self._conn_hook: Callable[[], None] | None = None
        self._task: Any = None
        self._state = 0
        self._telemetry: Attempt | _NoAttempt = NO_ATTEMPT
        # atomic mode: what the handler's calls on job.conn announced, until
        # the attempt's transaction commits or rolls back (hooks.collecting)
        self._hooks: TransactionHooks | None = None

    #: job id
    id: UUID
    #: the chain's id (its root job's id)
    chain_id: UUID
    #: the type of the chain's root job
    chain_type_name: str
    #: position of this job in its chain (0 = root)
    chain_index: int
    #: this job's type name
    type_name: str
    #: the input, parsed with the job type (raw JSON for untyped handlers)
    input: InT
    #: the stored JSON input, unparsed
    raw_input: Any
    #: 1 on the first attempt; counts claims
    attempt: int
    priority: int
    scheduled_at: datetime
    created_at: datetime
    #: the lease's end when claimed (renewed in the background)
    leased_until: datetime | None
    #: error text of the previous attempt, or None
    last_attempt_error: str | None
    #: W3C trace context stored with the job
    trace_context: str | None
    #: this worker's id (what ``leased_by`` / ``completed_by`` show)
    worker_id: str
    #: the job type the handler was registered for (None: by name only)
    job_type: JobType[InT, Any] | None

    @property
    def conn(self) -> Any:
        """Atomic mode: the connection of the job's transaction (its claim,
        your statements and its completion commit together); None in staged
        mode."""
        hook = self._conn_hook
        if hook is not None:
            self._conn_hook = None
            hook()
        return self._conn

    @conn.setter
    def conn(self, value: Any) -> None:
        self._conn = value

    @property
    def raw_blockers(self) -> list[dict[str, Any]]:
        """The blockers as the engine returned them (parsed JSON)."""
        raw = self._blockers_json
        if isinstance(raw, (str, bytes)):
            raw = self._blockers_json = json.loads(raw)
        return list(raw or ())

    @property
    def blockers(self) -> tuple[Blocker, ...]:
        """The blocker chains in blocker order, with their final outputs."""
        if self._blockers is None:
            self._blockers = tuple(
                Blocker(
                    chain_id=UUID(str(b["chain_id"])),
                    type_name=b["type_name"],
                    output=b.get("output"),
                )
                for b in (self.raw_blockers or ())
            )
        return self._blockers

    @property
    def lease_lost(self) -> LeaseLost:
        """Set when this job is no longer this worker's (see :class:`LeaseLost`)."""
        if self._lease_lost is None:
            self._lease_lost = LeaseLost()
        return self._lease_lost

    @overload
    def continue_with(
        self,
        next_type: JobType[I, Any],
        input: I,
        *,
        id: UUID | None = None,
        blockers: Sequence[UUID] | None = None,
        schedule_at: datetime | None = None,
        schedule_after: timedelta | None = None,
        priority: int | None = None,
        trace_context: str | None = None,
    ) -> Continuation: ...

    @overload
    def continue_with(
        self,
        next_type: str,
        input: Any = None,
        *,
        id: UUID | None = None,
        blockers: Sequence[UUID] | None = None,
        schedule_at: datetime | None = None,
        schedule_after: timedelta | None = None,
        priority: int | None = None,
        trace_context: str | None = None,
    ) -> Continuation: ...

    def continue_with(
        self,
        next_type: JobType[Any, Any] | str,
        input: Any = None,
        *,
        id: UUID | None = None,
        blockers: Sequence[UUID] | None = None,
        schedule_at: datetime | None = None,
        schedule_after: timedelta | None = None,
        priority: int | None = None,
        trace_context: str | None = None,
    ) -> Continuation:
        """A :class:`~queuert.types.Continuation` to return from the handler.

        Checked like :func:`queuert.continue_with` (typed input, validated
        now) and against the current type's ``continues_with`` declaration.
        The trace context defaults to this job's.
        """
        cont = continue_with(
            next_type,
            input,
            id=id,
            blockers=blockers,
            schedule_at=schedule_at,
            schedule_after=schedule_after,
            priority=priority,
            trace_context=trace_context if trace_context is not None else self.trace_context,
        )
        if self.job_type is not None:
            self.job_type.check_continuation(cont)
        return cont

    def __repr__(self) -> str:
        return (
            f"<JobContext {self.type_name} id={self.id} chain={self.chain_id} "
            f"attempt={self.attempt}>"
        )

