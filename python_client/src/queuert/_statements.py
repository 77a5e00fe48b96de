"""The client's statements, as SQL text built once per schema (and shape).

Every function takes a schema name that has already passed
``validate_schema_name``, so splicing it into the text is safe. The hot
statements (``start_chain``, ``start_chains``) take positional parameters,
which psycopg binds with less work than named ones; the others take named
parameters for readability.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = [
    "CHAIN_COLUMNS",
    "IS_LISTENING",
    "START_CHAIN_OPTIONAL",
    "chain_op",
    "complete_chain",
    "continue_chain",
    "current_job",
    "current_job_probe",
    "delete_schedule",
    "fire_schedules",
    "get_chain",
    "job_op",
    "list_chains",
    "list_schedules",
    "next_schedule_at",
    "prune",
    "set_job_type",
    "set_schedule",
    "start_chain",
    "start_chain_plain",
    "start_chains",
    "wait_probe",
]

#: start_chain's optional arguments: their SQL types and the engine's
#: defaults (docs/DESIGN.md). One at its default is left out of the call, so
#: the common start binds two parameters instead of eleven.
START_CHAIN_OPTIONAL: dict[str, tuple[str, Any]] = {
    "id": ("uuid", None),
    "schedule_at": ("timestamptz", None),
    "schedule_after": ("interval", None),
    "blockers": ("uuid[]", None),
    "dedup_key": ("text", None),
    "dedup_scope": ("text", "incomplete"),
    "dedup_window": ("interval", None),
    "priority": ("int", 0),
    "trace_context": ("text", None),
}

# The columns of a StartedChain, in queuert._started_rows' order; a chain is
# its root job, so chain_id (= id) is not fetched twice. The timestamps come
# as text: _started_rows parses each distinct one once (a batch's rows, and
# a start's two, repeat them).
_STARTED_COLUMNS = "id, type_name, status::text, scheduled_at::text, created_at::text, deduplicated"


@lru_cache(maxsize=256)
def start_chain(s: str, given: tuple[str, ...], traced: bool = False) -> str:
    """Parameters: type_name, input (JSON text), then one per name in
    ``given``, in that order. ``traced``: also the root's trace_context (a
    deduplicated start's is the existing chain's, for a span link)."""
    args = "".join(f", {name} => %s::{START_CHAIN_OPTIONAL[name][0]}" for name in given)
    columns = f"{_STARTED_COLUMNS}, trace_context" if traced else _STARTED_COLUMNS
    return (
        f"SELECT {columns} FROM {s}.start_chain("
        f"type_name => %s::text, input => %s::jsonb{args})"
    )


def start_chain_plain(s: str) -> str:
    """The common start (a type name and an input, every option at its
    default, no telemetry): :mod:`queuert._plain_start` reads its row as a
    tuple. ``created_at`` is loaded by psycopg itself (the connection's
    loader, in its time zone); ``scheduled_at`` comes only when it differs
    (it is NOT NULL, so NULL means "the same instant": one timestamp
    loaded, not two)."""
    return (
        "SELECT id, type_name, status::text, created_at, NULLIF(scheduled_at, created_at),"
        f" deduplicated FROM {s}.start_chain(type_name => %s::text, input => %s::jsonb)"
    )


@lru_cache(maxsize=64)
def start_chains(s: str, traced: bool = False) -> str:
    """One parameter: the items as JSON text. The engine returns the rows in
    input order (docs/DESIGN.md), so no ORDER BY and no ``ord`` column.
    ``traced``: also each item's trace_context (a deduplicated item's is the
    chain's it resolved to, for a span link)."""
    columns = f"{_STARTED_COLUMNS}, trace_context" if traced else _STARTED_COLUMNS
    return f"SELECT {columns} FROM {s}.start_chains(items => %s::jsonb)"


