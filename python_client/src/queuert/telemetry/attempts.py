"""The worker's span per attempt: ``process <type>`` (CONSUMER).

Its parent is the job's creation span (the traceparent stored on the row),
so a chain's steps form one trace whichever process runs them. It carries
the job and chain ids, the types, the attempt number, the worker id and
mode, a link per blocker chain the job waited on (to that chain's trace,
with the time it completed, also an event at that time: the fan-in's
resolution), and ends with the outcome: ``completed``, ``continued``,
``failed`` (the exception recorded, ``error.type``, the retry time) or
``lost``. A continuation's ``create <type>`` span is its child, linked to
the job it continues.

The worker needs a few call sites only::

    attempt = attempt_started(job, worker_id, "staged")  # at claim
    with attempt.active():                                # around the handler
        ...
    trace_context = attempt.continuing(cont)              # before continue_with
    attempt.completed(chain_completed) / continued() / failed(exc, retry_at) / lost(reason)

:func:`attempt_started` returns :data:`NO_ATTEMPT` (whose methods do
nothing) when telemetry is inactive.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from . import attributes as a
from . import metrics
from .switch import inactive, meter, tracer
from .resolution import report_resolved
from .tracing import Creation, creating
from .traceparent import attach_span, context_of, current_with, detach, span_context_of, traceparent_of

__all__ = ["NO_ATTEMPT", "Attempt", "attempt_started", "error_type_of"]


def error_type_of(exc: BaseException) -> str:
    """``error.type``: the exception's qualified class name."""
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


_NOTHING = contextlib.nullcontext()  # reusable: it holds no state


