"""Acknowledgement: outcomes buffered until the next flush, the flush
itself (through the store, with conflict retries), the one-by-one fallback
when a batch is refused, and the bookkeeping after a commit (job states,
counters, what to publish)."""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from queuert._worker import job_state as st
from queuert._worker.execution import log_extra
from queuert._worker.outcomes import Ack, Completed, Continued, Failed, Outcome, Released, error_text
from queuert._worker.stats import WorkerStats
from queuert._worker.store import ClaimRow, Conflict, ConnectionLost, JobLost, Rejected, Session, Written
from queuert._worker.telemetry_reports import has_telemetry, report_lost, report_settled, report_written
from queuert.errors import QueuertError
from queuert.job import JobContext
from queuert.telemetry.attempts import Attempt

logger = logging.getLogger("queuert.worker")

#: publish(ready, chains): ready is ``{type: jobs made pending}``
Publish = Callable[[Mapping[str, int], Iterable[str]], None]
#: publish_outside(ready, chains, lost): for the notifier only (Publisher.add_outside)
PublishOutside = Callable[[Mapping[str, int], Iterable[str], Iterable[str]], None]


class Acknowledger:
    """``publish(ready, chains)`` (None: nothing to publish) receives what
    committed acknowledgements imply; ``publish_unblocked``: also the types
    of dependents completions made pending (the engine announces those
    itself unless the worker publishes through another notifier).
    ``publish_outside`` receives what an atomic handler's own calls on
    ``job.conn`` announced (their statements notified the database
    themselves), once the attempt committed."""

    def __init__(
        self,
        flights: dict[uuid.UUID, JobContext[Any]],
        stats: WorkerStats,
        *,
        worker_id: str,
        publish: Publish | None,
        publish_unblocked: bool,
        wake: Callable[[], None],
        publish_outside: PublishOutside | None = None,
    ) -> None:
        self.flights = flights
        self.stats = stats
        self.worker_id = worker_id
        self.publish = publish
        self.publish_unblocked = publish_unblocked
        self.wake = wake
        self.publish_outside = publish_outside
        self.pending: list[Ack] = []  # outcomes not yet sent
        # committed acknowledgements whose telemetry is yet to be reported
        self._reports: list[Written] = []
        # committed plain completions (record_completed) whose attempt has telemetry
        self._completions: list[Attempt] = []

    def queue(self, job: JobContext[Any], outcome: Outcome) -> None:
        job._state = st.ACKING
        self.pending.append(Ack(job, outcome))
        self.wake()

    def take(self) -> list[Ack]:
        acks, self.pending = self.pending, []
        return acks

    def put_back(self, acks: list[Ack]) -> None:
        """Unsent after all (an immediate stop during a reconnect)."""
        self.pending = acks + self.pending

    async def flush(self, session: Session, acks: list[Ack], claim_n: int) -> list[ClaimRow]:
        """One round trip, one transaction: ``acks``, then a claim of up to
        ``claim_n`` jobs; returns the claimed rows. Raises ConnectionLost
        (the acks' states are reset for a retry)."""
        live: list[Ack] = []
        for ack in acks:
            job = ack.job
            if job._state != st.ACKING and job._state != st.FLUSHING:
                continue  # lost or released meanwhile
            job._state = st.FLUSHING
            live.append(ack)
        if not live and not claim_n:
            return []
        self.stats.flushes += 1
        if claim_n:
            self.stats.claim_calls += 1
        try:
            try:
                written = await self._send(session, live, claim_n)
            except (JobLost, Rejected, Conflict) as exc:
                # The transaction rolled back as a whole: nothing of it
                # happened. Redo each ack on its own to isolate the culprit.
                if isinstance(exc, Rejected) and not isinstance(exc.error, QueuertError):
                    logger.error(
                        "batched acknowledgement failed (%s); retrying one by one",
                        exc,
                        extra={"worker_id": self.worker_id},
                    )
                await self._one_by_one(session, live)
                if not claim_n:
                    return []
                self.stats.claim_calls += 1
                return await session.claim(claim_n)
        except ConnectionLost:
            for ack in live:
                if ack.job._state == st.FLUSHING:
                    ack.job._state = st.ACKING
            raise
        self.record(written)
        return written.claimed

    async def _send(self, session: Session, acks: list[Ack], claim_n: int) -> Written:
        for retry in range(3):
            try:
                return await session.flush(acks, claim_n)
            except Conflict:
                # a deadlock or serialization failure rolled the whole
                # transaction back: the same batch is simply sent again
                if retry == 2:
                    raise
                self.stats.conflicts_retried += 1
                await asyncio.sleep(random.uniform(0.002, 0.02) * (retry + 1))
        raise AssertionError("unreachable")

    async def _one_by_one(self, session: Session, acks: list[Ack]) -> None:
        """Each ack in its own transaction. A job no longer ours is logged
        and dropped (never retried). Another engine error on a continuation
        (a bad blocker, an invalid argument) fails the attempt with that
        error."""
        for ack in acks:
            job = ack.job
            try:
                self.record(await self._acknowledge(session, ack))
            except JobLost as exc:
                self.flights.pop(job.id, None)
                job._state = st.LOST
                self.stats.lost += 1
                report_lost(job, str(exc))
                logger.warning("job %s is no longer ours (%s); outcome discarded", job.id, exc, extra=log_extra(job))
            except (Rejected, Conflict) as exc:
                err: BaseException = exc.error if isinstance(exc, Rejected) else exc
                if not isinstance(ack.outcome, Failed):
                    logger.warning(
                        "acknowledging job %s failed (%s); failing the attempt", job.id, err, extra=log_extra(job)
                    )
                    try:
                        self.record(await self._acknowledge(session, Ack(job, Failed(error_text(err)))))
                        continue
                    except (JobLost, Rejected, Conflict) as exc2:
                        err = exc2
                logger.error(
                    "cannot record failure of job %s: %s; it will be reaped", job.id, err, extra=log_extra(job)
                )
                report_lost(job, f"acknowledgement failed: {err}")
                self.flights.pop(job.id, None)
                job._state = st.LOST

    async def _acknowledge(self, session: Session, ack: Ack) -> Written:
        for retry in range(5):
            try:
                return await session.acknowledge(ack)
            except Conflict:
                if retry == 4:
                    raise
                self.stats.conflicts_retried += 1
                await asyncio.sleep(random.uniform(0.005, 0.05))
        raise AssertionError("unreachable")

    def record(self, written: Written) -> None:
        """Bookkeeping after a committed acknowledgement (loop thread): job
        states and counters, telemetry, and what to publish (chains
        completed, job types made pending)."""
        self._report_soon(written)
        flights = self.flights
        stats = self.stats
        debug = logger.isEnabledFor(logging.DEBUG)
        for ack in written.done:
            job = ack.job
            flights.pop(job.id, None)
            job._state = st.DONE
            kind = type(ack.outcome)
            if job._hooks is not None:  # atomic: a failure rolled the handler back
                self.settle(job, kind is not Failed)
            if kind is Completed:
                stats.completed += 1
                if debug:
                    logger.debug("job completed", extra=log_extra(job))
            elif kind is Failed:
                stats.failed += 1
            elif kind is Continued:
                stats.continued += 1
                if debug:
                    logger.debug("job continued", extra=log_extra(job))
        for ack, outcome in written.lost:
            job = ack.job
            flights.pop(job.id, None)
            if job._hooks is not None:  # the transaction committed all the same
                self.settle(job, type(ack.outcome) is not Failed)
            if type(ack.outcome) is Released:
                job._state = st.DONE
                logger.info("job %s was no longer ours to release (%s)", job.id, outcome, extra=log_extra(job))
                continue
            job._state = st.LOST
            stats.lost += 1
            logger.warning(
                "job %s was lost before its outcome was written (%s); its outcome is discarded",
                job.id,
                outcome,
                extra=log_extra(job),
            )
        if self.publish is not None:
            ready = written.ready
            if self.publish_unblocked and written.unblocked:
                ready = dict(ready)
                for type_name, n in written.unblocked.items():
                    ready[type_name] = ready.get(type_name, 0) + n
            if ready or written.chains:
                self.publish(ready, written.chains)

    def record_completed(self, job: JobContext[Any], chain: str) -> None:
        """``record`` of a committed Written holding only ``job``'s
        completion, which completed ``chain`` and unblocked nothing, with
        nothing waiting on the chain (an atomic slot's usual commit, reported
        without building the Written; its telemetry, if any, in the loop's
        next turn as ``_report_soon`` does)."""
        self.flights.pop(job.id, None)
        job._state = st.DONE
        if job._hooks is not None:
            self.settle(job, True)
        attempt = job._telemetry
        if isinstance(attempt, Attempt):
            self._completions.append(attempt)
            if len(self._completions) == 1 and not self._reports:
                self._schedule_report()
        self.stats.completed += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("job completed", extra=log_extra(job))
        if self.publish is not None:
            self.publish({}, (chain,))

    def _report_soon(self, written: Written) -> None:
        """Telemetry of a committed acknowledgement, in the loop's next turn:
        the worker sends its next statement first (an atomic slot its next
        claim, a dispatcher its next flush), so the spans' ends and the
        metric records run while the database works instead of before it
        is asked (at concurrency 1 every microsecond before the send adds
        to each job's latency). Nothing is deferred without telemetry."""
        first = written.done[0] if written.done else written.lost[0][0] if written.lost else None
        if first is None:
            return
        if not has_telemetry(first.job):
            # at once, ack by ack, as before: one of a batch may still have
            # telemetry (switched on between its claims)
            report_written(written)
            return
        self._reports.append(written)
        if len(self._reports) == 1 and not self._completions:
            self._schedule_report()

    def _schedule_report(self) -> None:
        """``report_now`` in the loop's next turn (at once without a loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop running here: report at once
            self.report_now()
            return
        loop.call_soon(self.report_now)

    def report_now(self) -> None:
        """Report what :meth:`_report_soon` and :meth:`record_completed`
        deferred (also at shutdown)."""
        reports, self._reports = self._reports, []
        completions, self._completions = self._completions, []
        for written in reports:
            report_written(written)
        for attempt in completions:
            # a plain completion: its chain completed, nothing waited on it
            attempt.completed(True)

    def settle(self, job: JobContext[Any], committed: bool) -> None:
        """An atomic attempt's transaction ended (loop thread): publish what
        its handler's calls announced if it committed (and run their
        after-commit callbacks), else drop it (and run their on-rollback
        ones). Once per attempt; a job without hooks is left alone."""
        hooks, job._hooks = job._hooks, None
        if hooks is None:
            return
        if not committed:
            hooks.rolled_back()
            return
        ready, chains, lost = hooks.committed()
        if self.publish_outside is not None and (ready or chains or lost):
            self.publish_outside(ready, chains, lost)

    def count_committed(self, ack: Ack) -> None:
        """An acknowledgement known to have committed whose answer was not
        read (its transaction's later statement failed)."""
        self.settle(ack.job, type(ack.outcome) is not Failed)
        report_settled(ack)
        kind = type(ack.outcome)
        if kind is Completed:
            self.stats.completed += 1
        elif kind is Continued:
            self.stats.continued += 1
        else:
            self.stats.failed += 1
