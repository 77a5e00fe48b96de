"""Running one job: a claimed row becomes a JobContext, its input is
parsed, its handler runs, and what it returned or raised becomes a typed
outcome (``outcomes``).

``Execution`` is the part both modes share; ``Dispatch`` runs staged
mode's handlers (async ones on the loop, started eagerly; sync ones in a
thread pool) and reports each outcome.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from queuert._worker.runners import ThreadPool, resumed
from queuert._worker import job_state as st
from queuert._worker.handlers import Handler
from queuert._worker.outcomes import Completed, Continued, Failed, Outcome, error_text
from queuert._worker.stats import WorkerStats
from queuert._worker.store import ClaimRow
from queuert._worker.telemetry_reports import begin_attempt, continuation_with_trace, report_lost
from queuert.errors import PayloadValidationError, QueuertError
from queuert.job import JobContext
from queuert.types import Continuation, RetryAt, to_json_value

logger = logging.getLogger("queuert.worker")

_COMPLETED_EMPTY = Completed(None)


def log_extra(job: JobContext[Any]) -> dict[str, Any]:
    return {
        "job_id": str(job.id),
        "chain_id": str(job.chain_id),
        "type_name": job.type_name,
        "attempt": job.attempt,
        "worker_id": job.worker_id,
    }


def claim_order(row: ClaimRow) -> tuple[int, datetime, int]:
    """The engine's claim order of a claimed row: priority (highest first),
    scheduled_at, seq."""
    return (-row[6], row[8], row[14])


class Execution:
    """Jobs from claimed rows, handlers resolved, results turned into outcomes."""

    def __init__(
        self,
        handlers: dict[str, Handler],
        worker_id: str,
        observe_claim: Callable[[datetime | None, datetime | None], None],
        *,
        mode: str = "staged",
    ) -> None:
        self.handlers = handlers
        self.worker_id = worker_id
        self.observe_claim = observe_claim
        self.mode = mode  # for the attempt spans (queuert.worker.mode)

    def make_job(self, row: ClaimRow) -> JobContext[Any]:
        job: JobContext[Any] = JobContext()
        (
            job.id,
            job.type_name,
            job.chain_id,
            job.chain_type_name,
            job.chain_index,
            job.raw_input,
            job.priority,
            job.attempt,
            job.scheduled_at,
            job.created_at,
            job.leased_until,
            job.last_attempt_error,
            job.trace_context,
            job._blockers_json,
            _seq,
            now,
        ) = row
        job.worker_id = self.worker_id
        self.observe_claim(job.leased_until, now)
        return job

    def prepare(self, job: JobContext[Any]) -> Handler | Failed:
        """Resolve the handler and parse the input: the handler, or the
        failure to record instead of running it. The attempt begins here
        (its telemetry: queuert._worker.telemetry_reports)."""
        begin_attempt(job, self.worker_id, self.mode)
        h = self.handlers.get(job.type_name)
        if h is None:  # claims are filtered by our types; defensive
            return Failed(f"no handler for job type {job.type_name!r}")
        job.job_type = h.job_type
        if h.job_type is None:
            job.input = job.raw_input
            return h
        try:
            job.input = h.job_type.parse_input(job.raw_input, job_id=job.id, chain_id=job.chain_id)
        except PayloadValidationError as exc:
            logger.error("%s", exc, extra=log_extra(job))
            return Failed(error_text(exc))
        return h

    def outcome(self, job: JobContext[Any], h: Handler, result: Any, exc: BaseException | None) -> Outcome:
        """What the handler's result (or exception) means for the job."""
        if exc is not None:
            job._telemetry.handler_error(exc)
            if isinstance(exc, RetryAt):
                return _retry(exc)
            err = "handler was cancelled" if isinstance(exc, asyncio.CancelledError) else error_text(exc)
            logger.warning(
                "job %s attempt %d failed: %s: %s",
                job.id,
                job.attempt,
                type(exc).__name__,
                exc,
                extra=log_extra(job),
            )
            return Failed(err)
        if result is None and h.output_none:
            return _COMPLETED_EMPTY
        if isinstance(result, Continuation):
            try:
                if h.job_type is not None:
                    h.job_type.check_continuation(result)
            except QueuertError as e:
                logger.warning("%s", e, extra=log_extra(job))
                return Failed(error_text(e))
            return Continued(continuation_with_trace(job, result))
        if isinstance(result, RetryAt):
            return _retry(result)
        try:
            value = h.job_type.dump_output(result) if h.job_type is not None else to_json_value(result)
        except Exception as e:
            logger.warning("invalid output of job %s: %s", job.id, e, extra=log_extra(job))
            return Failed(error_text(e))
        return _COMPLETED_EMPTY if value is None else Completed(json.dumps(value))


