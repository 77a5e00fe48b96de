"""The client's spans: ``create <type>`` per job a call creates (PRODUCER),
``settle <type>`` per job completed from outside a worker (CLIENT).

A creation span starts before the statement, so that its traceparent can be
stored on the row (``job.trace_context``; the engine copies a root's into
``chain_trace_context`` and continuations inherit it). Its parent is the
``trace_context`` the caller passed, if any, else the caller's active span.
After the statement the span learns what was created and is ended, with the
metrics counted, when the caller's transaction commits (:mod:`.deferral`); on
rollback it ends with an error status and ``queuert.rolled_back``, and no
metric counts it. A statement that raises created nothing: its spans are
never ended, so they are never exported (the error belongs to the caller's
span).

Every function returns None when tracing and metrics are both inactive
(:mod:`.switch`), and the client then runs exactly as without telemetry.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from . import attributes as a
from . import metrics
from .deferral import after_transaction
from .resolution import report_resolved
from .switch import meter, tracer
from .traceparent import context_of, span_context_of, traceparent_of

__all__ = ["Creation", "Settlement", "active", "creating", "settling"]


def active() -> bool:
    """Whether a tracer or a meter is configured (and telemetry is on)."""
    return tracer() is not None or meter() is not None


def _end_rolled_back(span: Any, ended_at: int | None, message: str) -> None:
    """A client span whose transaction rolled back: an error, marked so."""
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute(a.ROLLED_BACK, True)
    span.set_status(Status(StatusCode.ERROR, message))
    span.end(end_time=ended_at)


class Creation:
    """One job being created by a client call (or a worker's continuation)."""

    __slots__ = ("_ended_at", "counts_chain", "span", "traceparent", "type_name")

    def __init__(self, span: Any, type_name: str, trace_context: str | None, counts_chain: bool):
        self.span = span
        self.type_name = type_name
        self.counts_chain = counts_chain
        # what the row stores: our span's, else (metrics only) what was given
        self.traceparent = traceparent_of(span) if span is not None else trace_context
        self._ended_at: int | None = None

    def created(
        self,
        job_id: UUID,
        chain_id: UUID,
        chain_type: str,
        status: str,
        deduplicated: bool,
        existing_trace_context: str | None = None,
    ) -> None:
        """The statement returned: say what it made, end at commit."""
        span = self.span
        if span is not None:
            self._ended_at = time.time_ns()
            span.set_attribute(a.MESSAGE_ID, str(job_id))
            span.set_attribute(a.CHAIN_ID, str(chain_id))
            span.set_attribute(a.CHAIN_TYPE, chain_type)
            span.set_attribute(a.JOB_STATUS, status)
            span.set_attribute(a.DEDUPLICATED, deduplicated)
            if deduplicated:
                # not new work: point at the chain the start resolved to
                existing = span_context_of(existing_trace_context)
                if existing is not None:
                    span.add_link(existing, {a.LINK_KIND: "deduplicated_to", a.CHAIN_ID: str(chain_id)})
        fresh = not deduplicated
        after_transaction(lambda: self._commit(fresh), self._rollback)

    def _commit(self, fresh: bool) -> None:
        if self.span is not None:
            self.span.end(end_time=self._ended_at)
        if fresh:
            metrics.job_created(self.type_name, self.counts_chain)

    def _rollback(self) -> None:
        _end_rolled_back(self.span, self._ended_at, "the transaction rolled back: nothing was created")


def creating(
    type_name: str,
    trace_context: str | None,
    operation: str,
    *,
    blockers: Any = None,
    continues: str | None = None,
    chain_id: UUID | None = None,
) -> Creation | None:
    """Start the creation span of one job (None when telemetry is inactive).

    ``continues``: the traceparent of the job a continuation continues (a
    link); ``chain_id``: the chain, when known before the statement.
    """
    t = tracer()
    if t is None:
        if meter() is None:
            return None
        return Creation(None, type_name, trace_context, operation != "continue_with")
    from opentelemetry.trace import Link, SpanKind

    attributes: dict[str, Any] = {
        a.SYSTEM: a.SYSTEM_NAME,
        a.OPERATION_TYPE: "create",
        a.OPERATION_NAME: operation,
        a.DESTINATION: type_name,
    }
    if chain_id is not None:
        attributes[a.CHAIN_ID] = str(chain_id)
    if blockers:
        attributes[a.BLOCKERS] = [str(b) for b in blockers]
    links = []
    previous = span_context_of(continues)
    if previous is not None:
        links.append(Link(previous, {a.LINK_KIND: "continues"}))
    span = t.start_span(
        f"create {type_name}",
        context=context_of(trace_context),
        kind=SpanKind.PRODUCER,
        attributes=attributes,
        links=links,
    )
    return Creation(span, type_name, trace_context, operation != "continue_with")


class Settlement:
    """A job completed (or continued) from outside a worker: ``complete_chain``."""

    __slots__ = ("_ended_at", "chain_type", "span", "type_name")

    def __init__(self, span: Any, type_name: str, chain_type: str):
        self.span = span
        self.type_name = type_name
        self.chain_type = chain_type
        self._ended_at: int | None = None

    def traceparent(self) -> str | None:
        """The settle span's traceparent, for ``complete`` to write on the
        blocker edges the completion resolves (None without a span)."""
        return traceparent_of(self.span) if self.span is not None else None

    def settled(
        self, job_id: UUID, chain_id: UUID, chain_completed: bool, outcome: str, dependents: Any = None
    ) -> None:
        """The statement returned; ``dependents``: the jobs that waited on
        the completed chain (resolve spans at commit)."""
        span = self.span
        if span is not None:
            self._ended_at = time.time_ns()
            span.set_attribute(a.MESSAGE_ID, str(job_id))
            span.set_attribute(a.CHAIN_ID, str(chain_id))
            span.set_attribute(a.OUTCOME, outcome)
            span.set_attribute(a.CHAIN_COMPLETED, chain_completed)
            if chain_completed:
                span.add_event("queuert.chain.completed", {a.CHAIN_ID: str(chain_id)})

        def commit() -> None:
            if span is not None:
                report_resolved(span, chain_id, dependents, self._ended_at)
                span.end(end_time=self._ended_at)
            if chain_completed:
                metrics.chain_completed(self.chain_type, chain_id)

        after_transaction(commit, self._rollback)

    def _rollback(self) -> None:
        _end_rolled_back(self.span, self._ended_at, "the transaction rolled back")


def settling(
    type_name: str, chain_type: str, job_trace_context: str | None, operation: str
) -> Settlement | None:
    """Start the settle span of a job completed from outside a worker: a
    child of the job's creation span (so it is part of the chain's trace),
    linked to the caller's active span."""
    t = tracer()
    if t is None:
        if meter() is None:
            return None
        return Settlement(None, type_name, chain_type)
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind

    links = []
    caller = trace.get_current_span().get_span_context()
    job_span = span_context_of(job_trace_context)
    parent = context_of(job_trace_context)
    if caller.is_valid and job_span is not None and caller.trace_id != job_span.trace_id:
        # the request that settled it lives in another trace: point at it
        links.append(Link(caller, {a.LINK_KIND: "caller"}))
    span = t.start_span(
        f"settle {type_name}",
        context=parent,
        kind=SpanKind.CLIENT,
        attributes={
            a.SYSTEM: a.SYSTEM_NAME,
            a.OPERATION_TYPE: "settle",
            a.OPERATION_NAME: operation,
            a.DESTINATION: type_name,
        },
        links=links,
    )
    return Settlement(span, type_name, chain_type)
