"""Run a queuert worker beside a Starlette or FastAPI app, in its event loop.

    from queuert.contrib.starlette import worker_lifespan

    app = FastAPI(lifespan=worker_lifespan(worker))

or, inside a lifespan of your own::

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async with pool, running_worker(worker):
            yield

The worker starts with the app and is connected before the app takes
requests (a worker that cannot start fails the startup, so a wrong DSN is
seen at once); at shutdown it stops claiming and finishes or releases its
in-flight jobs within its ``grace_period``, none lost. The ASGI server keeps
the signals: the worker does not install handlers of its own. With several
server processes, each runs its own worker, which is fine: claims never
hand one job to two workers. Nothing here imports Starlette: a lifespan is
plain asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from queuert.worker import Worker

__all__ = ["running_worker", "worker_lifespan"]


@contextlib.asynccontextmanager
async def running_worker(worker: Worker, *, start_timeout: float = 30.0) -> AsyncIterator[Worker]:
    """Run ``worker`` on the current event loop for the duration of the block."""
    task = asyncio.create_task(worker.run_async(), name="queuert-worker")
    started = asyncio.ensure_future(worker.wait_started(timeout=start_timeout))
    done, _ = await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        started.cancel()
        task.result()  # raises the worker's own error
        raise RuntimeError("the queuert worker stopped before it started")
    try:
        started.result()
    except BaseException:
        worker.stop(immediate=True)
        await asyncio.gather(task, return_exceptions=True)
        raise
    try:
        yield worker
    finally:
        worker.stop()
        await task


def worker_lifespan(worker: Worker, *, start_timeout: float = 30.0) -> Callable[[Any], Any]:
    """A ``lifespan=`` for Starlette or FastAPI that runs ``worker`` beside the app."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with running_worker(worker, start_timeout=start_timeout):
            yield

    return lifespan
