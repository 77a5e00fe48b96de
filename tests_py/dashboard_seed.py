"""Seeding helpers for the dashboard tests: real chains in every status,
made through the engine's SQL API (no hand-written rows)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg

Conn = psycopg.Connection[Any]


def start(conn: Conn, type_name: str, input: Any = None, **kw: Any) -> uuid.UUID:
    args = ["type_name => %(t)s", "input => %(i)s::jsonb"]
    params: dict[str, Any] = {"t": type_name, "i": json.dumps(input)}
    for key, value in kw.items():
        cast = "::uuid[]" if key == "blockers" else ""
        args.append(f"{key} => %({key})s{cast}")
        params[key] = value
    row = conn.execute(f"SELECT id FROM queuert.start_chain({', '.join(args)})", params).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def claim(conn: Conn, type_name: str, worker: str = "seed-worker") -> uuid.UUID:
    row = conn.execute(
        "SELECT id FROM queuert.claim(%s, ARRAY[%s]::text[])", (worker, type_name)
    ).fetchone()
    assert row is not None, f"nothing to claim of {type_name}"
    return row[0]  # type: ignore[no-any-return]


def complete(conn: Conn, type_name: str, output: Any = None) -> uuid.UUID:
    job = claim(conn, type_name)
    conn.execute("SELECT * FROM queuert.complete(%s, 'seed-worker', %s::jsonb)", (job, json.dumps(output)))
    return job


def fail_for_good(conn: Conn, type_name: str, error: str = "ValueError: boom") -> uuid.UUID:
    """Claims one job of the type and fails it with its type's attempts used up."""
    conn.execute("SELECT queuert.set_job_type(%s, max_attempts => 1)", (type_name,))
    job = claim(conn, type_name)
    row = conn.execute("SELECT status::text FROM queuert.fail(%s, 'seed-worker', %s)", (job, error)).fetchone()
    assert row == ("failed",), row
    return job


def continue_with(conn: Conn, type_name: str, next_type: str) -> uuid.UUID:
    job = claim(conn, type_name)
    row = conn.execute(
        "SELECT id FROM queuert.continue_with(%s, 'seed-worker', %s)", (job, next_type)
    ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def status_of(conn: Conn, chain_id: uuid.UUID) -> str:
    row = conn.execute("SELECT status::text FROM queuert.chain WHERE chain_id = %s", (chain_id,)).fetchone()
    assert row is not None, f"no chain {chain_id}"
    return str(row[0])


def snapshot(conn: Conn) -> Any:
    """Every job and blocker row, to prove a refused request changed nothing."""
    return conn.execute(
        "SELECT (SELECT jsonb_agg(j ORDER BY j.id) FROM queuert.job j),"
        " (SELECT jsonb_agg(b ORDER BY b.job_id, b.position) FROM queuert.job_blocker b)"
    ).fetchone()
