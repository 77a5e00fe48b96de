"""The client's operations with telemetry on (:mod:`queuert.telemetry`).

:mod:`queuert._operations` asks :mod:`queuert.telemetry.tracing` first; only
when a tracer or meter is configured does it build these variants, so the
plain calls pay one check. Each wraps the same statement: the creation span
starts before it (its traceparent is what the row stores) and learns what
was created from its rows; a settle span is a child of the settled job's
creation span, which a first statement reads (the job's trace_context).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._instructions import Call, Query
from ._records import StartedChain
from ._started_rows import started_traced_rows
from .telemetry.tracing import Creation, Settlement, creating, settling
from .telemetry.traceparent import traceparent_of

__all__ = [
    "begin_settlement",
    "items_with_creations",
    "traced_start_many_call",
    "traced_start_call",
]


def traced_start_call(
    creation: Creation,
    text: str,
    params: list[Any],
    finish: Callable[[list[StartedChain]], StartedChain],
    lite: Callable[[Any], tuple[StartedChain, str | None]],
) -> Call[StartedChain]:
    """start_chain reading the root's trace_context too (``text`` selects
    it; on SQLite ``lite`` reads it)."""

    def finish_traced(rows: list[tuple[StartedChain, str | None]]) -> StartedChain:
        started, existing = rows[0]
        _report(creation, started, existing)
        return finish([started])

    def lite_traced(conn: Any) -> StartedChain:
        started, existing = lite(conn)
        _report(creation, started, existing)
        return started

    return Call(Query(text, params, started_traced_rows), finish_traced, lite_traced)


def _report(creation: Creation, started: StartedChain, existing: str | None) -> None:
    creation.created(
        started.id, started.chain_id, started.type_name, started.status, started.deduplicated, existing
    )


def items_with_creations(
    payload: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[Creation]] | None:
    """start_chains: a creation per item and the items carrying their
    traceparents (copies: the caller's item dicts stay as they were)."""
    creations = []
    items = []
    for item in payload:
        creation = creating(
            item["type_name"], item.get("trace_context"), "start_chains", blockers=item.get("blockers")
        )
        if creation is None:
            return None
        creations.append(creation)
        if creation.traceparent is not None:
            item = {**item, "trace_context": creation.traceparent}
        items.append(item)
    return items, creations


def traced_start_many_call(
    creations: list[Creation],
    text: str,
    params: Sequence[Any],
    finish: Callable[[list[StartedChain]], list[StartedChain]],
    lite: Callable[[Any], list[tuple[StartedChain, str | None]]],
) -> Call[list[StartedChain]]:
    """start_chains reading each item's trace_context too (``text``
    selects it; on SQLite ``lite`` reads it): a deduplicated item's is the
    chain it resolved to, which its span links to."""

    def finish_traced(rows: list[tuple[StartedChain, str | None]]) -> list[StartedChain]:
        for creation, (chain, existing) in zip(creations, rows):
            _report(creation, chain, existing)
        return finish([chain for chain, _ in rows])

    def lite_traced(conn: Any) -> list[StartedChain]:
        pairs = lite(conn)
        for creation, (chain, existing) in zip(creations, pairs):
            _report(creation, chain, existing)
        return finish([chain for chain, _ in pairs])

    return Call(Query(text, params, started_traced_rows), finish_traced, lite_traced)


def begin_settlement(
    current: dict[str, Any], operation: str, next_type: str | None, next_trace_context: str | None
) -> tuple[Settlement | None, Creation | None]:
    """The settle span of the current job (a probe row of
    ``_statements.current_job``) and, for a continuation, the next job's
    creation span (its child, linked to the job it continues)."""
    settlement = settling(current["type_name"], current["chain_type_name"], current["trace_context"], operation)
    if settlement is None or next_type is None:
        return settlement, None
    parent = traceparent_of(settlement.span) if settlement.span is not None else next_trace_context
    creation = creating(
        next_type, parent, "continue_with", continues=current["trace_context"], chain_id=None
    )
    return settlement, creation