class _NoAttempt:
    """Telemetry inactive: every call site costs one method call."""

    __slots__ = ()

    def active(self) -> contextlib.AbstractContextManager[None]:
        return _NOTHING

    def attach(self) -> None:
        pass

    def wrap(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return fn

    def handler_error(self, exc: BaseException) -> None:
        pass

    def continuing(self, type_name: str, trace_context: str | None) -> str | None:
        return trace_context

    def traceparent(self) -> str | None:
        return None

    def completed(self, chain_completed: bool = False, dependents: Any = None) -> None:
        pass

    def continued(self, next_job_id: Any = None, next_status: str | None = None) -> None:
        pass

    def failed(self, exc: BaseException | None, retry_at: datetime | None, error_text: str | None = None) -> None:
        pass

    def lost(self, reason: str) -> None:
        pass

    def released(self) -> None:
        pass


NO_ATTEMPT = _NoAttempt()


class _Current:
    """``span`` current while the block runs: what ``trace.use_span`` does
    with its options off (no exception recorded there, no status set, the
    span not ended), without its generator-based context manager."""

    __slots__ = ("span", "token")

    def __init__(self, span: Any) -> None:
        self.span = span
        self.token: Any = None

    def __enter__(self) -> None:
        self.token = attach_span(self.span)

    def __exit__(self, *exc: object) -> None:
        detach(self.token)

# a completed attempt's outcome attributes (the SDK copies them)
_COMPLETED = {a.OUTCOME: "completed", a.CHAIN_COMPLETED: False}
_COMPLETED_CHAIN = {a.OUTCOME: "completed", a.CHAIN_COMPLETED: True}


class Attempt:
    """One attempt of one claimed job; see the module docstring."""

    __slots__ = (
        "_continuation",
        "_done",
        "_error",
        "chain_id",
        "chain_type",
        "created_at",
        "job_trace_context",
        "metrics",
        "span",
        "started",
        "type_name",
    )

    def __init__(self, span: Any, job: Any, bound: metrics.Bound | None = None):
        self.span = span
        self.metrics = bound  # the type's instruments and attributes (None: metrics off)
        self.type_name: str = job.type_name
        self.chain_type: str = job.chain_type_name
        self.chain_id = job.chain_id
        self.created_at: datetime | None = job.created_at
        self.job_trace_context: str | None = job.trace_context
        self.started = time.monotonic()
        self._continuation: Creation | None = None
        self._done = False
        self._error: BaseException | None = None

    def active(self) -> contextlib.AbstractContextManager[None]:
        """The attempt's span as the current span (the handler's own spans,
        and a continuation it starts, become its children)."""
        if self.span is None:
            return _NOTHING
        return _Current(self.span)

    def attach(self) -> None:
        """Make the span current in the running context for good: for a
        context of the attempt's own (the worker runs an async handler in a
        copied context, one per task)."""
        if self.span is not None:
            current_with(self.span)

    def wrap(self, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``fn`` (a sync handler, run in a pool thread) with the attempt's
        span current while it runs."""

        def with_span(job: Any) -> Any:
            with self.active():
                return fn(job)

        return with_span

    def handler_error(self, exc: BaseException) -> None:
        """The handler raised: keep the exception for :meth:`failed`."""
        self._error = exc

    def continuing(self, type_name: str, trace_context: str | None) -> str | None:
        """Start the continuation's creation span (a child of this attempt's,
        linked to the job it continues); returns the traceparent for
        ``continue_with`` (the handler's own when there is no span). Asked
        again (an acknowledgement retried), the same span's."""
        if self._continuation is not None:
            return self._continuation.traceparent
        creation = creating(
            type_name,
            traceparent_of(self.span) if self.span is not None else trace_context,
            "continue_with",
            continues=self.job_trace_context,
            chain_id=self.chain_id,
        )
        self._continuation = creation
        if creation is None:
            return trace_context
        return creation.traceparent

    def traceparent(self) -> str | None:
        """The attempt span's traceparent (None without a span): what a
        completion writes on the blocker edges it resolves."""
        return traceparent_of(self.span) if self.span is not None else None

    def _finish(self) -> float | None:
        """The attempt's seconds, the first time only."""
        if self._done:
            return None
        self._done = True
        return time.monotonic() - self.started

    def completed(self, chain_completed: bool = False, dependents: Any = None) -> None:
        """The job's completion committed; ``dependents``: the jobs that
        waited on its chain (the engine's list), each given a resolve span."""
        seconds = self._finish()
        if seconds is None:
            return
        span = self.span
        if span is not None:
            span.set_attributes(_COMPLETED_CHAIN if chain_completed else _COMPLETED)
            if dependents:
                report_resolved(span, self.chain_id, dependents)
            span.end()
        bound = self.metrics
        if bound is not None:
            bound.completed_job(seconds, self.created_at, self.chain_id if chain_completed else None)

    def continued(self, next_job_id: Any = None, next_status: str | None = None) -> None:
        """The continuation committed (the job is completed, its chain goes on)."""
        seconds = self._finish()
        if seconds is None:
            return
        creation = self._continuation
        if creation is not None and next_job_id is not None and next_status is not None:
            creation.created(next_job_id, self.chain_id, self.chain_type, next_status, False)
        elif creation is not None:
            if creation.span is not None:
                creation.span.end()
            metrics.continuation_created(creation.type_name)
        if self.span is not None:
            self.span.set_attribute(a.OUTCOME, "continued")
            self.span.end()
        if self.metrics is not None:
            self.metrics.continued_job(seconds, self.created_at)

    def failed(self, exc: BaseException | None, retry_at: datetime | None, error_text: str | None = None) -> None:
        """The failure committed; ``retry_at`` None: failed for good."""
        seconds = self._finish()
        if seconds is None:
            return
        exc = exc if exc is not None else self._error
        error_type = error_type_of(exc) if exc is not None else "queuert.HandlerError"
        span = self.span
        if span is not None:
            from opentelemetry.trace import Status, StatusCode

            attrs: dict[str, Any] = {a.OUTCOME: "failed", a.ERROR_TYPE: error_type}
            if retry_at is not None:
                attrs[a.RETRY_AT] = retry_at.isoformat()
            span.set_attributes(attrs)
            if exc is not None:
                span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, (error_text or str(exc or ""))[:200]))
            span.end()
        self._drop_continuation()
        metrics.attempt_failed(self.type_name, error_type, seconds, retry_at is not None)

    def lost(self, reason: str) -> None:
        """The job is no longer this worker's (lease taken, finished elsewhere)."""
        if self._finish() is None:
            return
        span = self.span
        if span is not None:
            from opentelemetry.trace import Status, StatusCode

            span.set_attributes({a.OUTCOME: "lost", a.LOST_REASON: reason, a.ERROR_TYPE: "queuert.LeaseLost"})
            span.set_status(Status(StatusCode.ERROR, f"lost: {reason}"))
            span.end()
        self._drop_continuation()
        metrics.lease_expired(self.type_name, reason)

    def released(self) -> None:
        """Given back at shutdown before or instead of an outcome."""
        if self._finish() is None:
            return
        if self.span is not None:
            self.span.set_attribute(a.OUTCOME, "released")
            self.span.end()
        self._drop_continuation()

    def _drop_continuation(self) -> None:
        # its continue_with never committed: the creation span is not exported
        self._continuation = None


