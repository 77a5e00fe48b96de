"""start_chains: many chains from one call, in a fixed number of statements.

Items are the PostgreSQL engine's JSON objects (keys ``type_name, input,
id, schedule_at, schedule_after_ms, blockers, dedup_key, dedup_scope,
dedup_window_ms, priority, trace_context``), given as a list of dicts or
as JSON text. This module checks them (the same QU006 messages as
``_chain_item_problem``) and converts them; sqlite/sql/031_start_chains.sql
does the rest: one INSERT for plain items, a working table in the temp
schema for items with ids, blockers or dedup keys.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from . import _checks as check
from ._connection import one, rows, run, writing
from ._errors import engine_error
from ._notices import announce
from ._rows import Row
from ._statements import statements
from ._values import MAX_DURATION_US, from_us, new_job_id, new_job_id_batch, now_us, to_json, to_us

__all__ = ["start_chains", "start_usual_items"]

_KEYS = frozenset(
    {
        "type_name",
        "input",
        "id",
        "schedule_at",
        "schedule_after_ms",
        "blockers",
        "dedup_key",
        "dedup_scope",
        "dedup_window_ms",
        "priority",
        "trace_context",
    }
)
# Items with any of these go through the working table.
_GENERAL = ("id", "blockers", "dedup_key")
# Items with only these keys take the fast path.
_FAST_KEYS = frozenset({"type_name", "input", "priority", "trace_context"})
_INT32 = (-(2**31), 2**31 - 1)
_YEAR_10000_US = 253_402_300_800_000_000


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid_text(value: Any) -> str | None:
    """The stored form of an id (lower case, hyphens), or None if it is none."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str):
        if _CANONICAL_UUID.fullmatch(value):
            return value  # the common case, without building a UUID

        try:
            return str(UUID(value))
        except ValueError:
            return None
    return None


def _timestamp(value: Any) -> int:
    if isinstance(value, datetime):
        return to_us(value)
    text = str(value).strip()
    if text.lower() in ("infinity", "+infinity"):
        return _YEAR_10000_US
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return to_us(parsed)


def _problem(item: Any) -> str | None:
    """Why an item is malformed, or None (JSON null takes the default)."""
    if not isinstance(item, Mapping):
        return "is not a JSON object"
    unknown = sorted(k for k in item if k not in _KEYS)
    if unknown:
        return "has unknown key(s) " + ", ".join("'" + str(k).replace("'", "''") + "'" for k in unknown)
    v = {k: item.get(k) for k in _KEYS}
    after, window, priority = v["schedule_after_ms"], v["dedup_window_ms"], v["priority"]
    if v["type_name"] is None:
        return "has no type_name"
    if not isinstance(v["type_name"], str):
        return "type_name is not a string"
    if not 1 <= len(v["type_name"]) <= 255:
        return "type_name must be 1 to 255 characters"
    if v["id"] is not None and _uuid_text(v["id"]) is None:
        return "id is not a UUID"
    if v["schedule_at"] is not None and not isinstance(v["schedule_at"], (str, datetime)):
        return "schedule_at is not a timestamp string"
    if after is not None and not _is_number(after):
        return "schedule_after_ms is not a number"
    if after is not None and after < 0:
        return "schedule_after_ms must not be negative"
    if after is not None and after > 3.15e13:
        return "schedule_after_ms is too large"
    if v["schedule_at"] is not None and after is not None:
        return "gives both schedule_at and schedule_after_ms"
    if v["blockers"] is not None and not isinstance(v["blockers"], (list, tuple)):
        return "blockers is not an array"
    if v["blockers"] is not None and any(_uuid_text(b) is None for b in v["blockers"]):
        return "blockers must be an array of UUID strings"
    if v["dedup_key"] is not None and not isinstance(v["dedup_key"], str):
        return "dedup_key is not a string"
    if v["dedup_key"] is not None and len(v["dedup_key"].encode("utf-8")) > 1024:
        return "dedup_key must be at most 1024 bytes"
    if v["dedup_scope"] is not None and v["dedup_scope"] not in ("incomplete", "any"):
        return "dedup_scope must be 'incomplete' or 'any'"
    if window is not None and not _is_number(window):
        return "dedup_window_ms is not a number"
    if window is not None and window < 0:
        return "dedup_window_ms must not be negative"
    if window is not None and window > 3.15e15:
        return "dedup_window_ms is too large"
    if priority is not None and (
        not _is_number(priority) or priority != int(priority) or not -(2**31) <= priority <= 2**31 - 1
    ):
        return "priority is not a 32-bit integer"
    if v["trace_context"] is not None and not isinstance(v["trace_context"], str):
        return "trace_context is not a string"
    if v["schedule_at"] is not None:
        try:
            _timestamp(v["schedule_at"])
        except (ValueError, OverflowError) as e:
            return f"is malformed: {e}"
    return None


def _parse(items: Any) -> list[Mapping[str, Any]]:
    if isinstance(items, (str, bytes)):
        try:
            items = json.loads(items)
        except ValueError:
            items = None
    if not isinstance(items, (list, tuple)):
        check.invalid("start_chains expects a JSON array of objects")
    for n, item in enumerate(items, start=1):
        problem = _problem(item)
        if problem is not None:
            check.invalid(f"start_chains item {n} {problem}")
    return list(items)


