"""Atomic mode's acknowledgement planner: "acknowledge, else fail in the
same transaction", written once for the async slots and the sync slot
threads.

The planners are generators that yield steps (``Restart``, ``Write``,
``RollbackToSavepoint``, ``Rollback``) and receive each step's result (or
have its StoreError thrown in); ``drive`` and ``drive_sync`` run them on an
async or a sync session.

A ``Conflict`` (deadlock, serialization failure) on the acknowledgement
rolls back the whole transaction, claim included: the job is pending again
at its old attempt with the handler's writes undone, and runs again
(``RolledBack``). Only a job that conflicts ``CONFLICT_RETRIES`` times in a
row, or whose handler ended the transaction itself (its claim committed),
records the conflict as the attempt's failure.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Generator
from typing import Any, Union

from queuert._worker.execution import log_extra
from queuert._worker.outcomes import Ack, Failed, Outcome, error_text
from queuert._worker.store import (
    AtomicSession,
    Conflict,
    ConnectionLost,
    Rejected,
    StoreError,
    SyncAtomicSession,
    TransactionState,
    Written,
)
from queuert.job import JobContext

logger = logging.getLogger("queuert.worker")

_ABORTED = "the handler left its transaction in an aborted state"

#: conflicts in a row on one job's acknowledgement that roll its whole
#: transaction back (the attempt unspent) before the next is its failure
CONFLICT_RETRIES = 3


@dataclasses.dataclass(frozen=True, slots=True)
class Restart:
    """Begin a new transaction with the savepoint."""


@dataclasses.dataclass(frozen=True, slots=True)
class Write:
    """Write ``ack`` (after rolling back to the savepoint if ``rollback``) and commit."""

    ack: Ack
    rollback: bool


@dataclasses.dataclass(frozen=True, slots=True)
class RollbackToSavepoint:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Rollback:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class RolledBack:
    """A plan's result: the acknowledgement met a conflict and the whole
    transaction was rolled back, the claim with it. The job is pending again
    at its old attempt (nothing of the attempt happened); it runs again."""

    job: JobContext[Any]
    error: Conflict


Step = Union[Restart, Write, RollbackToSavepoint, Rollback]
Plan = Generator[Step, Any, Any]


def in_transaction(job: JobContext[Any], outcome: Outcome, state: TransactionState) -> Write:
    """How to write ``outcome`` in the attempt's open transaction: a failure
    rolls back to the savepoint first (undoing the handler's writes); an
    aborted transaction can only record a failure."""
    if not isinstance(outcome, Failed) and state == "aborted":
        outcome = Failed(_ABORTED)
    return Write(Ack(job, outcome), isinstance(outcome, Failed))


def acknowledge(
    job: JobContext[Any], outcome: Outcome, state: TransactionState, *, retry_conflict: bool = True
) -> Plan:
    """Write the outcome; if the engine refuses it (e.g. a continuation
    naming a missing blocker), undo the handler and record that failure in
    the same transaction. Returns the Written; on a conflict (with
    ``retry_conflict``, and the claim still in this transaction) rolls the
    whole transaction back and returns RolledBack."""
    if state == "idle":
        logger.warning(
            "the handler of job %s ended the transaction itself (atomic mode owns it); "
            "acknowledging in a new transaction",
            job.id,
            extra=log_extra(job),
        )
        yield Restart()
        # the claim committed with the handler's transaction: a rollback
        # now would not give the job back
        retry_conflict = False
    write = in_transaction(job, outcome, state)
    try:
        return (yield write)
    except ConnectionLost:
        raise
    except Conflict as exc:
        if retry_conflict:
            return (yield from _roll_back(job, exc))
        return (yield from _record_failure(job, exc, rollback=True))
    except StoreError as exc:
        if write.rollback:
            raise
        return (yield from _record_failure(job, exc, rollback=True))


def after_failed_carry(carry: Ack, exc: StoreError, *, retry_conflict: bool = True) -> Plan:
    """The previous job's acknowledgement and the next claim, sent together,
    failed. If the savepoint still exists, the acknowledgement failed: on a
    conflict roll the whole transaction back (returns RolledBack, with
    ``retry_conflict``), else undo the handler and record the failure
    (returns the Written). Otherwise the acknowledgement committed and the
    claim failed: roll that back (returns None)."""
    try:
        yield RollbackToSavepoint()
    except ConnectionLost:
        raise
    except StoreError:
        yield Rollback()
        logger.warning("claim failed: %s", exc, extra={"worker_id": carry.job.worker_id})
        return None
    if retry_conflict and isinstance(exc, Conflict):
        return (yield from _roll_back(carry.job, exc))
    return (yield from _record_failure(carry.job, exc, rollback=False))


def _roll_back(job: JobContext[Any], exc: Conflict) -> Plan:
    logger.info(
        "acknowledging job %s met a conflict (%s); rolled back, it runs again", job.id, exc, extra=log_extra(job)
    )
    yield Rollback()
    return RolledBack(job, exc)


def _record_failure(job: JobContext[Any], exc: StoreError, *, rollback: bool) -> Plan:
    err = exc.error if isinstance(exc, Rejected) else exc
    logger.warning("acknowledging job %s failed: %s", job.id, err, extra=log_extra(job))
    return (yield Write(Ack(job, Failed(error_text(err))), rollback))


async def drive(plan: Plan, session: AtomicSession) -> Any:
    """Run a plan on an async session."""
    result: Any = None
    error: StoreError | None = None
    while True:
        try:
            step = plan.send(result) if error is None else plan.throw(error)
        except StopIteration as stop:
            return stop.value
        result, error = None, None
        try:
            if isinstance(step, Write):
                result = await session.acknowledge(step.ack, step.rollback)
            elif isinstance(step, Restart):
                await session.restart_transaction()
            elif isinstance(step, RollbackToSavepoint):
                await session.rollback_to_savepoint()
            else:
                await session.rollback()
        except StoreError as exc:
            error = exc


def drive_sync(plan: Plan, session: SyncAtomicSession) -> Written | RolledBack:
    """Run an ``acknowledge`` plan on a sync session (a slot thread)."""
    result: Any = None
    error: StoreError | None = None
    while True:
        try:
            step = plan.send(result) if error is None else plan.throw(error)
        except StopIteration as stop:
            done: Written | RolledBack = stop.value
            return done
        result, error = None, None
        try:
            if isinstance(step, Write):
                result = session.acknowledge(step.ack, step.rollback)
            elif isinstance(step, Restart):
                session.restart_transaction()
            elif isinstance(step, Rollback):
                session.rollback()
            else:  # pragma: no cover - acknowledge plans yield only these
                raise AssertionError(f"unexpected step {step!r}")
        except StoreError as exc:
            error = exc
