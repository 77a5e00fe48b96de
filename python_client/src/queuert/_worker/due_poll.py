"""Due-time polling: a worker whose claims came back short sleeps until
the next job of its types is due (capped by ``poll_interval``), then hints
a claim. Covers scheduled jobs and lost notifications."""

from __future__ import annotations

import time
from collections.abc import Callable

from queuert._worker.store import Session
from queuert._worker.wakeup import Wakeup


class DuePoll:
    def __init__(self, wakeup: Wakeup, claiming: Callable[[], bool], *, poll_interval: float) -> None:
        self.wakeup = wakeup
        self.claiming = claiming
        self.cap = poll_interval

    def _drained(self) -> bool:
        return self.claiming() and self.wakeup.all_drained()

    def next_at(self, now: float) -> float | None:
        if not self._drained():
            return None
        poll_at = self.wakeup.poll_at
        return now if poll_at is None else poll_at

    async def run_due(self, session: Session, now: float) -> None:
        if not self._drained():
            return
        w = self.wakeup
        if w.poll_at is None:
            due_in = await session.seconds_until_due()
            if due_in is None:
                wait = self.cap
            else:
                # a due job we did not get is locked by someone else: look again soon
                wait = min(max(due_in, min(0.05, self.cap)), self.cap)
            w.poll_at = time.monotonic() + wait
        elif now >= w.poll_at:
            w.poll_at = None
            w.hint()
