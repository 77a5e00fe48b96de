"""Claim-ahead (staged mode): how many jobs a claim may take beyond the
free slots, the jobs so held (started in the engine's claim order), and
giving them back when handlers turn slow."""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Iterator
from typing import Any, Literal

from queuert._worker import job_state as st
from queuert._worker.execution import claim_order
from queuert._worker.store import ClaimRow
from queuert.job import JobContext


class ClaimAhead:
    """A fixed number, or "auto": as many jobs as make ``window`` seconds of
    expected work for all slots, from an EWMA of handler durations (none
    until the first handler finished), at most ``most``.

    With every slot busy a worker finishes ``concurrency / d`` jobs a second
    (``d``: the EWMA), so holding ``ceil(concurrency * window / d)`` jobs
    keeps about ``window`` seconds of work queued locally: a no-op handler
    gets ``most`` (big batches per commit), a 1 s handler at concurrency 10
    gets 1."""

    def __init__(self, concurrency: int, prefetch: int | Literal["auto"], window: float, most: int | None) -> None:
        self.auto = prefetch == "auto"
        self.fixed = 0 if prefetch == "auto" else int(prefetch)
        self.window = window
        self.most = most if most is not None else max(200, 10 * concurrency)
        self.work = concurrency * window  # slot-seconds
        self.duration: float | None = None  # EWMA of handler durations, seconds
        # when a handler last started or finished
        self.last_progress = time.monotonic()

    @property
    def largest(self) -> int:
        """The most it may ever allow."""
        return self.most if self.auto else self.fixed

    def extra(self) -> int:
        """Jobs a claim may take beyond the free slots now."""
        if not self.auto:
            return self.fixed
        d = self.duration
        if d is None:
            return 0
        if d * self.most <= self.work:
            return self.most
        return min(self.most, math.ceil(self.work / d))

    def handler_started(self) -> None:
        self.last_progress = time.monotonic()

    def handler_finished(self, took: float) -> None:
        self.last_progress = time.monotonic()
        d = self.duration
        self.duration = took if d is None else d + 0.1 * (took - d)

    def seconds_to_stall(self, all_slots_busy: bool, holding: bool) -> float | None:
        """Auto claim-ahead holds jobs for about ``window`` of expected work.
        If every slot has stayed busy far longer than handlers usually take
        (no handler started or finished for max(10 windows, 3 x the usual
        duration)), the estimate is wrong and the held jobs should go back.
        Seconds until that point (<= 0: now); None: nothing to watch."""
        if not self.auto or not holding or not all_slots_busy:
            return None
        limit = max(10 * self.window, 3 * (self.duration or 0.0))
        return limit - (time.monotonic() - self.last_progress)

    def stalled(self) -> float:
        """Take the stall as the new duration (so few are claimed ahead
        again); returns how long it lasted."""
        stalled = time.monotonic() - self.last_progress
        self.duration = max(self.duration or 0.0, stalled)
        return stalled


class HeldJobs:
    """Jobs claimed ahead, waiting for a free slot: popped in the engine's
    claim order (priority, scheduled_at, seq), whichever claim (lane)
    brought them and whenever its answer arrived.

    Kept as one run per claim: claim returns its rows in claim order, so
    only the heads of the runs (one or two, with two lanes) are ever
    compared; cheaper than a heap over every held job."""

    def __init__(self) -> None:
        self._runs: list[collections.deque[tuple[ClaimRow, JobContext[Any]]]] = []
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def push_claim(self, held: list[tuple[ClaimRow, JobContext[Any]]]) -> None:
        """One claim's rows and their jobs, in the order the claim returned them."""
        if not held:
            return
        for _, job in held:
            job._state = st.QUEUED
        self._runs.append(collections.deque(held))
        self._n += len(held)

    def pop(self) -> JobContext[Any]:
        runs = self._runs
        run = runs[0] if len(runs) == 1 else min(runs, key=lambda r: claim_order(r[0][0]))
        job = run.popleft()[1]
        if not run:
            runs.remove(run)
        self._n -= 1
        return job

    def drain(self) -> Iterator[JobContext[Any]]:
        """All of them, in claim order, leaving none."""
        while self._n:
            yield self.pop()

    def clear(self) -> None:
        self._runs.clear()
        self._n = 0
