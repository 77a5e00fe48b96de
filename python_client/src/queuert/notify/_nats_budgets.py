"""The NATS notifier's wake budgets: integers in a JetStream KV bucket,
changed by compare-and-set (:func:`cas`), so concurrent publishers and
workers never lose or double a unit."""

from __future__ import annotations

import time
from collections.abc import Callable

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

__all__ = ["Written", "add", "cas", "take"]

_CAS_ATTEMPTS = 20
#: keys whose last own write _cas remembers (one per job type in practice)
_REMEMBERED = 10_000
#: seconds a key is read first after a remembered revision missed (_cas)
_AFTER_MISS = 1.0


def add(n: int) -> Callable[[int], int | None]:
    return lambda units: units + n


def take(wanted: int, took: list[int]) -> Callable[[int], int | None]:
    """Up to ``wanted`` units; how many, appended to ``took`` (a retried
    compare-and-set appends again: the last is the one written)."""

    def change(units: int) -> int | None:
        if units <= 0:
            return None
        k = min(units, wanted)
        took.append(k)
        return units - k

    return change


class Written:
    """Per KV key, the (revision, units) of this notifier's own last write,
    and when a write at such a revision last failed (another writer came
    between: a worker took a unit)."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[int, int]] = {}
        self.missed: dict[str, float] = {}

    def usable(self, key: str) -> tuple[int, int] | None:
        known = self.values.get(key)
        if known is None or time.monotonic() - self.missed.get(key, float("-inf")) < _AFTER_MISS:
            return None
        return known

    def wrote(self, key: str, revision: int, units: int) -> None:
        if len(self.values) >= _REMEMBERED and key not in self.values:
            self.values.clear()
            self.missed.clear()
        self.values[key] = (revision, units)

    def miss(self, key: str) -> None:
        self.values.pop(key, None)
        self.missed[key] = time.monotonic()


async def cas(kv: KeyValue, key: str, change: Callable[[int], int | None], written: Written) -> bool:
    """Apply ``change`` to the integer under ``key`` with compare-and-set;
    ``change`` returns None to leave it. True when a change was written.

    ``written`` remembers the revision and value of this notifier's own
    last write of each key: when nobody changed the key since (a producer
    topping up a budget no worker took from: a burst of creation), the
    update at that revision succeeds at once, one JetStream round trip
    instead of a read and a write. Otherwise the server refuses it (a wrong
    last sequence, also for an entry that expired) and the read-then-write
    loop follows, as without it; after such a miss the key is read first
    for a second (workers take from it: a guess would cost a round trip
    each time). A remembered value that ``change`` would leave alone proves
    nothing (others may have topped it up): the key is read."""
    known = written.usable(key)
    if known is not None:
        new = change(known[1])
        if new is not None:
            try:
                written.wrote(key, await kv.update(key, str(new).encode(), last=known[0]), new)
                return True
            except KeyWrongLastSequenceError:
                written.miss(key)
    for _ in range(_CAS_ATTEMPTS):
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            entry = None
        units = int(entry.value or b"0") if entry is not None else 0
        new = change(units)
        if new is None:
            return False
        try:
            if entry is None:
                revision = await kv.create(key, str(new).encode())
            else:
                revision = await kv.update(key, str(new).encode(), last=entry.revision)
        except KeyWrongLastSequenceError:
            continue  # someone else changed it: read again
        written.wrote(key, revision, new)
        return True
    raise RuntimeError(f"wake budget {key!r}: too much contention")
