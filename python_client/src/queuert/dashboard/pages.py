"""The HTML pages and the form posts behind their buttons.

Every post needs the CSRF token and the right permission; it then calls one
engine function and redirects back (303) with a one-line notice, or shows
the refusal (e.g. the chains that wait on a chain you tried to delete).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from . import graph, views
from .actions import BULK_RETRY_LIMIT
from .core import dashboard_of
from .params import BadRequest, chain_filter, cursor, filter_query, page_size, selected_pairs, uuid_list, uuid_param
from .queries import STATUSES
from .security import CSRF_FIELD, CSRF_HEADER, check_csrf

MAX_FORM_BYTES = 1 << 20


async def overview(request: Request) -> Response:
    dash = dashboard_of(request)
    await dash.require(request, "view")
    async with dash.connection() as conn:
        data = await views.overview(dash.queries, conn)
    return await dash.render(request, "overview.html", {"page": "overview", **data})


async def chain_list(request: Request) -> Response:
    dash = dashboard_of(request)
    await dash.require(request, "view")
    q = request.query_params
    flt = chain_filter(q, q.getlist("status"))
    limit = page_size(q.get("limit"))
    async with dash.connection() as conn:
        data = await views.chains(dash.queries, conn, flt, limit, cursor(q.get("after")))
    return await dash.render(
        request,
        "chains.html",
        {
            "page": "chains",
            "filter": flt,
            "filter_query": filter_query(flt),
            "limit": limit,
            "statuses": STATUSES,
            "first_page": not q.get("after"),
            "bulk_retry_limit": BULK_RETRY_LIMIT,
            **data,
        },
    )


async def chain_page(request: Request) -> Response:
    dash = dashboard_of(request)
    await dash.require(request, "view")
    chain_id = uuid_param(request.path_params["chain_id"], "chain id")
    async with dash.connection() as conn:
        data = await views.chain(dash.queries, conn, chain_id)
    if data is None:
        raise HTTPException(404, f"no chain {chain_id}")
    drawing = graph.layout(
        data["jobs"],
        data["links"],
        chain_href=lambda cid: dash.url(request, f"/chains/{cid}"),
        job_href=lambda jid: dash.url(request, f"/jobs/{jid}"),
    )
    return await dash.render(request, "chain.html", {"page": "chains", "chain": data, "graph": drawing})


async def job_page(request: Request) -> Response:
    dash = dashboard_of(request)
    await dash.require(request, "view")
    job_id = uuid_param(request.path_params["job_id"], "job id")
    async with dash.connection() as conn:
        data = await views.job(dash.queries, conn, job_id)
    if data is None:
        raise HTTPException(404, f"no job {job_id}")
    return await dash.render(request, "job.html", {"page": "chains", **data})


async def find(request: Request) -> Response:
    """The header's search box: a chain id or a job id."""
    dash = dashboard_of(request)
    await dash.require(request, "view")
    wanted = uuid_param(request.query_params.get("id"), "id")
    async with dash.connection() as conn:
        row = await dash.queries.job(conn, wanted)
    if row is None:
        raise HTTPException(404, f"no chain or job {wanted}")
    if row["id"] == row["chain_id"]:
        return RedirectResponse(dash.url(request, f"/chains/{wanted}"), 303)
    return RedirectResponse(dash.url(request, f"/jobs/{wanted}"), 303)


async def _form(request: Request) -> dict[str, list[str]]:
    length = int(request.headers.get("content-length") or 0)
    if length > MAX_FORM_BYTES:
        raise BadRequest("form too large")
    body = (await request.body())[:MAX_FORM_BYTES].decode("utf-8", "replace")
    form: dict[str, list[str]] = {}
    for key, value in parse_qsl(body, keep_blank_values=True, max_num_fields=20_000):
        form.setdefault(key, []).append(value)
    return form


def _one(form: dict[str, list[str]], key: str) -> str | None:
    values = form.get(key)
    return values[0] if values else None


async def _checked_form(request: Request, action: str) -> dict[str, list[str]]:
    dash = dashboard_of(request)
    form = await _form(request)
    check_csrf(request, _one(form, CSRF_FIELD) or request.headers.get(CSRF_HEADER))
    await dash.require(request, action)
    return form


def _cascade(form: dict[str, list[str]]) -> bool:
    return _one(form, "cascade") in ("1", "on", "true")


async def _act(
    request: Request, form: dict[str, list[str]], action: str, ids: list[UUID], cascade: bool
) -> Response:
    dash = dashboard_of(request)
    async with dash.connection() as conn:
        result = await dash.actions.run(conn, action, ids, cascade=cascade)
    target = dash.safe_next(request, _one(form, "next"), "/chains")
    return dash.redirect_with_flash(request, target, result.message)


def _job_action(action: str) -> Any:
    async def handler(request: Request) -> Response:
        form = await _checked_form(request, action)
        return await _act(request, form, action, uuid_list(form.get("job_id", []), "job_id"), False)

    return handler


def _chain_action(action: str) -> Any:
    async def handler(request: Request) -> Response:
        form = await _checked_form(request, action)
        ids = uuid_list(form.get("chain_id", []), "chain_id")
        return await _act(request, form, action, ids, _cascade(form))

    return handler


async def list_action(request: Request) -> Response:
    """The chain list's buttons: act on the checked rows."""
    form = await _form(request)
    action = _one(form, "action") or ""
    if action not in ("trigger", "retry", "cancel", "delete"):
        raise BadRequest(f"action: unknown {action!r}")
    check_csrf(request, _one(form, CSRF_FIELD) or request.headers.get(CSRF_HEADER))
    dash = dashboard_of(request)
    await dash.require(request, action)
    chains, jobs = selected_pairs(form.get("selected", []))
    ids = jobs if action in ("trigger", "retry") else chains
    return await _act(request, form, action, ids, _cascade(form))


async def retry_failed(request: Request) -> Response:
    """Retry the failed chains matching the list's type and time filters."""
    form = await _checked_form(request, "retry")
    dash = dashboard_of(request)
    flt = chain_filter({k: v[0] for k, v in form.items() if v}, [])
    async with dash.connection() as conn:
        result = await dash.actions.retry_failed(conn, flt, BULK_RETRY_LIMIT)
    target = dash.safe_next(request, _one(form, "next"), "/chains")
    return dash.redirect_with_flash(request, target, result.message)


def routes() -> list[BaseRoute]:
    return [
        Route("/", overview, name="overview"),
        Route("/chains", chain_list, name="chains"),
        Route("/chains/act", list_action, methods=["POST"]),
        Route("/chains/retry-failed", retry_failed, methods=["POST"]),
        Route("/chains/cancel", _chain_action("cancel"), methods=["POST"]),
        Route("/chains/delete", _chain_action("delete"), methods=["POST"]),
        Route("/chains/{chain_id}", chain_page, name="chain"),
        Route("/jobs/trigger", _job_action("trigger"), methods=["POST"]),
        Route("/jobs/retry", _job_action("retry"), methods=["POST"]),
        Route("/jobs/{job_id}", job_page, name="job"),
        Route("/find", find, name="find"),
    ]
