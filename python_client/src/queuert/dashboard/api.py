"""The JSON API under ``<base>/api/``: the pages' reads and actions for
scripts. Errors are ``{"error": {"code", "message", ...}}`` with the HTTP
status (400 bad input, 403 refused, 404 unknown id, 409 the engine refused:
a QU005 refusal lists the waiting chains under ``dependents``)."""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from . import views
from .actions import BULK_RETRY_LIMIT
from .core import dashboard_of, json_response
from .params import BadRequest, chain_filter, cursor, page_size, uuid_list, uuid_param
from .security import CSRF_HEADER, check_csrf, csrf_token, remember_csrf

MAX_BODY_BYTES = 1 << 20


async def csrf(request: Request) -> Response:
    """The token to send back in the X-CSRF-Token header (sets its cookie)."""
    dash = dashboard_of(request)
    await dash.require(request, "view")
    response = json_response({"csrf_token": csrf_token(request), "header": "X-CSRF-Token"})
    remember_csrf(request, response, dash.prefix(request) or "/")
    return response


async def overview(request: Request) -> Response:
    dash = dashboard_of(request)
    await dash.require(request, "view")
    async with dash.connection() as conn:
        return json_response(await views.overview(dash.queries, conn))


async def chains(request: Request) -> Response:
    dash = dashboard_of(request)
    await dash.require(request, "view")
    q = request.query_params
    flt = chain_filter(q, q.getlist("status"))
    async with dash.connection() as conn:
        data = await views.chains(dash.queries, conn, flt, page_size(q.get("limit")), cursor(q.get("after")))
    return json_response(data)


async def chain(request: Request) -> Response:
    dash = dashboard_of(request)
    await dash.require(request, "view")
    chain_id = uuid_param(request.path_params["chain_id"], "chain id")
    async with dash.connection() as conn:
        data = await views.chain(dash.queries, conn, chain_id)
    if data is None:
        raise HTTPException(404, f"no chain {chain_id}")
    data.pop("links")
    data["jobs"] = [views.public_job(j) for j in data["jobs"]]
    return json_response(data)


async def job(request: Request) -> Response:
    dash = dashboard_of(request)
    await dash.require(request, "view")
    job_id = uuid_param(request.path_params["job_id"], "job id")
    async with dash.connection() as conn:
        data = await views.job(dash.queries, conn, job_id)
    if data is None:
        raise HTTPException(404, f"no job {job_id}")
    return json_response({**views.public_job(data["job"]), "blockers": data["blockers"]})


async def _body(request: Request, action: str) -> dict[str, Any]:
    """The JSON body of a POST, after the CSRF and permission checks."""
    dash = dashboard_of(request)
    check_csrf(request, request.headers.get(CSRF_HEADER))
    await dash.require(request, action)
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest("body too large")
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise BadRequest(f"body: not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("body: expected a JSON object")
    return body


def _ids(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list):
        raise BadRequest(f"{key}: expected a list of ids")
    return uuid_list(value, key)


def _action(action: str, key: str) -> Any:
    async def handler(request: Request) -> Response:
        body = await _body(request, action)
        ids = _ids(body, key)
        cascade = body.get("cascade", False)
        if not isinstance(cascade, bool):
            raise BadRequest("cascade: expected true or false")
        dash = dashboard_of(request)
        async with dash.connection() as conn:
            result = await dash.actions.run(conn, action, ids, cascade=cascade)
        return json_response({"action": action, key: result.ids, "message": result.message})

    return handler


async def retry_failed(request: Request) -> Response:
    body = await _body(request, "retry")
    limit = body.get("limit", BULK_RETRY_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise BadRequest("limit: a number from 1 to 10000")
    flt = chain_filter({k: v for k, v in body.items() if k in ("type", "from", "to") and v}, [])
    dash = dashboard_of(request)
    async with dash.connection() as conn:
        result = await dash.actions.retry_failed(conn, flt, limit)
    return json_response({"action": "retry", "job_ids": result.ids, "more": result.more, "message": result.message})


def routes() -> list[BaseRoute]:
    return [
        Route("/api/csrf", csrf),
        Route("/api/overview", overview),
        Route("/api/chains", chains),
        Route("/api/chains/cancel", _action("cancel", "chain_ids"), methods=["POST"]),
        Route("/api/chains/delete", _action("delete", "chain_ids"), methods=["POST"]),
        Route("/api/chains/retry-failed", retry_failed, methods=["POST"]),
        Route("/api/chains/{chain_id}", chain),
        Route("/api/jobs/trigger", _action("trigger", "job_ids"), methods=["POST"]),
        Route("/api/jobs/retry", _action("retry", "job_ids"), methods=["POST"]),
        Route("/api/jobs/{job_id}", job),
    ]
