"""The rows of ``start_chain(s)`` as :class:`~queuert.StartedChain` objects:
the client's hot path (one row per start, a thousand per batch).

The statements select the two timestamps as text (``_statements``), and
:func:`started_rows` parses them here, each distinct text once per call.
In ``start_chains``' common path every row's ``created_at`` and
``scheduled_at`` are the statement's ``now()``, and a single start's two are
usually equal; parsing ``timestamptz`` text into an aware datetime in the
session's time zone is the dearest part of loading a row (psycopg's C loader
spends more on one value than on the rest of the row, measured with
callgrind: benchmarks/README.md, create-client). The parser is the loader
the cursor would have used for the column (the connection's, or one a
framework registered, as Django does), so the values are the ones psycopg
would have built; a repeated text gets the same object (datetimes are
immutable).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from psycopg import postgres
from psycopg.pq import Format
from psycopg.rows import RowMaker

from ._records import STARTED_CHAIN_SETTERS, StartedChain

_new = object.__new__
(
    _set_id, _set_chain_id, _set_type_name, _set_status, _set_scheduled_at, _set_created_at,
    _set_deduplicated,
) = STARTED_CHAIN_SETTERS

__all__ = ["started_rows", "started_traced_rows"]

_TIMESTAMPTZ = postgres.types["timestamptz"].oid
_TEXT = Format.TEXT


def _timestamp_parser(cursor: Any) -> Callable[[bytes], datetime]:
    loader = cursor.adapters.get_loader(_TIMESTAMPTZ, _TEXT)
    return loader(_TIMESTAMPTZ, cursor).load  # type: ignore[no-any-return]


def started_rows(cursor: Any) -> RowMaker[StartedChain]:
    """Row factory for ``(id, type_name, status, scheduled_at::text,
    created_at::text, deduplicated)``; a chain is its root job, so
    ``chain_id`` is ``id``."""
    parse = _timestamp_parser(cursor)
    created_text: str | None = None
    created: datetime | None = None
    scheduled_text: str | None = None
    scheduled: datetime | None = None

    def make(values: Sequence[Any]) -> StartedChain:
        nonlocal created_text, created, scheduled_text, scheduled
        text = values[4]
        if text != created_text:
            created = None if text is None else parse(text.encode())
            created_text = text
        text = values[3]
        if text == created_text:
            at = created
        else:
            if text != scheduled_text:
                scheduled = None if text is None else parse(text.encode())
                scheduled_text = text
            at = scheduled
        # slot by slot (StartedChain has no instance dict: _records)
        chain: StartedChain = _new(StartedChain)
        _set_id(chain, values[0])
        _set_chain_id(chain, values[0])
        _set_type_name(chain, values[1])
        _set_status(chain, values[2])
        _set_scheduled_at(chain, at)
        _set_created_at(chain, created)
        _set_deduplicated(chain, values[5])
        return chain

    return make


def started_traced_rows(cursor: Any) -> RowMaker[tuple[StartedChain, str | None]]:
    """Row factory for the traced statements: (StartedChain, the root's
    trace_context: the chain's a deduplicated start resolved to)."""
    make = started_rows(cursor)

    def make_traced(values: Sequence[Any]) -> tuple[StartedChain, str | None]:
        return make(values), values[6]

    return make_traced