def _blocker_links(job: Any) -> tuple[list[Any], list[tuple[str, int]]]:
    """Links to the blocker chains' traces (and to the span that completed
    each, when known), and (chain id, ns) of each completion."""
    items = job.raw_blockers  # parsed once, kept for the handler
    from opentelemetry.trace import Link

    links, resolved = [], []
    for b in items or ():
        chain_id = str(b.get("chain_id"))
        attrs: dict[str, Any] = {a.LINK_KIND: "blocker", a.BLOCKER_CHAIN_ID: chain_id}
        done = b.get("completed_at")
        if done:
            attrs[a.BLOCKER_COMPLETED_AT] = str(done)
            at = datetime.fromisoformat(str(done))
            resolved.append((chain_id, int(at.timestamp() * 1e9)))
        sc = span_context_of(b.get("trace_context"))
        if sc is not None:
            links.append(Link(sc, attrs))
        # the span that completed the blocker chain, when its completion
        # resolved this edge (migration 0008): possibly another process
        completion = span_context_of(b.get("resolved_trace_context"))
        if completion is not None:
            links.append(Link(completion, {a.LINK_KIND: "blocker_completion", a.BLOCKER_CHAIN_ID: chain_id}))
    return links, resolved


# per (type, chain type, worker id, mode): the span name and the attributes
# every attempt of that kind shares (an attempt adds its job's three)
_KINDS: dict[tuple[str, str, str, str], tuple[str, dict[str, Any]]] = {}
_CONSUMER: Any = None  # SpanKind.CONSUMER, imported once tracing is on


def _kind_of(type_name: str, chain_type: str, worker_id: str, mode: str) -> tuple[str, dict[str, Any]]:
    key = (type_name, chain_type, worker_id, mode)
    found = _KINDS.get(key)
    if found is None:
        found = _KINDS[key] = (
            f"process {type_name}",
            {
                a.SYSTEM: a.SYSTEM_NAME,
                a.OPERATION_TYPE: "process",
                a.DESTINATION: type_name,
                a.CHAIN_TYPE: chain_type,
                a.WORKER_ID: worker_id,
                a.WORKER_MODE: mode,
            },
        )
    return found


def attempt_started(job: Any, worker_id: str | None, mode: str) -> Attempt | _NoAttempt:
    """The span of the attempt the worker is about to run (claimed ``job``,
    a JobContext), counted in ``queuert.attempts.started``.

    Built for a worker running thousands of attempts a second: the span's
    attributes go in at its start in one dict (the shared part cached per
    type), the stored traceparent becomes a parent without the propagator,
    and the metric instruments are looked up once per attempt."""
    global _CONSUMER
    if inactive():  # no SDK: two global reads, not a tracer and meter lookup
        return NO_ATTEMPT
    t = tracer()
    ins = metrics.instruments()
    bound = None if ins is None else metrics.bound(ins, job.type_name, job.chain_type_name)
    if t is None:
        if bound is None:
            return NO_ATTEMPT
        bound.count_started()
        return Attempt(None, job, bound)
    if _CONSUMER is None:
        from opentelemetry.trace import SpanKind

        _CONSUMER = SpanKind.CONSUMER
    name, shared = _kind_of(job.type_name, job.chain_type_name, worker_id or "", mode)
    attributes = shared.copy()
    job_id = attributes[a.MESSAGE_ID] = str(job.id)
    # a chain's root is the chain: its id text once (UUID.__str__ is ~1 us)
    attributes[a.CHAIN_ID] = job_id if job.chain_id == job.id else str(job.chain_id)
    attributes[a.ATTEMPT] = job.attempt
    if job.attempt > 1 and job.last_attempt_error:
        # why the previous attempt ended: a failure, or a lease reap took it back
        attributes[a.LAST_ATTEMPT_ERROR] = str(job.last_attempt_error)[:500]
    raw = job._blockers_json
    if not raw or raw == "[]":  # the claim's answer for a job without blockers
        links: list[Any] | None = None
        resolved: list[tuple[str, int]] = []
    else:
        links, resolved = _blocker_links(job)
    span = t.start_span(
        name,
        context=context_of(job.trace_context) if job.trace_context else None,
        kind=_CONSUMER,
        attributes=attributes,
        links=links,
    )
    for chain_id, at_ns in resolved:
        span.add_event("queuert.blocker.resolved", {a.BLOCKER_CHAIN_ID: chain_id}, timestamp=at_ns)
    if bound is not None:
        bound.count_started()
    return Attempt(span, job, bound)
