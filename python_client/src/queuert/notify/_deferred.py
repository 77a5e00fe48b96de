"""One coroutine run a moment after it was asked for, once however often it
was asked meanwhile: what a broker notifier does later so as not to do it
beside a wake-up (:mod:`queuert.notify._lone_takes`,
:mod:`queuert.notify._later_top_ups`). Every method runs on one event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["Deferred"]


class Deferred:
    """``run()`` ``delay()`` seconds after :meth:`ask`; asked again while it
    runs, it runs again (after the delay) once it ends."""

    def __init__(self, run: Callable[[], Awaitable[None]], delay: Callable[[], float], name: str) -> None:
        self._run = run
        self._delay = delay
        self._name = name
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._again = False

    @property
    def pending(self) -> bool:
        return self._timer is not None or self._task is not None

    def ask(self) -> None:
        if self._task is not None:
            self._again = True
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay(), self._start)

    def _start(self) -> None:
        self._timer = None
        self._task = asyncio.get_running_loop().create_task(self._run_once(), name=self._name)

    async def _run_once(self) -> None:
        try:
            await self._run()
        finally:
            self._task = None
            if self._again:
                self._again = False
                self.ask()

    async def now(self) -> None:
        """Run what is asked for now, and wait for it (flush, close)."""
        while True:
            task = self._task
            if task is not None:
                await asyncio.shield(task)
                continue
            timer, self._timer = self._timer, None
            if timer is None:
                return
            timer.cancel()
            self._start()

    async def cancel(self) -> None:
        self._again = False
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
