"""Values at the boundary between Python and the SQLite engine.

The tables store times as integer microseconds since the Unix epoch (UTC),
durations as integer microseconds, ids as UUID text and payloads as JSON
text: exact to compare and order in SQL. This module converts them to and
from aware datetimes, timedeltas, UUIDs and Python values, reads the clock
and makes new job ids (SQLite has neither a transaction-fixed ``now()`` nor a
UUID generator).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID, SafeUUID

import pydantic_core

from ._errors import engine_error

__all__ = [
    "EPOCH",
    "Json",
    "MAX_DURATION_US",
    "frozen_clock",
    "from_json",
    "ids_json",
    "from_us",
    "new_job_id",
    "new_job_ids",
    "new_job_id_batch",
    "new_job_uuid",
    "now_us",
    "to_json",
    "to_us",
    "us_of",
    "uuid_from_text",
    "uuid_of",
]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
#: The engine's limit on every duration: 1,000 years as PostgreSQL compares
#: intervals (12,000 months of 30 days), so both backends refuse the same.
MAX_DURATION_US = 360_000 * 86_400_000_000

# Tests (and only tests) freeze the engine's clock, the way a PostgreSQL
# test sees one now() for its whole transaction.
_frozen: ContextVar[int | None] = ContextVar("queuert_sqlite_frozen_clock", default=None)


def now_us() -> int:
    """The engine's clock in microseconds since the epoch.

    Read once per engine call and used for every statement of that call, as
    PostgreSQL's ``now()`` is fixed for a transaction.
    """
    frozen = _frozen.get()
    if frozen is not None:
        return frozen
    return time.time_ns() // 1000


@contextmanager
def frozen_clock(at: datetime) -> Iterator[None]:
    """Within the block every engine call in this context sees ``at`` as now."""
    token = _frozen.set(to_us(at))
    try:
        yield
    finally:
        _frozen.reset(token)


def to_us(value: datetime) -> int:
    """An aware datetime (a naive one is taken as UTC) as epoch microseconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - EPOCH) // _US


def from_us(value: int | None) -> datetime | None:
    return None if value is None else EPOCH + timedelta(microseconds=value)


def us_of(value: timedelta) -> int:
    """A duration in whole microseconds."""
    return value // _US


def uuid_of(value: str | None) -> UUID | None:
    """A stored id (UUID text) as a UUID."""
    return None if value is None else uuid_from_text(value)


def uuid_from_text(value: str) -> UUID:
    """A stored id, which the engine always writes in the canonical form,
    as a UUID without UUID()'s parsing (claim makes two per job)."""
    return _uuid_of_int(int(value.replace("-", ""), 16))


def _uuid_of_int(value: int) -> UUID:
    """UUID(int=value) without its checks: the callers' values are ids
    the engine wrote or made, always 128 bits."""
    job_id: UUID = _new_object(UUID)
    _set_int(job_id, value)
    _set_is_safe(job_id, _SAFE_UNKNOWN)
    return job_id


class Json(str):
    """JSON text that the caller has serialised already (the client does,
    with pydantic's rules, as for PostgreSQL): stored as it is."""

    __slots__ = ()


_to_json = pydantic_core.to_json


def _non_finite(constant: str) -> None:
    raise engine_error("QU006", f"payload is not JSON-serialisable: {constant} is not a JSON number")


def to_json(value: Any) -> str | None:
    """A payload as compact JSON text, written by pydantic's rules as the
    PostgreSQL client writes it (datetimes, UUIDs, dataclasses and models
    too); ``None`` stays SQL NULL (as the PostgreSQL client sends no jsonb
    for None). NaN and infinities are refused: JSON has no such numbers."""
    if value is None:
        return None
    if type(value) is Json:
        return value
    try:
        out = _to_json(value)
    except pydantic_core.PydanticSerializationError as e:
        raise engine_error("QU006", f"payload is not JSON-serialisable: {e}") from e
    if b"NaN" in out or b"Infinity" in out:  # as a number, or only inside a string?
        json.loads(out, parse_constant=_non_finite)
    return out.decode()


_from_json = pydantic_core.from_json


def from_json(text: str | None) -> Any:
    """Stored JSON text as Python values (pydantic_core's parser: a third
    of json.loads' time)."""
    return None if text is None else _from_json(text)


def new_job_ids() -> tuple[UUID, str]:
    """A new job id as a UUID and as the stored text: version 7, 48 bits of
    Unix milliseconds, then random bits, so new ids are increasing and land
    at the right edge of the id index instead of on a random page."""
    # Python's random (reseeded in every forked child), not os.urandom: a
    # system call per id cost more than the INSERT; ids must be unique, not
    # secret. Version 7 in bits 76-79, RFC 4122 variant (10) in bits 62-63.
    value = ((time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF) << 80 | _random_bits(80)) & _VERSION_MASK | _VERSION_7
    # Built without UUID(int=...)'s checks and str()'s formatting: a batch
    # makes one per item, and those were a third of its Python time.
    h = "%032x" % value
    return _uuid_of_int(value), f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_job_id_batch(count: int) -> tuple[list[UUID], list[str]]:
    """``count`` new job ids (new_job_ids' kind) as UUIDs and as stored
    texts, for one batch: one clock read for all (they share the batch's
    millisecond, as they share its created_at) and each step a list pass,
    about half the time of ``count`` calls of new_job_ids."""
    prefix = (time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF) << 80 | _VERSION_7
    mask, bits = _VERSION_MASK, _random_bits
    values = [bits(80) & mask | prefix for _ in range(count)]
    texts = [f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in ["%032x" % v for v in values]]
    return list(map(_uuid_of_int, values)), texts


def new_job_uuid() -> UUID:
    """A new job id (new_job_ids) as a UUID."""
    return new_job_ids()[0]


_random_bits = random.getrandbits
_new_object = object.__new__
# UUID's slots written through their descriptors: what object.__setattr__
# ends up calling, without its attribute lookup (0.3 of 0.6 us per UUID)
_set_int = UUID.__dict__["int"].__set__
_set_is_safe = UUID.__dict__["is_safe"].__set__
_SAFE_UNKNOWN = SafeUUID.unknown
_VERSION_MASK = ~(0xF << 76) & ~(0x3 << 62) & (2**128 - 1)
_VERSION_7 = 0x7 << 76 | 0x2 << 62


def new_job_id() -> str:
    """A new job id (new_job_ids) as the stored text."""
    return new_job_ids()[1]


def ids_json(ids: Iterable[str]) -> str:
    """A list of id texts as the JSON array the statements read with json_each."""
    return json.dumps(list(ids))
