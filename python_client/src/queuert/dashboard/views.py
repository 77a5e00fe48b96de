"""What each page shows, gathered from the reads; the HTML pages and the
JSON API render the same data."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from .queries import STATUSES, AsyncConn, ChainFilter, ChainPage, Queries, Row

RECENT = timedelta(hours=1)
LINKS_SHOWN = 200  # blocker edges listed per direction on a chain page


async def overview(q: Queries, conn: AsyncConn) -> dict[str, Any]:
    stats = await q.stats(conn, RECENT)
    types: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"counts": dict.fromkeys(STATUSES, 0), "oldest_due_age": None,
                 "completed_recently": 0, "failed_recently": 0, "total": 0}
    )
    totals = dict.fromkeys(STATUSES, 0)
    for r in stats:
        t = types[r["type_name"]]
        status = str(r["status"])
        t["counts"][status] = int(r["count"])
        t["total"] += int(r["count"])
        totals[status] += int(r["count"])
        if r["oldest_due_age"] is not None:
            t["oldest_due_age"] = r["oldest_due_age"]
        if status == "completed":
            t["completed_recently"] = int(r["recent_count"] or 0)
        elif status == "failed":
            t["failed_recently"] = int(r["recent_count"] or 0)
    return {
        "types": [{"type_name": name, **t} for name, t in sorted(types.items())],
        "totals": totals,
        "recent_window": RECENT,
        "recent_failures": await q.failures(conn, limit=10),
        "workers": await q.workers(conn),
        "chain_estimate": await q.chain_estimate(conn),
    }


async def chains(
    q: Queries, conn: AsyncConn, flt: ChainFilter, limit: int, after: tuple[datetime, UUID] | None
) -> dict[str, Any]:
    page: ChainPage = await q.chains(conn, flt, limit=limit, after=after)
    unfiltered = flt == ChainFilter()
    return {
        "chains": page.chains,
        "next_cursor": page.next_cursor,
        "searched_to": page.searched_to,
        # a total only where it is cheap and honest: the planner's estimate
        "chain_estimate": await q.chain_estimate(conn) if unfiltered else None,
    }


async def chain(q: Queries, conn: AsyncConn, chain_id: UUID) -> dict[str, Any] | None:
    jobs = await q.chain_jobs(conn, chain_id)
    if not jobs:
        return None
    links = await q.chain_links(conn, chain_id, LINKS_SHOWN)
    root, last = jobs[0], jobs[-1]
    waits_on = [r for r in links if r["direction"] == "waits_on"]
    waited_by = [r for r in links if r["direction"] == "waited_by"]
    return {
        "chain_id": chain_id,
        "type_name": root["type_name"],
        "status": last["status"],
        "current_job_id": last["id"],
        "created_at": root["created_at"],
        "completed_at": root["chain_completed_at"],
        "output": last["output"] if root["chain_completed_at"] is not None else None,
        "jobs": jobs,
        "waits_on": waits_on,
        "waits_on_total": int(waits_on[0]["total"]) if waits_on else 0,
        "waited_by": waited_by,
        "waited_by_total": int(waited_by[0]["total"]) if waited_by else 0,
        "links": links,
    }


async def job(q: Queries, conn: AsyncConn, job_id: UUID) -> dict[str, Any] | None:
    row = await q.job(conn, job_id)
    if row is None:
        return None
    links = await q.chain_links(conn, row["chain_id"], LINKS_SHOWN)
    return {
        "job": row,
        "blockers": [r for r in links if r["direction"] == "waits_on" and r["job_id"] == job_id],
    }


def public_job(row: Row) -> Row:
    """A job row without the engine's bookkeeping columns."""
    hidden = {"seq", "open_blockers", "chain_completed_at"}
    return {k: v for k, v in row.items() if k not in hidden}
