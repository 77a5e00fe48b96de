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
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from . import attributes as a
from . import metrics
from .switch import meter, tracer
from .tracing import Creation, creating
from .traceparent import context_of, span_context_of, traceparent_of

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

    def completed(self, chain_completed: bool = False) -> None:
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
        "span",
        "started",
        "type_name",
    )

    def __init__(self, span: Any, job: Any):
        self.span = span
        self.type_name: str = job.type_name
        self.chain_type: str = job.chain_type_name
        self.chain_id = job.chain_id
        self.created_at: datetime | None = job.created_at
        self.job_trace_context: str | None = job.trace_context
        self.started = time.monotonic()
        self._continuation: Creation | None = None
        self._done = False
        self._error: BaseException | None = None

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The attempt's span as the current span (the handler's own spans,
        and a continuation it starts, become its children)."""
        if self.span is None:
            yield
            return
        from opentelemetry import trace

        with trace.use_span(self.span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            yield

    def attach(self) -> None:
        """Make the span current in the running context for good: for a
        context of the attempt's own (the worker runs an async handler in a
        copied context, one per task)."""
        if self.span is not None:
            from opentelemetry import context, trace

            context.attach(trace.set_span_in_context(self.span))

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

    def _finish(self) -> float | None:
        """The attempt's seconds, the first time only."""
        if self._done:
            return None
        self._done = True
        return time.monotonic() - self.started

    def completed(self, chain_completed: bool = False) -> None:
        """The job's completion committed."""
        seconds = self._finish()
        if seconds is None:
            return
        span = self.span
        if span is not None:
            span.set_attributes({a.OUTCOME: "completed", a.CHAIN_COMPLETED: chain_completed})
            span.end()
        metrics.attempt_finished(self.type_name, "completed", seconds)
        if self.created_at is not None:
            metrics.job_completed(self.type_name, self.created_at, datetime.now(timezone.utc))
        if chain_completed:
            metrics.chain_completed(self.chain_type, self.chain_id)

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
        metrics.attempt_finished(self.type_name, "continued", seconds)
        if self.created_at is not None:
            metrics.job_completed(self.type_name, self.created_at, datetime.now(timezone.utc))

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
    """Links to the blocker chains' traces, and (chain id, ns) of each completion."""
    raw = job._blockers_json
    if not raw or raw == "[]":  # the claim's answer for a job without blockers
        return [], []
    items = job.raw_blockers  # parsed once, kept for the handler
    from opentelemetry.trace import Link

    links, resolved = [], []
    for b in items or ():
        attrs: dict[str, Any] = {a.LINK_KIND: "blocker", a.BLOCKER_CHAIN_ID: str(b.get("chain_id"))}
        done = b.get("completed_at")
        if done:
            attrs[a.BLOCKER_COMPLETED_AT] = str(done)
            at = datetime.fromisoformat(str(done))
            resolved.append((str(b.get("chain_id")), int(at.timestamp() * 1e9)))
        sc = span_context_of(b.get("trace_context"))
        if sc is not None:
            links.append(Link(sc, attrs))
    return links, resolved


def attempt_started(job: Any, worker_id: str | None, mode: str) -> Attempt | _NoAttempt:
    """The span of the attempt the worker is about to run (claimed ``job``,
    a JobContext), counted in ``queuert.attempts.started``."""
    t = tracer()
    if t is None:
        if meter() is None:
            return NO_ATTEMPT
        metrics.attempt_started(job.type_name)
        return Attempt(None, job)
    from opentelemetry.trace import SpanKind

    links, resolved = _blocker_links(job)
    span = t.start_span(
        f"process {job.type_name}",
        context=context_of(job.trace_context),
        kind=SpanKind.CONSUMER,
        attributes={
            a.SYSTEM: a.SYSTEM_NAME,
            a.OPERATION_TYPE: "process",
            a.DESTINATION: job.type_name,
            a.MESSAGE_ID: str(job.id),
            a.CHAIN_ID: str(job.chain_id),
            a.CHAIN_TYPE: job.chain_type_name,
            a.ATTEMPT: job.attempt,
            a.WORKER_ID: worker_id or "",
            a.WORKER_MODE: mode,
        },
        links=links,
    )
    if job.attempt > 1 and job.last_attempt_error:
        # why the previous attempt ended: a failure, or a lease reap took it back
        span.set_attribute(a.LAST_ATTEMPT_ERROR, str(job.last_attempt_error)[:500])
    for chain_id, at_ns in resolved:
        span.add_event("queuert.blocker.resolved", {a.BLOCKER_CHAIN_ID: chain_id}, timestamp=at_ns)
    metrics.attempt_started(job.type_name)
    return Attempt(span, job)