def _item_row(n: int, item: Mapping[str, Any]) -> dict[str, Any]:
    """An item as the working row of sqlite/sql/031_start_chains.sql."""
    given = item.get("id")
    after = item.get("schedule_after_ms")
    window = item.get("dedup_window_ms")
    at = None if item.get("schedule_at") is None else _timestamp(item["schedule_at"])
    if at is not None and at >= _YEAR_10000_US:
        check.invalid(f"start_chains item {n} schedule_at must be before the year 10000")
    return {
        "ord": n,
        "id": new_job_id() if given is None else _uuid_text(given),
        "id_given": given is not None,
        "type_name": item["type_name"],
        "input": to_json(item.get("input")),
        "schedule_at": at,
        "schedule_after": None if after is None else round(after * 1000),
        "dedup_key": item.get("dedup_key"),
        "dedup_scope": item.get("dedup_scope") or "incomplete",
        "dedup_window": None if window is None else min(round(window * 1000), MAX_DURATION_US),
        "priority": int(item.get("priority") or 0),
        "trace_context": item.get("trace_context"),
        "blockers": [_uuid_text(b) for b in item.get("blockers") or ()],
    }


def _fast_rows(items: list[Any], now: int) -> tuple[list[Any], list[UUID]] | None:
    """The parameters of a batch whose every item is a type name, an input
    and maybe a priority or trace context (the bulk of real batches), each
    checked with a few type tests: start_chains_fast's six per item, in one
    flat list, and the items' new ids; None when any item needs more (the
    PostgreSQL engine's _chain_item_ok)."""
    ids, texts = new_job_id_batch(len(items))
    params: list[Any] = []
    add = params.extend
    for item, text in zip(items, texts):
        if type(item) is not dict:
            return None
        if len(item) == 2 and "input" in item:  # a type and an input: the usual item
            type_name = item.get("type_name")
            priority = trace = None
        elif item.keys() <= _FAST_KEYS:
            type_name = item.get("type_name")
            priority = item.get("priority")
            trace = item.get("trace_context")
            if not (
                (priority is None or (type(priority) is int and _INT32[0] <= priority <= _INT32[1]))
                and (trace is None or type(trace) is str)
            ):
                return None
        else:
            return None
        if type(type_name) is not str or not 0 < len(type_name) <= 255:
            return None
        add((text, type_name, to_json(item.get("input")), priority or 0, now, trace))
    return params, ids


#: rows per INSERT of start_usual_items, largest first: Python's sqlite3
#: spends about 1.5 us on each execute of an executemany (a reset and a
#: step per row), a multi-row VALUES pays that once per statement; a few
#: fixed sizes keep the connection's statement cache to three entries
_ROWS_PER_INSERT = (100, 10)
_PARAMS_PER_ROW = 6
_NUMBERED = re.compile(r"\?(\d+)")


@functools.lru_cache(maxsize=16)
def _many_rows(statement: str, rows: int) -> str:
    """start_chains_fast (``INSERT ... VALUES (<one row>)``, parameters
    ?1 .. ?6) inserting ``rows`` rows: its VALUES row repeated, the
    parameters of row k renumbered ?6k+1 .. ?6k+6. Rows go in the order
    written, so seq keeps input order."""
    head, _, row = statement.rpartition("VALUES")
    row = row.strip()
    values = ", ".join(
        _NUMBERED.sub(lambda m: f"?{int(m.group(1)) + k * _PARAMS_PER_ROW}", row) for k in range(rows)
    )
    return f"{head}VALUES {values}"


def _insert_usual(conn: sqlite3.Connection, statement: str, params: list[Any]) -> None:
    """start_chains_fast for every item of ``params`` (six per item), in
    input order: multi-row INSERTs of _ROWS_PER_INSERT rows, then one
    executemany for the last few."""
    start, end = 0, len(params)
    for rows in _ROWS_PER_INSERT:
        width = rows * _PARAMS_PER_ROW
        if end - start >= width:
            many = _many_rows(statement, rows)
            while end - start >= width:
                conn.execute(many, params[start : start + width])
                start += width
    if start < end:
        rest = iter(params[start:])
        conn.executemany(statement, zip(*[rest] * _PARAMS_PER_ROW))


