"""Request parameters: parsed and checked here, never pasted into SQL.

Bad input raises :class:`BadRequest` (HTTP 400) with a message that names
the parameter.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from .queries import STATUSES, ChainFilter, decode_cursor

DEFAULT_PAGE = 50
MAX_PAGE = 500


class BadRequest(Exception):
    """Invalid request parameter (HTTP 400)."""


def uuid_param(value: str | None, name: str) -> UUID:
    try:
        return UUID(str(value).strip())
    except (ValueError, AttributeError, TypeError):
        raise BadRequest(f"{name}: not a UUID: {value!r}") from None


def uuid_list(values: Iterable[Any], name: str) -> list[UUID]:
    ids: list[UUID] = []
    for v in values:
        text = str(v).strip()
        if not text:
            continue
        ids.append(uuid_param(text, name))
    return ids


def _time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name}: not an ISO date/time: {value!r}") from None
    # a datetime-local field has no zone: the dashboard shows UTC, so read UTC
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _flag(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "on", "yes")


def chain_filter(q: Mapping[str, Any], statuses: list[str]) -> ChainFilter:
    """From a query string or form (``statuses``: every ``status`` value)."""
    wanted = tuple(s for s in (x.strip() for x in statuses) if s)
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown:
        raise BadRequest(f"status: unknown {', '.join(map(repr, unknown))}; one of {', '.join(STATUSES)}")
    chain_type = str(q.get("type") or "").strip() or None
    if chain_type is not None and len(chain_type) > 255:
        raise BadRequest("type: at most 255 characters")
    raw_id = str(q.get("id") or "").strip()
    created_from = _time(q["from"], "from") if q.get("from") else None
    created_before = _time(q["to"], "to") if q.get("to") else None
    return ChainFilter(
        chain_type=chain_type,
        statuses=wanted,
        created_from=created_from,
        created_before=created_before,
        hide_blockers=_flag(q.get("hide_blockers", "")),
        chain_or_job_id=uuid_param(raw_id, "id") if raw_id else None,
    )


def page_size(value: Any) -> int:
    if value in (None, ""):
        return DEFAULT_PAGE
    try:
        n = int(str(value))
    except ValueError:
        raise BadRequest(f"limit: not a number: {value!r}") from None
    if not 1 <= n <= MAX_PAGE:
        raise BadRequest(f"limit: between 1 and {MAX_PAGE}, got {n}")
    return n


def cursor(value: Any) -> tuple[datetime, UUID] | None:
    if not value:
        return None
    try:
        return decode_cursor(str(value))
    except ValueError as exc:
        raise BadRequest(f"after: {exc}") from None


def filter_query(flt: ChainFilter) -> list[tuple[str, str]]:
    """The filter as query-string pairs (links to the next page keep it)."""
    pairs: list[tuple[str, str]] = []
    if flt.chain_type:
        pairs.append(("type", flt.chain_type))
    pairs.extend(("status", s) for s in flt.statuses)
    if flt.chain_or_job_id:
        pairs.append(("id", str(flt.chain_or_job_id)))
    if flt.created_from:
        pairs.append(("from", flt.created_from.isoformat()))
    if flt.created_before:
        pairs.append(("to", flt.created_before.isoformat()))
    if flt.hide_blockers:
        pairs.append(("hide_blockers", "1"))
    return pairs


def selected_pairs(values: Iterable[Any]) -> tuple[list[UUID], list[UUID]]:
    """A chain list's checked rows: ``"chain_id job_id"`` each; returns the
    chain ids and the current job ids."""
    chains: list[UUID] = []
    jobs: list[UUID] = []
    for v in values:
        parts = str(v).split()
        if len(parts) != 2:
            raise BadRequest(f"selected: expected 'chain_id job_id', got {v!r}")
        chains.append(uuid_param(parts[0], "selected"))
        jobs.append(uuid_param(parts[1], "selected"))
    return chains, jobs
