"""Run a queuert worker beside a Starlette or FastAPI app, in its event loop.

    from queuert.contrib.starlette import worker_lifespan

    app = FastAPI(lifespan=worker_lifespan(worker))

and, with the dashboard mounted beside it (``pip install queuert[dashboard]``)::

    app = FastAPI(lifespan=worker_lifespan(worker, dashboard_path="/queuert",
                                           dashboard_options={"read_only": True}))

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
plain asyncio, and the dashboard is imported only when it is asked for.

The dashboard is mounted when the app starts (a mount appended to the app's
routes, so the app's own routes win on a clash) and its connection pool is
closed when the app stops: a mounted ASGI app gets no lifespan of its own.
It reads the worker's database and schema unless ``dashboard`` is given.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from queuert.worker import Worker

if TYPE_CHECKING:
    from queuert.dashboard import Dashboard

__all__ = ["mounted_dashboard", "running_worker", "worker_lifespan"]

_MOUNT_NAME = "queuert-dashboard"


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


@contextlib.asynccontextmanager
async def mounted_dashboard(
    app: Any,
    path: str,
    dashboard: Dashboard,
    *,
    close: bool = True,
) -> AsyncIterator[Dashboard]:
    """Mount ``dashboard`` at ``path`` of a Starlette/FastAPI ``app`` for the
    duration of the block; close its pool after, when ``close``."""
    if not path.startswith("/") or path == "/" or path.endswith("/"):
        raise ValueError(f"dashboard_path must look like '/queuert' (a leading slash, no trailing one), not {path!r}")
    already = [r for r in app.router.routes if getattr(r, "name", None) == _MOUNT_NAME]
    if not already:  # a second start of the same app (tests) mounts it once
        app.mount(path, dashboard, name=_MOUNT_NAME)
    elif getattr(already[0], "path", path) != path:
        raise ValueError(f"the queuert dashboard is already mounted at {already[0].path!r}, not {path!r}")
    else:
        already[0].app = dashboard
    try:
        yield dashboard
    finally:
        if close:
            await dashboard.aclose()


def worker_lifespan(
    worker: Worker,
    *,
    start_timeout: float = 30.0,
    dashboard_path: str | None = None,
    dashboard: Dashboard | None = None,
    dashboard_options: Mapping[str, Any] | None = None,
) -> Callable[[Any], Any]:
    """A ``lifespan=`` for Starlette or FastAPI that runs ``worker`` beside the
    app and, with ``dashboard_path``, mounts the dashboard there.

    ``dashboard``: a :class:`queuert.dashboard.Dashboard` of your own (you
    close it); otherwise one is made on the worker's database and schema with
    ``dashboard_options`` (the keyword arguments of ``create_dashboard``:
    ``read_only``, ``authorize``, ...) and closed with the app; it publishes
    what its actions make ready through the worker's notifier unless the
    options name another (``notifier=``).
    """
    if dashboard_path is None and (dashboard is not None or dashboard_options):
        raise ValueError("dashboard and dashboard_options need dashboard_path, the path to mount it at")
    if dashboard is not None and dashboard_options:
        raise ValueError("give either dashboard or dashboard_options, not both")

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            if dashboard_path is not None:
                owned = dashboard is None
                board = dashboard if dashboard is not None else _dashboard_of(worker, dashboard_options or {})
                await stack.enter_async_context(mounted_dashboard(app, dashboard_path, board, close=owned))
            await stack.enter_async_context(running_worker(worker, start_timeout=start_timeout))
            yield

    return lifespan


def _dashboard_of(worker: Worker, options: Mapping[str, Any]) -> Dashboard:
    from queuert.dashboard import create_dashboard  # needs the dashboard extra

    if worker.conninfo is None:
        raise ValueError("the worker has no conninfo yet: the dashboard reads the worker's database")
    from queuert.notify.postgres import PostgresNotifier

    # the PostgreSQL notifier needs no publishing: the engine's NOTIFY does it
    if "notifier" not in options and worker.notifier is not None and not isinstance(worker.notifier, PostgresNotifier):
        options = {**options, "notifier": worker.notifier}
    return create_dashboard(worker.conninfo, schema=worker.schema, **options)
