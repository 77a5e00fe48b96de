"""The dashboard's machinery shared by its pages and its JSON API:
settings, the connection pool, permissions, rendering and errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import jinja2
import psycopg
from psycopg_pool import AsyncConnectionPool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from ..migrate import validate_schema_name
from ..notify.base import Notifier
from . import formatting
from .actions import ActionError, Actions, json_error
from .params import BadRequest
from .queries import AsyncConn, Queries
from .security import Authorize, Forbidden, allowed, csrf_token, remember_csrf

HERE = Path(__file__).resolve().parent
FLASH_COOKIE = "queuert_flash"


class DashboardCore:
    """Settings and helpers; :class:`queuert.dashboard.Dashboard` adds the routes."""

    def __init__(
        self,
        source: str | AsyncConnectionPool[Any],
        *,
        schema: str = "queuert",
        base_path: str | None = None,
        read_only: bool = False,
        authorize: Authorize | None = None,
        refresh_seconds: float = 5.0,
        title: str = "queuert",
        notifier: Notifier | None = None,
    ) -> None:
        if isinstance(source, str):
            self._pool: AsyncConnectionPool[Any] | None = None
            self._conninfo: str | None = source
            self._owns_pool = True
        elif isinstance(source, AsyncConnectionPool):
            self._pool, self._conninfo, self._owns_pool = source, None, False
        else:
            raise TypeError(
                "create_dashboard needs a conninfo string or a psycopg_pool.AsyncConnectionPool, "
                f"got {type(source).__name__}"
            )
        if base_path is not None and base_path not in ("", "/") and (
            not base_path.startswith("/") or base_path.endswith("/")
        ):
            raise ValueError(f"base_path must look like '/queuert' (got {base_path!r})")
        if refresh_seconds <= 0:
            raise ValueError("refresh_seconds must be positive")
        self.schema = validate_schema_name(schema)
        self.base_path = None if base_path is None else base_path.rstrip("/")
        self.read_only = read_only
        self.authorize = authorize
        self.refresh_seconds = refresh_seconds
        self.title = title
        self.queries = Queries(self.schema)
        self.notifier = notifier
        self.actions = Actions(self.queries, notifier)
        self._open_lock = asyncio.Lock()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(HERE / "templates")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        formatting.register(self.templates)
    async def aclose(self) -> None:
        """Closes the pool the dashboard opened (not a pool you passed in)."""
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _get_pool(self) -> AsyncConnectionPool[Any]:
        if self._pool is None:
            async with self._open_lock:
                if self._pool is None:
                    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                        self._conninfo or "",
                        min_size=1,
                        max_size=4,
                        kwargs={"autocommit": True},
                        open=False,
                        name="queuert-dashboard",
                    )
                    await pool.open(wait=False)
                    self._pool = pool
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConn]:
        """A connection in autocommit mode: each read and each action is its
        own transaction (so the client retries a deadlock by itself)."""
        pool = await self._get_pool()
        async with pool.connection() as conn:
            changed = not conn.autocommit
            if changed:
                await conn.set_autocommit(True)
            try:
                yield conn
            finally:
                if changed and not conn.closed:
                    await conn.set_autocommit(False)

    # -- request helpers -----------------------------------------------------

    def prefix(self, request: Request) -> str:
        """Where the dashboard answers: base_path, else the ASGI root_path
        (set by Mount, FastAPI's mount, or uvicorn --root-path)."""
        if self.base_path is not None:
            return self.base_path
        return str(request.scope.get("root_path", "")).rstrip("/")

    def url(self, request: Request, path: str, query: list[tuple[str, str]] | None = None) -> str:
        text = self.prefix(request) + path
        return text + ("?" + urlencode(query) if query else "")

    async def require(self, request: Request, action: str) -> None:
        if action != "view" and self.read_only:
            raise Forbidden("the dashboard is read-only")
        if not await allowed(self.authorize, request, action):
            raise Forbidden(f"not allowed: {action}")

    async def permitted(self, request: Request) -> set[str]:
        """The actions this request may take (to show only those buttons)."""
        if self.read_only:
            return set()
        return {a for a in ("trigger", "retry", "cancel", "delete") if await allowed(self.authorize, request, a)}

    async def render(
        self, request: Request, template: str, context: dict[str, Any], status_code: int = 200
    ) -> HTMLResponse:
        flash = request.cookies.get(FLASH_COOKIE)
        context.setdefault("page", "")
        body = self.templates.get_template(template).render(
            request=request,
            dash=self,
            url=lambda path, query=None: self.url(request, path, query),
            csrf_token=csrf_token(request),
            can=await self.permitted(request),
            flash=flash[:300] if flash else None,
            refresh_ms=int(self.refresh_seconds * 1000),
            now=datetime.now(timezone.utc),
            **context,
        )
        response = HTMLResponse(body, status_code=status_code)
        remember_csrf(request, response, self.prefix(request) or "/")
        if flash:
            response.delete_cookie(FLASH_COOKIE, path=self.prefix(request) or "/")
        return response

    def redirect_with_flash(self, request: Request, target: str, message: str) -> Response:
        response = Response(status_code=303, headers={"location": target})
        response.set_cookie(
            FLASH_COOKIE, message[:300], path=self.prefix(request) or "/", httponly=True,
            samesite="strict", max_age=60,
        )
        return response

    def safe_next(self, request: Request, target: str | None, fallback: str) -> str:
        """Only a path inside the dashboard: never an open redirect."""
        base = self.prefix(request)
        if target and target.startswith(base + "/") and not target.startswith("//") and "\\" not in target:
            return target
        return self.url(request, fallback)

    def is_api(self, request: Request) -> bool:
        return request.url.path.startswith(self.prefix(request) + "/api/") or request.url.path.startswith(
            str(request.scope.get("root_path", "")).rstrip("/") + "/api/"
        )

    async def _on_error(self, request: Request, exc: Exception) -> Response:
        status, code, message = _describe(exc)
        if self.is_api(request):
            if isinstance(exc, ActionError):
                return json_response(json_error(exc), exc.status_code)
            return json_response({"error": {"code": code, "message": message}}, status)
        context: dict[str, Any] = {"status_code": status, "message": message, "dependents": []}
        if isinstance(exc, ActionError):
            context["dependents"] = exc.dependents
        return await self.render(request, "error.html", context, status)


def _describe(exc: Exception) -> tuple[int, str, str]:
    if isinstance(exc, ActionError):
        return exc.status_code, exc.code, exc.message
    if isinstance(exc, BadRequest):
        return 400, "bad_request", str(exc)
    if isinstance(exc, Forbidden):
        return 403, "forbidden", str(exc)
    if isinstance(exc, HTTPException):
        return exc.status_code, "not_found" if exc.status_code == 404 else "http_error", str(exc.detail)
    if isinstance(exc, psycopg.errors.UndefinedFunction | psycopg.errors.UndefinedTable):
        return 503, "not_installed", (
            "queuert's dashboard functions are missing from this schema: run `queuert migrate`"
        )
    if isinstance(exc, psycopg.errors.InsufficientPrivilege):
        return 403, "forbidden", f"the dashboard's database role may not read this: {exc}"
    if isinstance(exc, psycopg.OperationalError):
        return 503, "database_unavailable", f"cannot reach PostgreSQL: {exc}"
    return 500, "database_error", f"database error: {exc}"


def _default(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def json_response(data: Any, status_code: int = 200) -> Response:
    body = json.dumps(data, default=_default, ensure_ascii=False)
    return Response(body, status_code=status_code, media_type="application/json")


def dashboard_of(request: Request) -> DashboardCore:
    dash = request.app.state.dashboard
    assert isinstance(dash, DashboardCore)
    return dash
