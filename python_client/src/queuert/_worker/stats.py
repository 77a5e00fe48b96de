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
    #: claim statements sent, the ones that found nothing included
    claim_calls: int = 0
    #: job_ready wake-ups of an idle worker that took a unit of the type's
    #: wake budget (then claimed) / found it spent (then slept on)
    wake_hints_taken: int = 0
    wake_hints_declined: int = 0
    #: deadlocks and serialization failures met by an acknowledgement and
    #: retried: a staged flush (or one acknowledgement) sent again, an
    #: atomic attempt rolled back whole (claim included, the attempt
    #: unspent) to run again
    conflicts_retried: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)