def start_chains(
    conn: sqlite3.Connection, items: Sequence[Mapping[str, Any]] | str, *, schema: str = "queuert"
) -> list[Row]:
    """Create many chains (DESIGN.md ``start_chains``); one row per item, in
    input order: ``ord, id, chain_id, type_name, status, scheduled_at,
    created_at, deduplicated``."""
    if isinstance(items, (str, bytes)):
        try:
            items = json.loads(items)
        except ValueError:
            items = None  # type: ignore[assignment]
    if not isinstance(items, (list, tuple)):
        check.invalid("start_chains expects a JSON array of objects")
    if not items:
        return []
    fast = start_usual_items(conn, items, schema)
    if fast is not None:
        ids, type_names, created = fast
        return [
            {
                "ord": n, "id": job_id, "chain_id": job_id, "type_name": type_name, "status": "pending",
                "scheduled_at": created, "created_at": created, "deduplicated": False,
            }
            for n, (job_id, type_name) in enumerate(zip(ids, type_names), start=1)
        ]
    q = statements(schema)
    parsed = _parse(items)
    work = [_item_row(n, item) for n, item in enumerate(parsed, start=1)]
    general = any(item.get(k) is not None for item in parsed for k in _GENERAL)
    with writing(conn, schema, "start chains", single_write=not general):
        now = now_us()
        result = _general(conn, q, work, now) if general else _plain(conn, q, work, now)
    announce(ready_types=dict.fromkeys(
        r["type_name"] for r in result if r["status"] == "pending" and not r["deduplicated"]
    ))
    return result


def start_usual_items(
    conn: sqlite3.Connection, items: Sequence[Any], schema: str
) -> tuple[list[UUID], list[str], datetime] | None:
    """Start a batch whose every item is a type, an input and maybe a
    priority or trace context (the bulk of real batches) with one prepared
    INSERT per item: the new chains' ids and types, in input order, and
    their creation time (every one pending, due then). None, having written
    nothing, when any item needs more (start_chains takes it then)."""
    now = now_us()
    fast = _fast_rows(items if isinstance(items, list) else list(items), now)
    if fast is None:
        return None
    params, ids = fast
    with writing(conn, schema, "start chains", single_write=True):
        _insert_usual(conn, statements(schema)["start_chains_fast"], params)
    type_names = params[1::_PARAMS_PER_ROW]
    announce(ready_types=dict.fromkeys(type_names))
    return ids, type_names, from_us(now)  # type: ignore[return-value]


def _plain(conn: sqlite3.Connection, q: dict[str, str], work: list[dict[str, Any]], now: int) -> list[Row]:
    payload = json.dumps([
        [w["id"], w["type_name"], w["input"], w["priority"], w["schedule_at"], w["schedule_after"], w["trace_context"]]
        for w in work
    ])
    scheduled = dict(rows(conn, q["start_chains_plain"], {"items": payload, "now": now}))
    created = from_us(now)
    out: list[Row] = []
    for w in work:
        chain_id = UUID(w["id"])
        out.append({
            "ord": w["ord"],
            "id": chain_id,
            "chain_id": chain_id,
            "type_name": w["type_name"],
            "status": "pending",
            "scheduled_at": from_us(scheduled[w["id"]]),
            "created_at": created,
            "deduplicated": False,
        })
    return out


def _general(conn: sqlite3.Connection, q: dict[str, str], work: list[dict[str, Any]], now: int) -> list[Row]:
    for name in ("batch_item_table", "batch_item_id_index", "batch_item_resolved_index",
                 "batch_edge_table", "batch_clear_items", "batch_clear_edges"):
        run(conn, q[name])
    conn.executemany(q["batch_add_item"], [{**w, "now": now} for w in work])
    conn.executemany(
        q["batch_add_edge"],
        [{"ord": w["ord"], "pos": pos, "ref": ref} for w in work for pos, ref in enumerate(w["blockers"], start=1)],
    )
    try:
        repeated = one(conn, q["batch_repeated_id"])
        if repeated is not None:
            raise engine_error(
                "QU006", f"start_chains gives id {repeated[0]} to more than one item", f"job_id={repeated[0]}"
            )
        if any(w["dedup_key"] is not None for w in work):
            run(conn, q["batch_dedup"], {"now": now})
            run(conn, q["batch_existing"])
        run(conn, q["batch_resolve_edges"])
        bad = one(conn, q["batch_bad_edge"])
        if bad is not None:
            raise engine_error(
                "QU002",
                f"start_chains item {bad[0]} names blocker {bad[1]}, which is that item itself or a later one",
                f"chain_id={bad[1]}",
            )
        run(conn, q["batch_drop_edges"])
        run(conn, q["batch_mark_internal"])
        missing = one(conn, q["batch_missing_blocker"])
        if missing is not None:
            raise engine_error("QU002", f"blocker chain {missing[0]} not found", f"chain_id={missing[0]}")
        existing = one(conn, q["batch_existing_id"])
        if existing is not None:
            raise engine_error("QU006", f"a job with id {existing[0]} already exists", f"job_id={existing[0]}")
        run(conn, q["batch_count_open"])
        run(conn, q["batch_insert_jobs"], {"now": now})
        run(conn, q["batch_insert_edges"])
        result = rows(conn, q["batch_result"], {"now": now})
    finally:
        run(conn, q["batch_clear_items"])
        run(conn, q["batch_clear_edges"])
    return [
        {
            "ord": ord_,
            "id": UUID(resolved),
            "chain_id": UUID(resolved),
            "type_name": type_name,
            "status": status,
            "scheduled_at": from_us(scheduled_at),
            "created_at": from_us(created_at),
            "deduplicated": bool(deduplicated),
        }
        for ord_, resolved, type_name, status, scheduled_at, created_at, deduplicated in result
    ]
