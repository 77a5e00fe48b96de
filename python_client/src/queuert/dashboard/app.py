"""The dashboard application: an ASGI app to mount in a host web app, or to
serve alone (``queuert dashboard``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from ..notify.base import Notifier
from . import api, pages
from .actions import ActionError
from .core import HERE, DashboardCore
from .params import BadRequest
from .security import Authorize, Forbidden


class Dashboard(DashboardCore):
    """An ASGI application; see :func:`create_dashboard`."""

    def __init__(self, source: str | AsyncConnectionPool[Any], **settings: Any) -> None:
        super().__init__(source, **settings)
        handler = self._on_error
        self.app = Starlette(
            routes=[
                *pages.routes(),
                *api.routes(),
                Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
            ],
            exception_handlers={
                BadRequest: handler,
                Forbidden: handler,
                ActionError: handler,
                HTTPException: handler,
                psycopg.Error: handler,
            },
            lifespan=self._lifespan,
        )
        self.app.state.dashboard = self

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        await self.aclose()


def create_dashboard(
    source: str | AsyncConnectionPool[Any],
    *,
    schema: str = "queuert",
    base_path: str | None = None,
    read_only: bool = False,
    authorize: Authorize | None = None,
    refresh_seconds: float = 5.0,
    title: str = "queuert",
    notifier: Notifier | None = None,
) -> Dashboard:
    """The dashboard as an ASGI app.

    ``source``: a conninfo string (the dashboard opens a small pool of its
    own on the first request and closes it on ASGI lifespan shutdown or
    :meth:`Dashboard.aclose`) or a ``psycopg_pool.AsyncConnectionPool``
    you own. ``base_path``: the URL prefix of every link, when the server
    cannot tell it (a mounted app gets it from the ASGI ``root_path``).
    ``read_only``: hide and refuse every action. ``authorize(request,
    action)``: return (or await) True to allow ``"view"``, ``"trigger"``,
    ``"retry"``, ``"cancel"`` or ``"delete"``; anything else is a 403.
    ``notifier``: what an action makes ready (a triggered or retried job)
    is published through it after the action commits, as
    :func:`queuert.transaction_hooks` does; give the workers' Redis or NATS
    notifier (the default PostgreSQL one needs none: the engine notifies).
    """
    return Dashboard(
        source,
        schema=schema,
        base_path=base_path,
        read_only=read_only,
        authorize=authorize,
        refresh_seconds=refresh_seconds,
        title=title,
        notifier=notifier,
    )
