"""The one start/stop protocol of the worker's background services."""

from __future__ import annotations

from typing import Protocol


class Looper(Protocol):
    """A service with its own task: ``start`` creates it (on the running
    loop), ``stop`` ends it, finishing what must be finished first."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...
