"""What the worker tells queuert.telemetry about its acknowledgements.

The worker's call sites stay few: :func:`begin_attempt` when a handler is
about to run (the job's ``process <type>`` span and its counters),
:func:`continuation_with_trace` when a handler returned a continuation (the
next job's ``create`` span, whose traceparent the row stores), and
:func:`report_written` once an acknowledgement committed (each attempt's
outcome: completed, continued, failed with its retry time, lost, released).
:func:`report_lost`, :func:`report_renewed` and :func:`report_reaped` are
the renewal's and the reaper's.
With telemetry inactive these cost a check each (``NO_ATTEMPT``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from queuert._continuation import Continuation
from queuert._worker.outcomes import SHUTDOWN_RELEASE, Ack, Completed, Continued, Failed
from queuert._worker.store import Written
from queuert.job import JobContext
from queuert.telemetry import metrics
from queuert.telemetry.attempts import NO_ATTEMPT, attempt_started
from queuert.telemetry.tracing import active

__all__ = [
    "begin_attempt",
    "completion_traceparents",
    "continuation_with_trace",
    "has_telemetry",
    "report_lost",
    "report_reaped",
    "report_released",
    "report_renewed",
    "report_settled",
    "report_written",
]


def has_telemetry(job: JobContext[Any]) -> bool:
    """Whether the job's attempt reports anything (telemetry active)."""
    return job._telemetry is not NO_ATTEMPT


def begin_attempt(job: JobContext[Any], worker_id: str | None, mode: str) -> None:
    job._telemetry = attempt_started(job, worker_id, mode)


def continuation_with_trace(job: JobContext[Any], cont: Continuation) -> Continuation:
    """The continuation to write: its trace_context is the next job's
    creation span's (the handler's own without telemetry)."""
    traceparent = job._telemetry.continuing(cont.type_name, cont.trace_context)
    if traceparent == cont.trace_context:
        return cont
    return dataclasses.replace(cont, trace_context=traceparent)


def completion_traceparents(acks: Sequence[Ack]) -> list[str | None] | None:
    """complete_jobs' trace_contexts: each attempt span's traceparent (the
    engine writes it on the blocker edges the completion resolves), or None
    when no attempt has a span."""
    if acks[0].job._telemetry is NO_ATTEMPT:  # telemetry off: one check per batch
        return None
    traceparents = [ack.job._telemetry.traceparent() for ack in acks]
    return traceparents if any(traceparents) else None


def _report(ack: Ack, written: Written | None) -> None:
    job = ack.job
    attempt = job._telemetry
    if attempt is NO_ATTEMPT:
        return
    outcome = ack.outcome
    if isinstance(outcome, Completed):
        # a completed job is its chain's last; the jobs that waited on it
        dependents = written.dependents.get(job.id) if written is not None else None
        attempt.completed(chain_completed=True, dependents=dependents)
    elif isinstance(outcome, Continued):
        next_job = written.continued_to.get(job.id) if written is not None else None
        if next_job is None:
            attempt.continued()
        else:
            attempt.continued(*next_job)
    elif outcome is SHUTDOWN_RELEASE or not isinstance(outcome, Failed):
        attempt.released()
    elif written is not None:
        # retried: due again at the engine's time; else failed for good
        attempt.failed(None, written.retry_at.get(job.id), outcome.error)
    else:
        # rows not read: the engine's backoff is unknown, report what was asked
        attempt.failed(None, outcome.asked_retry_at(datetime.now(timezone.utc)), outcome.error)


def report_written(written: Written) -> None:
    """A committed acknowledgement (a flush, one ack, or an atomic commit)."""
    for ack in written.done:
        _report(ack, written)
    for ack, reason in written.lost:
        ack.job._telemetry.lost(reason)


def report_settled(ack: Ack) -> None:
    """An acknowledgement known to have committed whose rows were not read."""
    _report(ack, None)


def report_lost(job: JobContext[Any], reason: str) -> None:
    job._telemetry.lost(reason)


def report_released(job: JobContext[Any]) -> None:
    """The attempt was rolled back whole: the job is pending again, unspent."""
    job._telemetry.released()


def report_renewed(count: int) -> None:
    if count and active():
        metrics.leases_renewed(count)


def report_reaped(count: int) -> None:
    if count and active():
        metrics.reaped(count)

