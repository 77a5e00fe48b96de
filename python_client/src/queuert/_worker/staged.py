"""Staged mode's dispatcher: flush lanes that acknowledge and claim, and
the jobs they bring in (run now, or held ahead until a slot frees).

Several lanes (connections) let one flush commit while the next is already
on its way, so their commits share WAL flushes (group commit). Each flush
claims at most ``capacity / lanes`` jobs so every lane has work to carry.

Owned by the loop thread. ``reserved``: jobs asked for by claims in flight.
``need_reconcile``: a claim's answer was lost; before the next claim, jobs
running under this worker that it does not know are given back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from queuert._worker import job_state as st
from queuert._worker.acks import Acknowledger
from queuert._worker.claim_ahead import ClaimAhead, HeldJobs
from queuert._worker.execution import Dispatch, Execution
from queuert._worker.lifecycle import Lifecycle
from queuert._worker.outcomes import SHUTDOWN_RELEASE, Ack, Released
from queuert._worker.stats import WorkerStats
from queuert._worker.store import ClaimRow, ConnectionLost, Session, StoreError
from queuert._worker.wakeup import Wakeup

logger = logging.getLogger("queuert.worker")


class _Lane:
    """A flush connection."""

    __slots__ = ("index", "session", "busy", "task", "delay")

    def __init__(self, index: int) -> None:
        self.index = index
        self.session: Session | None = None
        self.busy = False
        self.task: asyncio.Task[None] | None = None
        self.delay = 0.05


class StagedDispatcher:
    def __init__(
        self,
        *,
        execution: Execution,
        dispatch: Dispatch,
        acks: Acknowledger,
        ahead: ClaimAhead,
        lifecycle: Lifecycle,
        wakeup: Wakeup,
        stats: WorkerStats,
        open_session: Callable[[], Awaitable[Session]],
        publish_released: Callable[[list[str]], None],
        flush_connections: int,
        reconnect_max: float,
        worker_id: str,
    ) -> None:
        self.execution = execution
        self.dispatch = dispatch
        self.flights = dispatch.flights
        self.acks = acks
        self.ahead = ahead
        self.life = lifecycle
        self.wakeup = wakeup
        self.stats = stats
        self.open_session = open_session
        self.publish_released = publish_released
        self.concurrency = dispatch.concurrency
        self.n_lanes = max(1, min(flush_connections, self.concurrency + ahead.largest))
        self.reconnect_max = reconnect_max
        self.worker_id = worker_id
        self.held = HeldJobs()
        self.reserved = 0
        self.need_reconcile = False
        # claims in flight, and whether the last one that came back was
        # full: after a short claim (the queue looked drained) one claim at
        # a time, so a hint for one job sends one claim, not one per lane
        self.claiming_lanes = 0
        self.last_claim_full = True

    async def main(self, started: asyncio.Event) -> None:
        """Start a flush on a free lane whenever there are outcomes to
        acknowledge or free slots to claim for; at stop, wait for the
        in-flight jobs within the grace period, then release the rest."""
        lanes = [_Lane(i) for i in range(self.n_lanes)]
        tasks: set[asyncio.Task[None]] = set()
        life = self.life
        wake = self.wakeup.dispatcher
        try:
            # connect the first lane up front: "started" means connected
            lanes[0].session = await self.open_session()
            started.set()
            while True:
                busy = [ln for ln in lanes if ln.busy]
                if not life.claiming:
                    if life.grace_over():
                        if busy:
                            await asyncio.wait({ln.task for ln in busy if ln.task is not None}, timeout=10)
                        await self.release_all(lanes[0].session)
                        return
                    if not self.flights and not self.acks.pending and not busy:
                        return
                idle = next((ln for ln in lanes if not ln.busy), None)
                stall_left: float | None = None
                if self.held:
                    if life.claiming:
                        self.start_held()
                        stall_left = self.give_back_if_stalled()
                    else:  # stopping: jobs held ahead that never started go back at once
                        self.release_held()
                if life.claiming:
                    capacity = self.concurrency + self.ahead.extra()
                    free = self.free(capacity)
                else:
                    capacity = free = 0
                want = free > 0 and self.wakeup.claim_wanted()
                if self.claiming_lanes and not self.last_claim_full:
                    want = False  # that claim's answer says whether more are waiting
                if self.need_reconcile:
                    want = want and not busy  # reconcile first, with no claim in flight
                if idle is not None and (self.acks.pending or want):
                    claim_n = min(free, -(-capacity // self.n_lanes)) if want else 0
                    self.reserved += claim_n
                    if claim_n:
                        self.claiming_lanes += 1
                    idle.busy = True
                    idle.task = asyncio.get_running_loop().create_task(self.run_lane(idle, self.acks.take(), claim_n))
                    tasks.add(idle.task)
                    idle.task.add_done_callback(tasks.discard)
                    continue
                wake.clear()
                timeout = stall_left
                if life.grace_deadline is not None:
                    timeout = max(0.0, life.grace_deadline - time.monotonic())
                if timeout is None:
                    await wake.wait()
                else:
                    try:
                        await asyncio.wait_for(wake.wait(), timeout)
                    except asyncio.TimeoutError:
                        pass
        finally:
            for t in list(tasks):
                t.cancel()
            for t in list(tasks):
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass
            for ln in lanes:
                if ln.session is not None:
                    await ln.session.close()
            self.dispatch.shutdown()

    async def run_lane(self, lane: _Lane, acks: list[Ack], claim_n: int) -> None:
        """One flush on one lane, reconnecting (with backoff) until it is
        written. Acks are retried after a connection loss: they were not
        committed, or they were and the engine now refuses them (logged as
        lost, never written twice)."""
        gen = self.wakeup.hint_gen
        reserved = claim_n
        claiming = claim_n > 0
        rows: list[ClaimRow] = []
        try:
            while True:
                try:
                    if lane.session is None or lane.session.closed:
                        lane.session = await self.open_session()
                    if self.need_reconcile and self.reserved == reserved:
                        # no claim in flight on another lane, and ours is
                        # sent only after this: any job leased by us that we
                        # do not know is an orphan of a lost claim
                        self.need_reconcile = False
                        await self.reconcile(lane.session)
                    rows = await self.acks.flush(lane.session, acks, claim_n)
                    lane.delay = 0.05
                    break
                except ConnectionLost as exc:
                    self.stats.reconnects += 1
                    logger.warning(
                        "database connection lost (%s); reconnecting", exc, extra={"worker_id": self.worker_id}
                    )
                    if lane.session is not None:
                        await lane.session.close()
                    lane.session = None
                    if claim_n:
                        # that claim may have committed unseen: such jobs are
                        # released before the next claim
                        self.need_reconcile = True
                        claim_n = 0
                        self.reserved -= reserved
                        reserved = 0
                    if self.life.immediate:
                        self.acks.put_back(acks)
                        return
                    await self.life.sleep(lane.delay)
                    lane.delay = min(lane.delay * 2, self.reconnect_max)
            self.reserved -= reserved
            reserved = 0
            if claim_n:
                self.last_claim_full = len(rows) >= claim_n
                if len(rows) < claim_n:
                    self.wakeup.mark_drained(gen)
                if len(rows) > self.stats.largest_claim:
                    self.stats.largest_claim = len(rows)
                self.take_claimed(rows)
        finally:
            self.reserved -= reserved
            if claiming:
                self.claiming_lanes -= 1
            lane.busy = False
            lane.task = None
            self.wakeup.dispatcher.set()

    def take_claimed(self, rows: list[ClaimRow]) -> None:
        """Claimed rows (in claim order): with nothing held, started at once
        while a slot is free (a no-op handler frees its slot before the next
        row); the rest held in claim order with any held before, then
        started as far as slots are free."""
        make_job = self.execution.make_job
        flights = self.flights
        dispatch = self.dispatch
        self.stats.claimed += len(rows)
        i = 0
        if not self.held:
            while i < len(rows) and dispatch.has_free_slot():
                job = make_job(rows[i])
                flights[job.id] = job
                dispatch.run(job)
                i += 1
        if i < len(rows):
            held = []
            for row in rows[i:]:
                job = make_job(row)
                flights[job.id] = job
                held.append((row, job))
            self.held.push_claim(held)
            self.start_held()

    def start_held(self) -> None:
        held = self.held
        dispatch = self.dispatch
        while held and dispatch.has_free_slot():
            job = held.pop()
            if job._state == st.QUEUED:
                dispatch.run(job)

    def release_held(self) -> None:
        for job in self.held.drain():
            if job._state == st.QUEUED:
                self.stats.released += 1
                self.acks.queue(job, Released())

    def give_back_if_stalled(self) -> float | None:
        """Seconds until held jobs are given back as stalled (None: nothing
        to watch); gives them back (no attempt spent) when that is now."""
        left = self.ahead.seconds_to_stall(not self.dispatch.has_free_slot(), bool(self.held))
        if left is None or left > 0:
            return left
        n = len(self.held)
        stalled = self.ahead.stalled()
        self.release_held()
        logger.info(
            "handlers are much slower than before (all slots busy for %.1f s): gave back %d jobs claimed ahead",
            stalled,
            n,
            extra={"worker_id": self.worker_id},
        )
        return None

    def free(self, capacity: int | None = None) -> int:
        """Jobs a claim could take now: room for running and held jobs
        (``capacity``, by default the slots plus what may be held ahead)
        beyond those running, held and asked for."""
        if capacity is None:
            capacity = self.concurrency + self.ahead.extra()
        return capacity - self.dispatch.running - len(self.held) - self.reserved

    async def reconcile(self, session: Session) -> None:
        """After a connection loss during a claim: jobs running under this
        worker that it does not know about were claimed by a transaction
        whose answer never arrived. Release them now (retry now) rather than
        letting them wait for their lease to expire."""
        try:
            released = await session.release_orphans(list(self.flights))
        except ConnectionLost:
            raise
        except StoreError as exc:
            logger.warning("reconciling claimed jobs failed: %s", exc)
            return
        for job_id, _ in released:
            logger.info(
                "released job %s claimed before a lost connection",
                job_id,
                extra={"job_id": str(job_id), "worker_id": self.worker_id},
            )
        if released:
            self.publish_released([type_name for _, type_name in released])

    async def release_all(self, session: Session | None) -> None:
        """Grace period over: flush finished outcomes, release running jobs
        (fail with retry now, fenced), stop their handlers."""
        release: list[Ack] = []
        self.held.clear()
        for job in list(self.flights.values()):
            if job._state == st.QUEUED:  # never started: give it back, attempt restored
                release.append(Ack(job, Released()))
            elif job._state == st.RUNNING:
                job.lease_lost._set("released: worker shutting down")
                if job._task is not None:
                    job._task.cancel()
                release.append(Ack(job, SHUTDOWN_RELEASE))
        for ack in release:
            ack.job._state = st.ACKING
        todo = self.acks.take() + release
        if not todo:
            return
        tries, limit = (1, 2.0) if self.life.immediate else (3, 10.0)
        for _attempt in range(tries):
            try:
                if session is None or session.closed:
                    session = await asyncio.wait_for(self.open_session(), limit / 2)
                await asyncio.wait_for(self.acks.flush(session, todo, 0), limit)
                self.stats.released += len(release)
                if release:
                    logger.info(
                        "released %d unfinished job(s) for immediate retry",
                        len(release),
                        extra={"worker_id": self.worker_id},
                    )
                return
            except Exception as exc:
                for ack in todo:
                    if ack.job._state == st.FLUSHING:
                        ack.job._state = st.ACKING
                logger.warning("releasing jobs at shutdown failed: %s", exc)
                if session is not None:
                    await session.close()
                session = None
        logger.error(
            "could not release %d job(s); they will be retried after their lease expires",
            len(todo),
            extra={"worker_id": self.worker_id},
        )