def current_job(s: str, by_job_id: bool) -> str:
    # A chain's current job is its last one (highest chain_index): a later
    # job through the unique index (chain_id, chain_index), which holds
    # positions > 0 only, or else the root, read by its id.
    # trace_context and chain_type_name: for the settle span (queuert.telemetry)
    if by_job_id:
        return f"""SELECT j.id, j.type_name, j.status::text AS status, j.trace_context,
    j.chain_type_name FROM {s}.job j
    WHERE j.chain_id = %(chain_id)s::uuid AND j.id = %(job_id)s::uuid"""
    return f"""SELECT u.id, u.type_name, u.status, u.trace_context, u.chain_type_name FROM (
    (SELECT j.id, j.type_name, j.status::text AS status, j.chain_index, j.trace_context,
    j.chain_type_name FROM {s}.job j
    WHERE j.chain_id = %(chain_id)s::uuid AND j.chain_index > 0
    ORDER BY j.chain_index DESC LIMIT 1)
    UNION ALL
    SELECT j.id, j.type_name, j.status::text, j.chain_index, j.trace_context,
    j.chain_type_name FROM {s}.job j
    WHERE j.id = %(chain_id)s::uuid AND j.chain_index = 0
) u ORDER BY u.chain_index DESC LIMIT 1"""


@lru_cache(maxsize=64)
def current_job_probe(s: str, by_job_id: bool) -> str:
    return current_job(s, by_job_id)


@lru_cache(maxsize=64)
def complete_chain(s: str, by_job_id: bool) -> str:
    return f"""WITH cur AS MATERIALIZED (
    {current_job(s, by_job_id)}
)
SELECT r.id, r.chain_id, r.status::text AS status, r.chain_completed,
       cur.status AS previous_status, r.dependents, r.unblocked_types
FROM cur
CROSS JOIN LATERAL {s}.complete(
    job_id => cur.id,
    worker_id => NULL::text,
    output => %(output)s::jsonb,
    trace_context => %(trace_context)s::text
) r
WHERE %(expected_type)s::text IS NULL OR cur.type_name = %(expected_type)s::text"""


@lru_cache(maxsize=64)
def continue_chain(s: str, by_job_id: bool) -> str:
    return f"""WITH cur AS MATERIALIZED (
    {current_job(s, by_job_id)}
)
SELECT cur.id AS previous_job_id, cur.status AS previous_status, r.id, r.chain_id,
       r.chain_index, r.type_name, r.status::text AS status, r.scheduled_at, r.deduplicated
FROM cur
CROSS JOIN LATERAL {s}.continue_with(
    job_id => cur.id,
    worker_id => NULL::text,
    type_name => %(type_name)s::text,
    input => %(input)s::jsonb,
    id => %(id)s::uuid,
    schedule_at => %(schedule_at)s::timestamptz,
    schedule_after => %(schedule_after)s::interval,
    blockers => %(blockers)s::uuid[],
    priority => %(priority)s::int,
    trace_context => %(trace_context)s::text
) r
WHERE %(expected_type)s::text IS NULL OR cur.type_name = %(expected_type)s::text"""


@lru_cache(maxsize=64)
def chain_op(s: str, fn: str) -> str:
    # lost_job_ids: the jobs of each chain that were running, read from the
    # statement's snapshot (taken before the function cancelled or deleted
    # them), so the transaction hooks can publish job_lost to their workers
    # (the engine's own NOTIFY reaches only PostgreSQL listeners). A hint:
    # a worker that misses it learns at its next lease renewal.
    return f"""SELECT r.chain_id, ARRAY(
    SELECT j.id FROM {s}.job j
    WHERE ((j.chain_index > 0 AND j.chain_id = r.chain_id) OR (j.chain_index = 0 AND j.id = r.chain_id))
        AND j.status = 'running'
) AS lost_job_ids
FROM {s}.{fn}(chain_ids => %(chain_ids)s::uuid[], "cascade" => %(cascade)s::boolean) r"""


@lru_cache(maxsize=64)
def job_op(s: str, fn: str) -> str:
    # type_name never changes, so reading it from the statement's snapshot
    # (taken before the function ran) is correct.
    return f"""SELECT r.job_id, j.type_name
FROM {s}.{fn}(job_ids => %(job_ids)s::uuid[]) WITH ORDINALITY AS r(job_id, ord)
LEFT JOIN {s}.job j ON j.id = r.job_id
ORDER BY r.ord"""


CHAIN_COLUMNS = (
    "chain_id",
    "type_name",
    "status",
    "current_job_id",
    "current_type_name",
    "job_count",
    "created_at",
    "completed_at",
    "output",
)


