"""The private event loop thread of a broker notifier (see
:mod:`queuert.notify.broker` for why), and what happens to it at fork and
at interpreter exit."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
import weakref
from collections.abc import Coroutine
from typing import Any, Protocol, TypeVar

__all__ = ["IoThread", "register", "quietly"]

logger = logging.getLogger("queuert.notify")

_T = TypeVar("_T")


class IoThread:
    """A daemon thread running one event loop."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.pid = os.getpid()
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    @property
    def usable(self) -> bool:
        """Running, and ours (not inherited through fork)."""
        return self.pid == os.getpid() and not self.loop.is_closed()

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self, timeout: float) -> None:
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # closed meanwhile
            return
        if threading.current_thread() is not self.thread:
            self.thread.join(timeout)


async def quietly(aw: Coroutine[Any, Any, Any]) -> None:
    """Await a cleanup step whose failure does not matter (a dead connection)."""
    try:
        await aw
    except Exception as exc:
        logger.debug("notify cleanup failed: %s", exc)


class _Owner(Protocol):
    def _after_fork(self) -> None: ...

    def _drain_at_exit(self, timeout: float) -> None: ...


#: every live owner of an I/O thread: reset in a forked child, drained at exit
_live: weakref.WeakSet[Any] = weakref.WeakSet()


def register(owner: _Owner) -> None:
    _live.add(owner)


def _reset_in_child() -> None:
    for owner in list(_live):
        owner._after_fork()


def _drain_all() -> None:
    # A script that starts a chain and exits: its hint still goes out.
    for owner in list(_live):
        owner._drain_at_exit(1.0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)
atexit.register(_drain_all)
