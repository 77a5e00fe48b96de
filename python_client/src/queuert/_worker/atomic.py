"""Atomic mode: each slot owns a session; the claim, the handler's SQL (on
``job.conn``) and the acknowledgement share one transaction.

An async slot sends the previous job's acknowledgement and COMMIT in the
same round trip as its next claim (the "carry"), so a busy slot needs one
round trip per job. Sync handlers run in one thread per slot, each with its
own sync session. How an outcome is written is planned once, in
``atomic_plan``; an acknowledgement that meets a conflict rolls the whole
attempt back (the job pending again, its attempt unspent) and the slot
claims again after a short random pause.

A handler runs with its attempt's hooks block current (``hooks.collecting``):
what its calls on ``job.conn`` make ready (``start_chain``, a fan-in
``complete_chain``, ...) is published through the worker's notifier once
the attempt commits (``Acknowledger.settle``), and dropped when it rolls
back.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from queuert._worker.runners import SlotThread
from queuert._worker import atomic_plan
from queuert._worker import job_state as st
from queuert._worker.acks import Acknowledger
from queuert._worker.atomic_lean import LeanAttempts
from queuert._worker.execution import Execution
from queuert._worker.lifecycle import Lifecycle
from queuert._worker.outcomes import Ack, Failed, Outcome
from queuert._worker.stats import WorkerStats
from queuert._worker.store import AtomicSession, ConnectionLost, Store, StoreError, SyncAtomicSession, Written
from queuert._worker.telemetry_reports import report_released
from queuert._worker.wakeup import ASYNC_SLOTS, SYNC_SLOTS, Wakeup
from queuert.hooks import TransactionHooks, collecting
from queuert.job import JobContext

logger = logging.getLogger("queuert.worker")

#: the longest run of back-to-back attempts in a sync slot's thread (lean stores)
BURST = 0.02


class AtomicSlots(LeanAttempts):
    """``jobs``: the attempt in progress of each slot (key: the slot's task
    id) and what can stop it (its task, or its sync session's backend id).
    ``lean``: the store's async sessions take ``atomic_lean``'s short path."""

    def __init__(
        self,
        *,
        store: Store,
        execution: Execution,
        acks: Acknowledger,
        lifecycle: Lifecycle,
        wakeup: Wakeup,
        stats: WorkerStats,
        concurrency: int,
        reconnect_max: float,
        worker_id: str,
    ) -> None:
        self.store = store
        self.execution = execution
        self.acks = acks
        self.life = lifecycle
        self.wakeup = wakeup
        self.stats = stats
        self.concurrency = concurrency
        self.reconnect_max = reconnect_max
        self.worker_id = worker_id
        self.loop = asyncio.get_running_loop()
        self.jobs: dict[int, tuple[JobContext[Any], Any]] = {}
        #: conflicts in a row on each job's acknowledgement (see atomic_plan)
        self.conflicts: dict[uuid.UUID, int] = {}
        self.lean = bool(getattr(store, "lean_atomic", False))
        # sync slots' hand-overs to the loop, in order, one wake-up per batch
        self._handed: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._handing = threading.Lock()

    async def main(self, type_names: list[str], started: asyncio.Event) -> None:
        handlers = self.execution.handlers
        async_types = [t for t in type_names if handlers[t].is_async]
        sync_types = [t for t in type_names if not handlers[t].is_async]
        # each kind of slot has its own "nothing left" marker: async slots
        # finding none of their types must not stop the sync slots' claims
        self.wakeup.claimers([kind for kind, types in ((ASYNC_SLOTS, async_types), (SYNC_SLOTS, sync_types)) if types])
        started.set()
        slots: list[asyncio.Task[None]] = []
        if async_types:
            for i in range(self.concurrency):
                slots.append(self.loop.create_task(self.slot(async_types, None)))
        if sync_types:
            for i in range(self.concurrency):
                slots.append(self.loop.create_task(self.slot(sync_types, SlotThread(self.loop, i))))
        life = self.life
        try:
            await life.stop_event.wait()
            # graceful: slots stop claiming and finish their job
            remaining = max(0.0, (life.grace_deadline or time.monotonic()) - time.monotonic())
            _, pending = await asyncio.wait(slots, timeout=remaining if not life.immediate else 0)
            if pending:
                life.immediate = True
                await self.abort()
                await asyncio.wait(pending, timeout=10)
        finally:
            for t in slots:
                if not t.done():
                    t.cancel()
            for t in slots:
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass

    async def abort(self) -> None:
        """Past the grace period: roll back in-flight attempts. Async slots are
        cancelled; sync slots (a thread we cannot interrupt) have their
        transaction ended by the store, which rolls it back."""
        backends = []
        for job, holder in list(self.jobs.values()):
            job.lease_lost._set("released: worker shutting down")
            if isinstance(holder, asyncio.Task):
                holder.cancel()
            elif holder is not None:
                backends.append(holder)
            self.stats.released += 1
        if backends:
            try:
                await self.store.interrupt(backends)
            except StoreError as exc:
                logger.warning("could not terminate in-flight transactions: %s", exc)
        if self.jobs:
            logger.info(
                "rolled back %d unfinished job(s) at shutdown", len(self.jobs), extra={"worker_id": self.worker_id}
            )

    async def slot(self, type_names: list[str], thread: SlotThread | None) -> None:
        """One slot until the run stops claiming; ``thread``: its sync
        handlers' thread (None: async handlers on the loop)."""
        session: Any = None
        delay = 0.05
        key = id(asyncio.current_task())
        carry: Ack | None = None  # async slots: the last job's acknowledgement, sent with the next claim
        wakeup = self.wakeup
        kind = ASYNC_SLOTS if thread is None else SYNC_SLOTS
        lean, lean_types = self.lean, tuple(type_names)
        try:
            while self.life.claiming:
                if not wakeup.claim_wanted(kind):
                    if carry is not None:
                        await self._flush_carry(session, carry)
                        carry = None
                        continue
                    evt = wakeup.hint_event
                    if not wakeup.claim_wanted(kind):
                        await evt.wait()
                    continue
                gen = wakeup.hint_gen
                try:
                    if session is not None and session.closed:
                        # lost inside the attempt (e.g. under the handler's own
                        # statement): the rollback already happened server-side
                        self.stats.reconnects += 1
                        session = None
                        self._drop(carry)  # its transaction died with the connection
                        carry = None
                    if thread is None:
                        if session is None:
                            session = await self.life.reconnecting("atomic", self.store.open_atomic)
                        if not lean:
                            got, carry = await self.attempt(session, type_names, key, carry)
                        elif carry is not None:
                            # no round trip to save on this store: the
                            # carry is written on its own, then the short path
                            await self._flush_carry(session, carry)
                            carry = None
                            continue
                        else:
                            got, carry = await self.attempt_lean(session, lean_types, key)
                    else:
                        if session is None:
                            session = await thread.call(self.store.open_atomic_sync)
                        got = await thread.call(self.attempts_sync, session, type_names, key)
                    delay = 0.05
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    # its transaction committed or rolled back with the
                    # connection: its handler's notifications are dropped
                    self._drop(carry)
                    carry = None
                    if isinstance(exc, ConnectionLost):
                        self.stats.reconnects += 1
                        logger.warning(
                            "database connection lost (%s); reconnecting", exc, extra={"worker_id": self.worker_id}
                        )
                    else:
                        logger.exception("atomic slot error", extra={"worker_id": self.worker_id})
                    if session is not None:
                        if thread is not None:
                            await thread.call(session.close)  # in its thread: its call has ended
                        else:
                            await session.close()
                    session = None
                    await self.life.sleep(delay)
                    delay = min(delay * 2, self.reconnect_max)
                    continue
                if not got:
                    wakeup.mark_drained(gen, kind)
            if carry is not None:
                await self._flush_carry(session, carry)
                carry = None
        finally:
            self.jobs.pop(key, None)
            if thread is not None:
                # this task may have been cancelled while its thread is still
                # inside a call on the session: the thread closes it after that
                thread.stop(close=session)
            elif session is not None:
                await session.close()

    def _retry_conflict(self, job: JobContext[Any]) -> bool:
        """Whether a conflict on ``job``'s acknowledgement rolls it back
        whole (else it is the attempt's failure)."""
        return self.conflicts.get(job.id, 0) < atomic_plan.CONFLICT_RETRIES

    def _settle(self, done: Written | atomic_plan.RolledBack) -> bool:
        """Bookkeeping of an acknowledgement's end (loop thread); True: it
        was rolled back by a conflict, the job is pending again."""
        conflicts = self.conflicts
        if isinstance(done, atomic_plan.RolledBack):
            self.acks.settle(done.job, False)  # the handler's work rolled back with it
            self.stats.conflicts_retried += 1
            if len(conflicts) > 10_000:  # jobs another worker finished
                conflicts.clear()
            conflicts[done.job.id] = conflicts.get(done.job.id, 0) + 1
            report_released(done.job)
            self.wakeup.hint()  # a job is pending again: claim
            return True
        if conflicts:
            for ack in done.done:
                conflicts.pop(ack.job.id, None)
            for ack, _ in done.lost:
                conflicts.pop(ack.job.id, None)
        self.acks.record(done)
        return False

    async def _flush_carry(self, session: AtomicSession, carry: Ack) -> None:
        try:
            job = carry.job
            plan = atomic_plan.acknowledge(
                job, carry.outcome, session.transaction_state(), retry_conflict=self._retry_conflict(job)
            )
            self._settle(await atomic_plan.drive(plan, session))
        except Exception as exc:
            self._drop(carry)
            if not isinstance(exc, ConnectionLost):
                logger.exception("acknowledging job %s failed", carry.job.id, extra={"worker_id": self.worker_id})
            await session.close()

    def _drop(self, carry: Ack | None) -> None:
        """An acknowledgement whose transaction's fate is unknown or rolled
        back: its handler's notifications are dropped (hints: the poll
        finds the jobs)."""
        if carry is not None:
            self.acks.settle(carry.job, False)

    async def attempt(
        self, session: AtomicSession, type_names: list[str], key: int, carry: Ack | None
    ) -> tuple[bool, Ack | None]:
        """Claim one job and run its async handler in one transaction;
        ``carry`` is committed in the same round trip as the claim. Returns
        (claimed, carry for the next call)."""
        write: atomic_plan.Write | None = None
        if carry is not None:
            state = session.transaction_state()
            if state == "idle":  # the handler ended the transaction itself: slow path
                plan = atomic_plan.acknowledge(carry.job, carry.outcome, state)
                self._settle(await atomic_plan.drive(plan, session))
            else:
                write = atomic_plan.in_transaction(carry.job, carry.outcome, state)
        self.stats.claim_calls += 1
        try:
            written, row = await session.open_attempt(
                type_names, None if write is None else (write.ack, write.rollback)
            )
        except ConnectionLost:
            raise
        except StoreError as exc:
            if write is None:
                raise
            plan = atomic_plan.after_failed_carry(
                write.ack, exc, retry_conflict=self._retry_conflict(write.ack.job)
            )
            failed = await atomic_plan.drive(plan, session)
            if failed is None:
                self.acks.count_committed(write.ack)
            elif self._settle(failed):
                await asyncio.sleep(random.uniform(0.002, 0.02))  # let the other transaction finish
            return True, None  # claim again
        if isinstance(written, str):  # the carry was a plain completion of its chain
            assert write is not None
            carried = write.ack.job
            if self.conflicts:
                self.conflicts.pop(carried.id, None)
            self.acks.record_completed(carried, written)
        elif written is not None:
            self._settle(written)
        if row is None:
            return False, None
        job = self.execution.make_job(row)
        session.lend(job)
        self.stats.claimed += 1
        job._state = st.RUNNING
        h = self.execution.prepare(job)
        if isinstance(h, Failed):
            return True, Ack(job, h)
        self.jobs[key] = (job, asyncio.current_task())
        hooks = job._hooks = TransactionHooks()
        exc2: BaseException | None
        try:
            with collecting(hooks), job._telemetry.active():
                result = await h.fn(job)
            exc2 = None
        except asyncio.CancelledError:
            if self.life.immediate:
                await self.roll_back_for_shutdown(job, session)
                raise
            result, exc2 = None, asyncio.CancelledError()
        except Exception as e:
            result, exc2 = None, e
        finally:
            self.jobs.pop(key, None)
        return True, Ack(job, self.execution.outcome(job, h, result, exc2))

    def attempts_sync(self, session: SyncAtomicSession, type_names: list[str], key: int) -> bool:
        """``attempt_sync``, and on a ``lean`` store job after job in the
        slot's thread for as long as jobs come and the run claims (up to
        BURST seconds before the slot task looks at its hints again):
        no hand-over to the loop between them. Returns whether the last
        attempt claimed a job."""
        got = self.attempt_sync(session, type_names, key)
        if not self.lean:
            return got
        until = time.monotonic() + BURST
        while got and self.life.claiming and not session.closed and time.monotonic() < until:
            got = self.attempt_sync(session, type_names, key)
        return got

    def attempt_sync(self, session: SyncAtomicSession, type_names: list[str], key: int) -> bool:
        """The whole attempt in a slot thread, on a sync session."""
        row = session.open_attempt(type_names)
        # one hand-over to the loop for both counters (each wakes the loop)
        self._to_loop(self._count_claim, row is not None)
        if row is None:
            return False
        job = self.execution.make_job(row)
        session.lend(job)
        job._state = st.RUNNING
        h = self.execution.prepare(job)
        outcome: Outcome
        if isinstance(h, Failed):
            outcome = h
        else:
            self.jobs[key] = (job, session.backend_id)
            hooks = job._hooks = TransactionHooks()
            try:
                with collecting(hooks), job._telemetry.active():
                    result = h.fn(job)
                exc: BaseException | None = None
            except Exception as e:
                result, exc = None, e
            finally:
                self.jobs.pop(key, None)
            if job.lease_lost.is_set():
                # shutdown terminated our backend; the transaction is gone
                self._to_loop(self.acks.settle, job, False)
                raise ConnectionLost("released at shutdown")
            outcome = self.execution.outcome(job, h, result, exc)
        plan = atomic_plan.acknowledge(
            job, outcome, session.transaction_state(), retry_conflict=self._retry_conflict(job)
        )
        try:
            done = atomic_plan.drive_sync(plan, session)
        except BaseException:
            self._to_loop(self.acks.settle, job, False)
            raise
        self._to_loop(self._settle, done)
        if isinstance(done, atomic_plan.RolledBack):
            time.sleep(random.uniform(0.002, 0.02))  # let the other transaction finish
        return True

    def _to_loop(self, fn: Callable[..., Any], *args: Any) -> None:
        """``fn(*args)`` on the loop (from a slot thread): what the threads
        hand over while the loop has not yet run the last batch joins it,
        so a thread running job after job wakes the loop once per batch,
        not twice per job."""
        with self._handing:
            self._handed.append((fn, args))
            if len(self._handed) > 1:
                return
        self.loop.call_soon_threadsafe(self._run_handed)

    def _run_handed(self) -> None:
        with self._handing:
            handed, self._handed = self._handed, []
        for fn, args in handed:
            try:
                fn(*args)
            except Exception:  # as the loop would log a failed callback
                logger.exception("atomic slot hand-over failed", extra={"worker_id": self.worker_id})

    def _count_claim(self, claimed: bool) -> None:
        self.stats.claim_calls += 1
        if claimed:
            self.stats.claimed += 1

    def has_free_slot(self) -> bool:
        """Fewer attempts in progress than slots of one kind (a job_ready
        then costs an idle slot a unit of wake budget)."""
        return len(self.jobs) < self.concurrency
