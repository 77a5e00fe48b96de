"""Who may do what: read-only mode, the host's ``authorize`` hook, CSRF.

CSRF uses a double-submit token: a random value in a cookie that only this
dashboard's path receives (SameSite=Strict, HttpOnly), repeated in every
state-changing request as the form field ``csrf_token`` or the header
``X-CSRF-Token``. Another site can make a browser send the cookie, but it
cannot read it to repeat it.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import Awaitable, Callable
from typing import Union

from starlette.requests import Request
from starlette.responses import Response

CSRF_COOKIE = "queuert_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

#: ``authorize(request, action)``: True lets the request through. Actions:
#: "view" (every read) and "trigger", "retry", "cancel", "delete".
Authorize = Callable[[Request, str], Union[bool, Awaitable[bool]]]


class Forbidden(Exception):
    """The request may not do this (HTTP 403)."""


async def allowed(authorize: Authorize | None, request: Request, action: str) -> bool:
    if authorize is None:
        return True
    verdict = authorize(request, action)
    if inspect.isawaitable(verdict):
        verdict = await verdict
    return verdict is True


def csrf_token(request: Request) -> str:
    """The browser's token, or a new one (set by :func:`remember_csrf`)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) >= 32:
        return token
    new: str | None = getattr(request.state, "new_csrf", None)
    if new is None:
        new = secrets.token_urlsafe(32)
        request.state.new_csrf = new
    return new


def remember_csrf(request: Request, response: Response, path: str) -> None:
    new: str | None = getattr(request.state, "new_csrf", None)
    if new:
        response.set_cookie(
            CSRF_COOKIE,
            new,
            path=path or "/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )


def check_csrf(request: Request, submitted: str | None) -> None:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not submitted or not secrets.compare_digest(cookie, submitted):
        raise Forbidden(
            "missing or wrong CSRF token: reload the page and try again "
            f"(API clients: GET api/csrf, then send the {CSRF_HEADER.title()} header)"
        )
