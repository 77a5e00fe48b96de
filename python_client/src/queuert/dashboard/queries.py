"""The dashboard's reads: one call per page part, each a SQL function of
sql/110_dashboard.sql (or the public chain_jobs), with parameters only.

Every function takes an open async connection and returns plain dicts (the
pages and the JSON API render the same rows).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

Row = dict[str, Any]
AsyncConn = psycopg.AsyncConnection[Any]

STATUSES = ("blocked", "pending", "running", "completed", "failed", "cancelled")


@dataclass(frozen=True)
class ChainFilter:
    """The chain list's filters, as parsed from a query string or JSON."""

    chain_type: str | None = None
    statuses: tuple[str, ...] = ()
    created_from: datetime | None = None
    created_before: datetime | None = None
    hide_blockers: bool = False
    chain_or_job_id: UUID | None = None


@dataclass
class ChainPage:
    """One page of chains, newest first.

    ``next_cursor`` is the opaque position of the next page (None: nothing
    more). ``searched_to`` is set when the database stopped walking before
    the page filled (a rare filter): chains created before it were not
    examined yet, and ``next_cursor`` continues from there.
    """

    chains: list[Row] = field(default_factory=list)
    next_cursor: str | None = None
    searched_to: datetime | None = None


def encode_cursor(created_at: datetime, chain_id: UUID) -> str:
    raw = f"{created_at.isoformat()}|{chain_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """Raises ValueError for anything that is not one of our cursors."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, chain_id = raw.split("|")
        created_at = datetime.fromisoformat(stamp)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError(f"not a page cursor: {cursor!r}") from None
    if created_at.tzinfo is None:
        raise ValueError(f"not a page cursor: {cursor!r}")
    return created_at, UUID(chain_id)


class Queries:
    """Reads of one queuert schema."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._s = sql.Identifier(schema)

    def _fn(self, name: str, args: str) -> sql.Composed:
        return sql.SQL("SELECT * FROM {}.{}(" + args + ")").format(self._s, sql.Identifier(name))

    async def _rows(self, conn: AsyncConn, query: sql.Composed, params: dict[str, Any]) -> list[Row]:
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall()

    async def chains(
        self,
        conn: AsyncConn,
        flt: ChainFilter,
        *,
        limit: int,
        after: tuple[datetime, UUID] | None = None,
        scan_limit: int = 10_000,
    ) -> ChainPage:
        rows = await self._rows(
            conn,
            self._chains_sql(),
            {
                "chain_type": flt.chain_type,
                "statuses": list(flt.statuses) or None,
                "created_from": flt.created_from,
                "created_before": flt.created_before,
                "hide_blockers": flt.hide_blockers,
                "id": flt.chain_or_job_id,
                "after_at": after[0] if after else None,
                "after_id": after[1] if after else None,
                "limit": limit,
                "scan_limit": scan_limit,
            },
        )
        page = ChainPage(chains=[r for r in rows if not r["is_cursor"]])
        cursor = next((r for r in rows if r["is_cursor"]), None)
        if cursor is not None:
            page.next_cursor = encode_cursor(cursor["created_at"], cursor["chain_id"])
            if len(page.chains) < limit:
                page.searched_to = cursor["created_at"]
        return page

    def _chains_sql(self) -> sql.Composed:
        return sql.SQL(
            "SELECT * FROM {s}.dashboard_chains("
            "chain_type => %(chain_type)s, statuses => %(statuses)s::{s}.job_status[],"
            " created_from => %(created_from)s, created_before => %(created_before)s,"
            " hide_blockers => %(hide_blockers)s, chain_or_job_id => %(id)s,"
            " after_created_at => %(after_at)s, after_id => %(after_id)s,"
            " max_rows => %(limit)s, scan_limit => %(scan_limit)s)"
        ).format(s=self._s)

    async def chain_estimate(self, conn: AsyncConn) -> int | None:
        rows = await self._rows(conn, self._fn("dashboard_chain_estimate", ""), {})
        value = rows[0]["dashboard_chain_estimate"] if rows else None
        return int(value) if value is not None else None

    async def stats(self, conn: AsyncConn, recent: timedelta) -> list[Row]:
        return await self._rows(conn, self._fn("dashboard_stats", "%(recent)s"), {"recent": recent})

    async def failures(
        self,
        conn: AsyncConn,
        *,
        chain_type: str | None = None,
        created_from: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 10,
    ) -> list[Row]:
        return await self._rows(
            conn,
            self._fn(
                "dashboard_failures",
                "chain_type => %(chain_type)s, created_from => %(created_from)s,"
                " created_before => %(created_before)s, max_rows => %(limit)s",
            ),
            {
                "chain_type": chain_type,
                "created_from": created_from,
                "created_before": created_before,
                "limit": limit,
            },
        )

    async def workers(self, conn: AsyncConn) -> list[Row]:
        return await self._rows(conn, self._fn("dashboard_workers", ""), {})

    async def chain_jobs(self, conn: AsyncConn, chain_id: UUID) -> list[Row]:
        return await self._rows(conn, self._fn("chain_jobs", "%(id)s"), {"id": chain_id})

    async def chain_links(self, conn: AsyncConn, chain_id: UUID, limit: int) -> list[Row]:
        return await self._rows(
            conn, self._fn("dashboard_chain_links", "%(id)s, %(limit)s"), {"id": chain_id, "limit": limit}
        )

    async def job(self, conn: AsyncConn, job_id: UUID) -> Row | None:
        rows = await self._rows(conn, self._fn("dashboard_job", "%(id)s"), {"id": job_id})
        return rows[0] if rows else None

    async def dependents(
        self, conn: AsyncConn, chain_ids: list[UUID], cascade: bool, limit: int = 100
    ) -> list[Row]:
        return await self._rows(
            conn,
            self._fn("dashboard_dependents", "%(ids)s::uuid[], %(cascade)s, %(limit)s"),
            {"ids": chain_ids, "cascade": cascade, "limit": limit},
        )
