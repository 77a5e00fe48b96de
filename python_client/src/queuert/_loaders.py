"""Result loaders the client registers on its own cursors only.

A batch's rows repeat their timestamps: in ``start_chains``' common path
every row's ``created_at`` and ``scheduled_at`` are the statement's
``now()``. Parsing ``timestamptz`` text into an aware datetime is the
dearest part of loading those rows (about 0.5 us a value, twice a row:
more than the rest of the row), so :func:`repeat_timestamps` wraps the
connection's own timestamptz loader in one that hands back the previous
value when the text repeats. The result is the same object psycopg would
have built (datetimes are immutable), made once per distinct text.
"""

from __future__ import annotations

from typing import Any

from psycopg import postgres
from psycopg.adapt import Buffer, Loader
from psycopg.pq import Format

__all__ = ["repeat_timestamps"]

_TIMESTAMPTZ = postgres.types["timestamptz"].oid

# one wrapper class per wrapped loader class (Django registers its own)
_wrappers: dict[type[Loader], type[Loader]] = {}


def _repeating(base: type[Loader]) -> type[Loader]:
    class RepeatingLoader(Loader):
        def __init__(self, oid: int, context: Any = None) -> None:
            super().__init__(oid, context)
            self._parse = base(oid, context).load
            self._last_text: bytes | None = None
            self._last: Any = None

        def load(self, data: Buffer) -> Any:
            if data == self._last_text:
                return self._last
            value = self._parse(data)
            self._last_text = bytes(data)
            self._last = value
            return value

    RepeatingLoader.__qualname__ = f"Repeating{base.__name__}"
    return RepeatingLoader


def repeat_timestamps(cursor: Any) -> None:
    """Make ``cursor`` reuse the last timestamptz value when the text
    repeats (a ``Query.prepare`` hook)."""
    adapters = cursor.adapters
    base = adapters.get_loader(_TIMESTAMPTZ, Format.TEXT)
    if base is None:  # pragma: no cover - psycopg always has one
        return
    wrapper = _wrappers.get(base)
    if wrapper is None:
        wrapper = _wrappers[base] = _repeating(base)
    adapters.register_loader(_TIMESTAMPTZ, wrapper)
