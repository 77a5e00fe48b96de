"""W3C ``traceparent`` text, as stored in ``job.trace_context`` and
``job.chain_trace_context``: written from a span, read back as a parent
context or a link target. Only the version-00 form is written; reading
accepts what the W3C propagator accepts and ignores anything else (a
trace_context an application stored before tracing was on is no reason to
fail a job)."""

from __future__ import annotations

from typing import Any

__all__ = ["context_of", "span_context_of", "traceparent_of"]


def traceparent_of(span: Any) -> str:
    """The span's traceparent, ``00-<trace id>-<span id>-<flags>``."""
    sc = span.get_span_context()
    return f"00-{sc.trace_id:032x}-{sc.span_id:016x}-{int(sc.trace_flags):02x}"


def span_context_of(traceparent: str | None) -> Any:
    """A remote SpanContext from a stored traceparent, or None."""
    if not traceparent:
        return None
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    ctx = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    sc = trace.get_current_span(ctx).get_span_context()
    return sc if sc.is_valid else None


def context_of(traceparent: str | None) -> Any:
    """A Context whose parent is the stored traceparent, or None (then a new
    span takes the caller's current span as its parent)."""
    sc = span_context_of(traceparent)
    if sc is None:
        return None
    from opentelemetry import trace

    return trace.set_span_in_context(trace.NonRecordingSpan(sc))
