"""The worker's side of wake budgets (the contract in :mod:`queuert.notify.base`).

A ``job_ready`` event wakes an *idle* worker (its last claim came back short,
it has free slots) only once it took one unit of the type's budget from the
notifier, so eight idle workers that hear of one started job run one claim,
not eight. An event that finds the worker claiming or busy costs no unit: its
next claim sees the job anyway (a busy worker takes none). ``resync`` and the
poll timer never consult the budget. Events that arrive while a take is in
flight join it: one take per wake-up. A lone listener claims at once and its
unit is taken in the background (:mod:`queuert.notify._alone`): the stats
count that take when the broker answers, ``wake_hints_declined`` when it
found the budget spent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from queuert.notify.base import Notifier

__all__ = ["WakeBudget"]

logger = logging.getLogger("queuert.worker")


class WakeBudget:
    """Gates one worker's ``job_ready`` wake-ups on its notifier's budgets.

    ``wake`` runs when the worker should claim (on its loop); ``taken`` /
    ``declined`` are told the outcome of each take (for the worker's stats).
    """

    def __init__(
        self,
        notifier: Notifier,
        wake: Callable[[], None],
        taken: Callable[[], None],
        declined: Callable[[], None],
    ) -> None:
        self.notifier = notifier
        #: False for notifiers without budgets: every event wakes at once
        self.enabled = notifier.wake_budgets
        self._wake = wake
        self._taken = taken
        self._declined = declined
        self._types: set[str] = set()  # heard while idle, not yet asked for
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the worker's, once a take ran

    def job_ready(self, type_name: str, idle: bool) -> None:
        """A ``job_ready`` of ``type_name`` reached the worker (its loop)."""
        if not (self.enabled and idle):
            self._wake()
            return
        self._types.add(type_name)
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._take(), name="queuert-wake-budget")

    async def _take(self) -> None:
        try:
            while self._types:
                types = sorted(self._types)
                self._types.clear()
                try:
                    answer = await self.notifier.take_wake_hint_or_defer(types, self._settled_later)
                except Exception:  # the contract says never; a hint must not stop the worker
                    logger.exception("take_wake_hint of %r failed; claiming", self.notifier)
                    answer = True
                if answer is not False:
                    # the claim that follows looks at every type: events
                    # heard meanwhile need no unit of their own
                    self._types.clear()
                    if answer is True:  # None: counted when the broker answers
                        self._taken()
                    self._wake()
                    return
                self._declined()
        finally:
            self._task = None

    def _settled_later(self, taken: bool) -> None:
        """A lone listener's unit, taken in the background, settled (any
        thread): count it as a take would have (declined: the budget was
        spent, though the worker claimed all the same)."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._taken if taken else self._declined)
        except RuntimeError:  # the worker's loop closed meanwhile: no stats to keep
            pass

    async def close(self) -> None:
        """Stop a take in flight (the worker is stopping)."""
        task, self._task = self._task, None
        self._types.clear()
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
