"""The other side of a fan-in: the span a blocker chain's completion emits
for each job that waited on it (``resolve <dependent type>``).

A job that waits on blocker chains stores, on each edge, the traceparent of
its creation span (``job_blocker.trace_context``, migration 0008). Whoever
completes a blocker chain, a worker's attempt or ``complete_chain``, hands
the engine the traceparent of its own span: the engine writes it on every
edge the completion resolves (``resolved_trace_context``, which the
dependent's claim hands out, so the dependent's ``process`` span links to
it) and lists the waiting jobs (``dependents``). For each of them the
completing process then emits a ``resolve`` span here: a child of its
attempt (or settle) span, in the blocker chain's trace, linked to the
waiting job's creation span, in the waiting chain's trace. So the wait is
visible from both traces, whichever processes ran the two chains.
"""

from __future__ import annotations

from typing import Any

from . import attributes as a
from .switch import tracer
from .traceparent import span_context_of

__all__ = ["report_resolved"]


def report_resolved(
    parent: Any, blocker_chain_id: Any, dependents: list[dict[str, Any]] | None, at_ns: int | None = None
) -> None:
    """One ``resolve <type>`` span per job in ``dependents`` (the engine's
    list for a completed chain), children of ``parent`` (a span), at
    ``at_ns`` (the completion's time; default now)."""
    if not dependents or parent is None:
        return
    t = tracer()
    if t is None:
        return
    from opentelemetry import trace
    from opentelemetry.trace import Link

    context = trace.set_span_in_context(parent)
    chain = str(blocker_chain_id)
    for d in dependents:
        type_name = str(d.get("type_name"))
        waiting = span_context_of(d.get("trace_context"))
        links = [Link(waiting, {a.LINK_KIND: "waiting"})] if waiting is not None else []
        span = t.start_span(
            f"resolve {type_name}",
            context=context,
            attributes={
                a.SYSTEM: a.SYSTEM_NAME,
                a.OPERATION_NAME: "resolve",
                a.DESTINATION: type_name,
                a.MESSAGE_ID: str(d.get("job_id")),
                a.BLOCKER_CHAIN_ID: chain,
                a.DEPENDENT_READY: bool(d.get("pending")),
            },
            links=links,
            start_time=at_ns,
        )
        span.end(end_time=at_ns)
