"""Helpers of the worker suites (test_worker.py, test_worker_backends.py and
the files built on them): a worker running as a task of the test, and
waiting for a condition."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import queuert


@contextlib.asynccontextmanager
async def running(worker: queuert.Worker) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(worker.run_async())
    try:
        await worker.wait_started()
        yield task
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def eventually(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02) -> Any:
    """Await until ``check()`` (sync or async) returns a truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
