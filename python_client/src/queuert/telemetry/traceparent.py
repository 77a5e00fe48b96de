"""W3C ``traceparent`` text, as stored in ``job.trace_context`` and
``job.chain_trace_context``: written from a span, read back as a parent
context or a link target. Only the version-00 form is written; reading
accepts any version's first four fields as the W3C rules say and ignores
anything else (a trace_context an application stored before tracing was on
is no reason to fail a job). Parsed here rather than through the
propagator: a worker reads one per attempt, and the propagator's generic
path cost a tenth of an attempt's telemetry."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["attach_span", "context_of", "current_with", "detach", "span_context_of", "traceparent_of"]

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")


# the two hex digits of each trace-flags byte: an int subclass (TraceFlags)
# formatted through int() and a format spec cost a worker about a
# microsecond per attempt, as did f-string hex of the 128-bit trace id
# ("%x" is the faster path for large ints)
_FLAGS = tuple(f"{i:02x}" for i in range(256))


def traceparent_of(span: Any) -> str:
    """The span's traceparent, ``00-<trace id>-<span id>-<flags>``."""
    sc = span.get_span_context()
    return "00-%032x-%016x-%s" % (sc.trace_id, sc.span_id, _FLAGS[sc.trace_flags & 0xFF])


def span_context_of(traceparent: str | None) -> Any:
    """A remote SpanContext from a stored traceparent, or None."""
    if not traceparent:
        return None
    m = _TRACEPARENT.fullmatch(traceparent.strip())
    if m is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = m.groups()
    # version ff is invalid; version 00 has exactly four fields
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    api = _API or _load()
    return api.SpanContext(trace_id, span_id, is_remote=True, trace_flags=api.TraceFlags(int(flags_hex, 16)))


def context_of(traceparent: str | None) -> Any:
    """A Context whose parent is the stored traceparent, or None (then a new
    span takes the caller's current span as its parent)."""
    sc = span_context_of(traceparent)
    if sc is None:
        return None
    api = _API or _load()
    return api.set_span_in_context(api.NonRecordingSpan(sc))


def current_with(span: Any) -> None:
    """Make ``span`` the current span of the running context, for good (no
    token kept: for a context of the span's own, such as a task's copy)."""
    api = _API or _load()
    api.attach(api.set_span_in_context(span))


def attach_span(span: Any) -> Any:
    """Make ``span`` current; returns the token for :func:`detach`."""
    api = _API or _load()
    return api.attach(api.set_span_in_context(span))


def detach(token: Any) -> None:
    api = _API or _load()
    api.detach(token)


# opentelemetry.trace (and context.attach), imported once, on first use: an
# import statement in a function costs a lookup on every call, and these run
# once or twice per attempt
_API: Any = None


def _load() -> Any:
    global _API
    from types import SimpleNamespace

    from opentelemetry import context, trace

    _API = SimpleNamespace(
        SpanContext=trace.SpanContext,
        TraceFlags=trace.TraceFlags,
        NonRecordingSpan=trace.NonRecordingSpan,
        set_span_in_context=trace.set_span_in_context,
        attach=context.attach,
        detach=context.detach,
    )
    return _API
