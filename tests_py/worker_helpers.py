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


def asleep(worker: queuert.Worker, until: float = 30.0) -> bool:
    """Idle: its last claim came back short, no hint came since, no claim
    is in flight, and it has looked up when its next job is due: it sleeps
    until an event or its poll, at least ``until`` seconds away (a due job it
    has not got, another worker's for the taking, would have it look again in
    50 ms).

    No claim in flight (staged mode): a staged worker starts with a claim on
    each of its two flush lanes; the first short answer drains it, and the
    second, answering later (a loaded machine), drains it again, which makes
    it look up the due time anew: a job started meanwhile is then due, and
    the worker claims it 50 ms later, woken by no event."""
    run = worker._run
    if run is None or not run.started.is_set() or not run.wakeup.all_drained():
        return False
    if run.staged is not None and run.staged.claiming_lanes:
        return False
    poll_at = run.wakeup.poll_at
    return poll_at is not None and poll_at - time.monotonic() > until