def _retry(r: RetryAt) -> Failed:
    reason = r.reason or f"retry requested ({r.when})"
    if isinstance(r.when, timedelta):
        return Failed(reason, None, max(r.when, timedelta(0)))
    return Failed(reason, r.at(), None)


class Pace(Protocol):
    """Told when handlers start and finish (claim-ahead sizing)."""

    def handler_started(self) -> None: ...

    def handler_finished(self, took: float) -> None: ...


class Dispatch:
    """Runs staged mode's handlers; ``on_outcome(job, outcome)`` receives
    each one that is still ours when it ends. ``running`` counts the slots
    in use."""

    def __init__(
        self,
        execution: Execution,
        flights: dict[uuid.UUID, JobContext[Any]],
        stats: WorkerStats,
        *,
        concurrency: int,
        pace: Pace,
        on_outcome: Callable[[JobContext[Any], Outcome], None],
        wake: Callable[[], None],
    ) -> None:
        self.execution = execution
        self.flights = flights
        self.stats = stats
        self.concurrency = concurrency
        self.pace = pace
        self.on_outcome = on_outcome
        self.wake = wake
        self.running = 0
        self.loop = asyncio.get_running_loop()
        self.pool = ThreadPool(concurrency, self.loop, self._deliver_sync_results)

    def has_free_slot(self) -> bool:
        return self.running < self.concurrency

    def run(self, job: JobContext[Any]) -> None:
        job._state = st.RUNNING
        self.pace.handler_started()
        h = self.execution.prepare(job)
        if isinstance(h, Failed):
            self.on_outcome(job, h)
            return
        self.running += 1
        if h.is_async:
            ctx = contextvars.copy_context()
            ctx.run(job._telemetry.attach)  # the attempt's span is current in the task
            t0 = time.monotonic()
            try:
                coro = h.fn(job)
                first = ctx.run(coro.send, None)
            except StopIteration as stop:
                self._finish(job, h, stop.value, None, time.monotonic() - t0)
                return
            except BaseException as exc:  # noqa: BLE001
                self._finish(job, h, None, exc, time.monotonic() - t0)
                return
            task = self.loop.create_task(resumed(coro, first), context=ctx)
            job._task = task
            task.add_done_callback(functools.partial(self._task_done, job, h, t0))
        else:
            self.pool.submit(job, job._telemetry.wrap(h.fn))

    def _task_done(self, job: JobContext[Any], h: Handler, t0: float, task: asyncio.Task[Any]) -> None:
        job._task = None
        took = time.monotonic() - t0
        if task.cancelled():
            self._finish(job, h, None, asyncio.CancelledError(), took)
            return
        exc = task.exception()
        self._finish(job, h, task.result() if exc is None else None, exc, took)

    def _deliver_sync_results(self, items: list[Any]) -> None:
        handlers = self.execution.handlers
        for job, result, exc, took in items:
            self._finish(job, handlers[job.type_name], result, exc, took)

    def _finish(self, job: JobContext[Any], h: Handler, result: Any, exc: BaseException | None, took: float) -> None:
        self.running -= 1
        self.pace.handler_finished(took)
        self.wake()
        if job._state != st.RUNNING:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("discarding outcome of a job no longer ours", extra=log_extra(job))
            return
        self.on_outcome(job, self.execution.outcome(job, h, result, exc))

    def lose(self, job: JobContext[Any], reason: str) -> None:
        """The job is no longer ours: stop its handler, drop its outcome."""
        state = job._state
        if state == st.FLUSHING or state >= st.LOST:
            return  # the in-flight acknowledgement decides
        job._state = st.LOST
        self.flights.pop(job.id, None)
        self.stats.lost += 1
        report_lost(job, reason)
        job.lease_lost._set(reason)
        logger.warning("lost job %s (%s); stopping its handler", job.id, reason, extra=log_extra(job))
        if job._task is not None:
            job._task.cancel()
        self.wake()

    def shutdown(self) -> None:
        self.pool.shutdown()
