"""Where the worker's handlers run: eagerly started coroutines resumed in a
Task, a thread pool for the sync handlers of staged mode, and one thread
per atomic slot for sync handlers (each with its own connection)."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from queuert.job import JobContext


class Resume:
    """Continue a coroutine that was started eagerly (its first step ran in
    the dispatcher) inside a Task: yields the future it was waiting on, then
    drives it to the end, forwarding cancellation."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Any, first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Any:
        coro = self.coro
        value = self.first
        while True:
            try:
                yield value
            except BaseException as exc:  # thrown in by the Task (cancel)
                try:
                    value = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                value = coro.send(None)
            except StopIteration as stop:
                return stop.value


async def resumed(coro: Any, first: Any) -> Any:
    return await Resume(coro, first)


class ThreadPool:
    """Threads for sync handlers; results are handed back to the loop in
    batches (one ``call_soon_threadsafe`` per burst, not per job)."""

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop, deliver: Callable[[list[Any]], None]):
        self.size = size
        self.loop = loop
        self.deliver = deliver
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []
        self.busy = 0
        self.lock = threading.Lock()
        self.done: list[Any] = []
        self.wake_pending = False
        self.closed = False

    def submit(self, job: JobContext[Any], fn: Callable[[JobContext[Any]], Any]) -> None:
        with self.lock:
            self.busy += 1
            need = self.busy > len(self.threads) and len(self.threads) < self.size
        if need:
            t = threading.Thread(target=self._work, name=f"queuert-handler-{len(self.threads)}", daemon=True)
            self.threads.append(t)
            t.start()
        self.q.put((job, fn))

    def _work(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            job, fn = item
            t0 = time.monotonic()
            try:
                result: Any = fn(job)
                exc: BaseException | None = None
            except BaseException as e:  # noqa: BLE001 - handed to the loop
                result, exc = None, e
            took = time.monotonic() - t0
            with self.lock:
                self.busy -= 1
                self.done.append((job, result, exc, took))
                wake = not self.wake_pending
                self.wake_pending = True
            if wake and not self.closed:
                try:
                    self.loop.call_soon_threadsafe(self._drain)
                except RuntimeError:  # loop closed
                    return

    def _drain(self) -> None:
        with self.lock:
            items, self.done = self.done, []
            self.wake_pending = False
        if items:
            self.deliver(items)

    def shutdown(self) -> None:
        self.closed = True
        for _ in self.threads:
            self.q.put(None)


class SlotThread:
    """One daemon thread serving one atomic slot (sync handlers): runs the
    calls it is given in order and resolves an asyncio future with each
    result. Daemon, so a handler stuck past shutdown cannot keep the process
    alive."""

    def __init__(self, loop: asyncio.AbstractEventLoop, index: int) -> None:
        self.loop = loop
        self.q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._work, name=f"queuert-atomic-{index}", daemon=True)
        self.thread.start()

    def call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.q.put((fut, fn, args))
        return fut

    def _work(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            fut, fn, args = item
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop
                if fut is not None:
                    self._resolve(fut, None, exc)
            else:
                if fut is not None:
                    self._resolve(fut, result, None)

    def _resolve(self, fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
        def done() -> None:
            if fut.done():
                return
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)

        try:
            self.loop.call_soon_threadsafe(done)
        except RuntimeError:  # loop closed
            pass

    def stop(self, close: Any = None) -> None:
        """End the thread after the call it is running, if any. `close`, the
        slot's connection, is closed by this thread after that call: a
        psycopg connection closed from another thread in the middle of a
        call leaves that call on a freed libpq connection."""
        if close is not None:
            self.q.put((None, close.close, ()))
        self.q.put(None)