def _chain_select(alias: str, prefix: str = "") -> str:
    cols = []
    for c in CHAIN_COLUMNS:
        expr = f"{alias}.{c}::text" if c == "status" else f"{alias}.{c}"
        cols.append(f'{expr} AS "{prefix}{c}"')
    return ", ".join(cols)


@lru_cache(maxsize=64)
def get_chain(s: str) -> str:
    """The chain's columns prefixed with ``chain.``, then its jobs' columns."""
    return f"""SELECT {_chain_select("c", "chain.")}, j.*
FROM {s}.chain c
LEFT JOIN LATERAL {s}.chain_jobs(c.chain_id) j ON true
WHERE c.chain_id = %(chain_id)s::uuid
ORDER BY j.chain_index"""


@lru_cache(maxsize=256)
def list_chains(s: str, by_type: bool, by_status: bool, after: bool) -> str:
    where = ["r.chain_index = 0"]
    if by_type:
        where.append("r.type_name = %(type_name)s::text")
    if by_status:
        where.append("c.status::text = ANY(%(statuses)s::text[])")
    if after:
        where.append(
            "(r.created_at, r.id) < (%(after_created_at)s::timestamptz, %(after_id)s::uuid)"
        )
    # Walk chain roots newest first through their (created_at, id) index and
    # look each one up in the chain view.
    return f"""SELECT {_chain_select("c")}
FROM {s}.job r
CROSS JOIN LATERAL (SELECT * FROM {s}.chain v WHERE v.chain_id = r.id) c
WHERE {" AND ".join(where)}
ORDER BY r.created_at DESC, r.id DESC
LIMIT %(limit)s::int"""


@lru_cache(maxsize=64)
def wait_probe(s: str) -> str:
    return f"""SELECT {_chain_select("c")},
       (SELECT j.last_attempt_error FROM {s}.job j WHERE j.id = c.current_job_id)
           AS last_attempt_error,
       current_setting('transaction_isolation') AS isolation
FROM {s}.chain c
WHERE c.chain_id = %(chain_id)s::uuid"""


IS_LISTENING = "SELECT %(ch)s::text = ANY(ARRAY(SELECT pg_listening_channels())) AS listening"


# ------------------------------------------ job types, schedules, retention


@lru_cache(maxsize=64)
def set_job_type(s: str) -> str:
    return (
        f"SELECT * FROM {s}.set_job_type(type_name => %(type_name)s::text,"
        " max_attempts => %(max_attempts)s::int, backoff_initial => %(backoff_initial)s::interval,"
        " backoff_multiplier => %(backoff_multiplier)s::float8,"
        " backoff_max => %(backoff_max)s::interval, lease => %(lease)s::interval,"
        " max_running => %(max_running)s::int, rate_limit => %(rate_limit)s::int,"
        " rate_interval => %(rate_interval)s::interval)"
    )


@lru_cache(maxsize=64)
def set_schedule(s: str) -> str:
    return (
        f"SELECT * FROM {s}.set_schedule(name => %(name)s::text, cron => %(cron)s::text,"
        " type_name => %(type_name)s::text, input => %(input)s::jsonb,"
        " timezone => %(timezone)s::text, priority => %(priority)s::int)"
    )


@lru_cache(maxsize=64)
def delete_schedule(s: str) -> str:
    return f"SELECT {s}.delete_schedule(name => %(name)s::text) AS deleted"


@lru_cache(maxsize=64)
def list_schedules(s: str) -> str:
    return f"SELECT * FROM {s}.schedule ORDER BY name"


@lru_cache(maxsize=64)
def fire_schedules(s: str) -> str:
    return f"SELECT * FROM {s}.fire_schedules(type_names => %(type_names)s::text[])"


@lru_cache(maxsize=64)
def next_schedule_at(s: str) -> str:
    return f"SELECT {s}.next_schedule_at(type_names => %(type_names)s::text[]) AS at"


@lru_cache(maxsize=64)
def prune(s: str) -> str:
    return (
        f"SELECT chains, jobs FROM {s}.prune(older_than => %(older_than)s::interval,"
        " batch_size => %(batch_size)s::int, failed_older_than => %(failed_older_than)s::interval)"
    )
