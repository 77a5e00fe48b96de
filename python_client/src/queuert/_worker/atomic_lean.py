"""Atomic mode's short path for a store that can run an attempt's calls at
once on the loop (SQLite: ``sqlite_slots``; ``AtomicSlots`` mixes this in).

An async slot with nothing to carry claims with ``session.claim_now``,
starts its handler's coroutine right away (a handler that never awaits
anything pending finishes in that first step; one that does is resumed in
the slot's task, as if awaited: ``runners.Resume``), and writes a
completion with ``session.complete_now``: claim, handler, completion and
COMMIT back to back, with no coroutine per database call and no carry, job
after job until the loop's turn is due (``session.turn_due``, once a
millisecond), the run stops claiming or no job is due. Everything else
takes ``AtomicSlots.attempt``'s path: a claim the connection cannot run at
once (``NotNow``: the write lock taken, a wait still ending), an outcome
that is not a completion, or a completion ``complete_now`` leaves to
``acknowledge`` (the handler used ``job.conn``), returned as the carry the
slot writes next. Stop, hooks, telemetry, stats and the bookkeeping are
the same calls as there.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from queuert._worker import job_state as st
from queuert._worker.outcomes import Ack, Completed, Failed
from queuert._worker.runners import Resume
from queuert._worker.store import NotNow
from queuert.hooks import TransactionHooks, collecting

if TYPE_CHECKING:
    from queuert._worker.acks import Acknowledger
    from queuert._worker.execution import Execution
    from queuert._worker.lifecycle import Lifecycle
    from queuert._worker.stats import WorkerStats
    from queuert._worker.store import Written
    from queuert.job import JobContext


class LeanAttempts:
    """The short path of ``AtomicSlots`` (whose attributes it uses)."""

    execution: Execution
    acks: Acknowledger
    life: Lifecycle
    stats: WorkerStats
    jobs: dict[int, tuple[JobContext[Any], Any]]
    conflicts: dict[uuid.UUID, int]

    # AtomicSlots' own methods, which this short path falls back to
    attempt: Callable[[Any, list[str], int, Ack | None], Awaitable[tuple[bool, Ack | None]]]
    _settle: Callable[[Any], bool]

    async def roll_back_for_shutdown(self, job: JobContext[Any], session: Any) -> None:
        """An attempt cancelled by an immediate stop: its transaction rolls
        back (the job is pending again) and its hooks are dropped."""
        self.acks.settle(job, False)
        try:
            await asyncio.shield(session.rollback())
        except BaseException:
            pass

    async def attempt_lean(self, session: Any, type_names: tuple[str, ...], key: int) -> tuple[bool, Ack | None]:
        """``attempt(session, type_names, key, None)``, short where it can
        be (module docstring), and again for as long as the jobs come, the
        run claims and the loop's turn is not due: one call of this per
        turn of the loop, not per job. Returns as ``attempt`` for the last
        job it claimed (or tried to)."""
        if session.turn_due():
            await session.take_turn()
        stats = self.stats
        execution = self.execution
        life = self.life
        task = asyncio.current_task()
        while True:
            try:
                row = session.claim_now(type_names)
            except NotNow:
                return await self.attempt(session, list(type_names), key, None)
            stats.claim_calls += 1
            if row is None:
                return False, None
            stats.claimed += 1
            job = execution.make_job(row)
            session.lend(job)
            job._state = st.RUNNING
            h = execution.prepare(job)
            if isinstance(h, Failed):
                return True, Ack(job, h)
            self.jobs[key] = (job, task)
            hooks = job._hooks = TransactionHooks()
            exc: BaseException | None = None
            try:
                with collecting(hooks), job._telemetry.active():
                    coro = h.fn(job)
                    try:
                        first = coro.send(None)
                    except StopIteration as stop:
                        result = stop.value
                    else:
                        result = await Resume(coro, first)
            except asyncio.CancelledError:
                if life.immediate:
                    await self.roll_back_for_shutdown(job, session)
                    raise
                result, exc = None, asyncio.CancelledError()
            except Exception as e:
                result, exc = None, e
            finally:
                self.jobs.pop(key, None)
            outcome = execution.outcome(job, h, result, exc)
            if type(outcome) is not Completed:
                return True, Ack(job, outcome)
            ack = Ack(job, outcome)
            try:
                written: Written | str | None = session.complete_now(ack)
            except BaseException:
                self.acks.settle(job, False)  # its transaction's fate is the connection's
                raise
            if type(written) is str:
                if self.conflicts:
                    self.conflicts.pop(job.id, None)
                self.acks.record_completed(job, written)
            elif written is not None:
                self._settle(written)
            else:
                return True, ack
            if not life.claiming or session.turn_due():
                return True, None
