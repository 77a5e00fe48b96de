"""Counters of one worker (``queuert.WorkerStats``)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class WorkerStats:
    """Counters of one worker (cumulative over runs)."""

    claimed: int = 0
    completed: int = 0
    continued: int = 0
    failed: int = 0
    lost: int = 0
    released: int = 0
    flushes: int = 0
    reconnects: int = 0
    reaped: int = 0
    #: the most jobs one claim returned (staged mode): above ``concurrency``
    #: when claims take jobs ahead (``prefetch``)
    largest_claim: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)
