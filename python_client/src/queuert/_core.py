"""Shared core of the sync (client.py) and async (aio.py) clients.

Every client operation is written once here, as a generator that yields the
statements it needs (:class:`Query`) and receives their rows; client.py and
aio.py only differ in how they execute a statement (``conn.execute`` or
``await conn.execute``). Statement text, parameter building, row mapping and
transaction-hook calls live here and nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import time
from collections.abc import Generator, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Callable, TypeVar
from uuid import UUID

from psycopg.types.json import Jsonb

from .errors import (
    ChainCancelledError,
    ChainFailedError,
    ChainNotFoundError,
    ChainWaitTimeout,
    InvalidArgumentError,
)
from .types import (
    BaseChainSpec,
    Chain,
    ChainPage,
    ChainSpec,
    CompletedJob,
    Continuation,
    ContinuedJob,
    Job,
    JobType,
    StartedChain,
    _check_delays,
    _type_name_of,
    dump_payload,
    to_json_value,
)

T = TypeVar("T")

Row = Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Query:
    sql: str
    params: Mapping[str, Any]
    #: rows as tuples in the statement's column order instead of dicts
    #: (cheaper for the many rows of a batch)
    tuples: bool = False


#: An operation: yields instructions (mostly queries), receives each one's
#: result (a query's rows), returns a result.
Op = Generator[Any, Any, T]
OpFactory = Callable[[], "Op[T]"]

_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,39}")


def check_schema(schema: str) -> str:
    if not isinstance(schema, str) or not _SCHEMA_RE.fullmatch(schema):
        raise InvalidArgumentError(
            f"schema name must match [a-z_][a-z0-9_]{{0,39}}, got {schema!r}"
        )
    return schema


# --------------------------------------------------------------------------
# transaction hooks (owned by queuert.hooks; optional)


def current_hooks() -> Any:
    """The active transaction-hooks context, or None (also when the hooks
    module is not installed)."""
    try:
        from . import hooks
    except ModuleNotFoundError as e:  # pragma: no cover - only before hooks.py exists
        if e.name == f"{__package__}.hooks":
            return None
        raise
    return hooks.current_hooks()


def _tell_hooks(
    ready_types: Iterable[str] = (),
    completed_chains: Iterable[UUID] = (),
    lost_jobs: Iterable[UUID] = (),
) -> None:
    ready = list(dict.fromkeys(ready_types))
    done = list(dict.fromkeys(completed_chains))
    lost = list(dict.fromkeys(lost_jobs))
    if not ready and not done and not lost:
        return
    hooks = current_hooks()
    if hooks is None:
        return
    for type_name in ready:
        hooks.job_ready(type_name)
    for chain_id in done:
        hooks.chain_completed(chain_id)
    for job_id in lost:
        hooks.job_lost(job_id)


# --------------------------------------------------------------------------
# statements (cached per schema)


# start_chain's optional arguments: their SQL types and the engine's defaults
# (docs/DESIGN.md). One at its default is left out of the call, so the common
# start binds two parameters instead of eleven.
_START_CHAIN_OPTIONAL: dict[str, tuple[str, Any]] = {
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


@lru_cache(maxsize=256)
def _sql_start_chain(s: str, given: tuple[str, ...]) -> str:
    args = "".join(
        f",\n    {name} => %({name})s::{_START_CHAIN_OPTIONAL[name][0]}" for name in given
    )
    return f"""SELECT id, chain_id, type_name, status::text AS status, scheduled_at,
       created_at, deduplicated
FROM {s}.start_chain(
    type_name => %(type_name)s::text,
    input => %(input)s::jsonb{args}
)"""


@lru_cache(maxsize=64)
def _sql_start_chains(s: str) -> str:
    return f"""SELECT ord, id, chain_id, type_name, status::text AS status, scheduled_at,
       created_at, deduplicated
FROM {s}.start_chains(items => %(items)s::jsonb)
ORDER BY ord"""


def _sql_current_job(s: str, by_job_id: bool) -> str:
    # A chain's current job is its last one (highest chain_index): a later
    # job through the unique index (chain_id, chain_index), which holds
    # positions > 0 only, or else the root, read by its id.
    if by_job_id:
        return f"""SELECT j.id, j.type_name, j.status::text AS status FROM {s}.job j
    WHERE j.chain_id = %(chain_id)s::uuid AND j.id = %(job_id)s::uuid"""
    return f"""SELECT u.id, u.type_name, u.status FROM (
    (SELECT j.id, j.type_name, j.status::text AS status, j.chain_index FROM {s}.job j
    WHERE j.chain_id = %(chain_id)s::uuid AND j.chain_index > 0
    ORDER BY j.chain_index DESC LIMIT 1)
    UNION ALL
    SELECT j.id, j.type_name, j.status::text, j.chain_index FROM {s}.job j
    WHERE j.id = %(chain_id)s::uuid AND j.chain_index = 0
) u ORDER BY u.chain_index DESC LIMIT 1"""


@lru_cache(maxsize=64)
def _sql_complete_chain(s: str, by_job_id: bool) -> str:
    return f"""WITH cur AS MATERIALIZED (
    {_sql_current_job(s, by_job_id)}
)
SELECT r.id, r.chain_id, r.status::text AS status, r.chain_completed,
       cur.status AS previous_status
FROM cur
CROSS JOIN LATERAL {s}.complete(
    job_id => cur.id,
    worker_id => NULL::text,
    output => %(output)s::jsonb
) r
WHERE %(expected_type)s::text IS NULL OR cur.type_name = %(expected_type)s::text"""


@lru_cache(maxsize=64)
def _sql_continue_chain(s: str, by_job_id: bool) -> str:
    return f"""WITH cur AS MATERIALIZED (
    {_sql_current_job(s, by_job_id)}
)
SELECT cur.id AS previous_job_id, cur.status AS previous_status, r.id, r.chain_id, r.chain_index, r.type_name,
       r.status::text AS status, r.scheduled_at, r.deduplicated
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
def _sql_current_job_probe(s: str, by_job_id: bool) -> str:
    return _sql_current_job(s, by_job_id)


@lru_cache(maxsize=64)
def _sql_chain_op(s: str, fn: str) -> str:
    return f"""SELECT r.chain_id
FROM {s}.{fn}(chain_ids => %(chain_ids)s::uuid[], "cascade" => %(cascade)s::boolean) r"""


@lru_cache(maxsize=64)
def _sql_job_op(s: str, fn: str) -> str:
    # type_name never changes, so reading it from the statement's snapshot
    # (taken before the function ran) is correct.
    return f"""SELECT r.job_id, j.type_name
FROM {s}.{fn}(job_ids => %(job_ids)s::uuid[]) WITH ORDINALITY AS r(job_id, ord)
LEFT JOIN {s}.job j ON j.id = r.job_id
ORDER BY r.ord"""


_CHAIN_COLS = (
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
    for c in _CHAIN_COLS:
        expr = f"{alias}.{c}::text" if c == "status" else f"{alias}.{c}"
        cols.append(f'{expr} AS "{prefix}{c}"')
    return ", ".join(cols)


@lru_cache(maxsize=64)
def _sql_get_chain(s: str) -> str:
    return f"""SELECT {_chain_select("c", "chain.")}, j.*
FROM {s}.chain c
LEFT JOIN LATERAL {s}.chain_jobs(c.chain_id) j ON true
WHERE c.chain_id = %(chain_id)s::uuid
ORDER BY j.chain_index"""


@lru_cache(maxsize=256)
def _sql_list_chains(s: str, by_type: bool, by_status: bool, after: bool) -> str:
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
def _sql_wait_probe(s: str) -> str:
    return f"""SELECT {_chain_select("c")},
       (SELECT j.last_attempt_error FROM {s}.job j WHERE j.id = c.current_job_id)
           AS last_attempt_error,
       current_setting('transaction_isolation') AS isolation
FROM {s}.chain c
WHERE c.chain_id = %(chain_id)s::uuid"""


# --------------------------------------------------------------------------
# parameter helpers


def _uuid(value: UUID | str, what: str) -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise InvalidArgumentError(f"{what} is not a UUID: {value!r}") from None


def _uuids(values: Iterable[UUID | str] | None, what: str) -> list[UUID] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes, UUID)):
        raise InvalidArgumentError(f"{what} must be a sequence of UUIDs, got {values!r}")
    return [_uuid(v, what) for v in values]


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


def _ms(td: timedelta | None) -> int | None:
    return None if td is None else round(td / timedelta(milliseconds=1))


def _check_priority(priority: int | None) -> None:
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise InvalidArgumentError(f"priority must be an int, got {priority!r}")


# --------------------------------------------------------------------------
# operations


def start_chain(
    schema: str,
    job_type: JobType[Any, Any] | str,
    input: Any,
    *,
    id: UUID | str | None,
    schedule_at: datetime | None,
    schedule_after: timedelta | None,
    blockers: Sequence[UUID | str] | None,
    dedup_key: str | None,
    dedup_scope: str,
    dedup_window: timedelta | None,
    priority: int,
    trace_context: str | None,
) -> OpFactory[StartedChain]:
    s = check_schema(schema)
    type_name = _type_name_of(job_type)
    _check_delays(schedule_at, schedule_after)
    _check_priority(priority)
    optional = {
        "id": None if id is None else _uuid(id, "id"),
        "schedule_at": schedule_at,
        "schedule_after": schedule_after,
        "blockers": _uuids(blockers, "blockers"),
        "dedup_key": dedup_key,
        "dedup_scope": dedup_scope,
        "dedup_window": dedup_window,
        "priority": priority,
        "trace_context": trace_context,
    }
    given = tuple(
        name
        for name, value in optional.items()
        if value is not None and value != _START_CHAIN_OPTIONAL[name][1]
    )
    params = {
        "type_name": type_name,
        # validated (and serialised) before anything reaches the database
        "input": _json(dump_payload(job_type, input)),
        **{name: optional[name] for name in given},
    }
    sql = _sql_start_chain(s, given)

    def op() -> Op[StartedChain]:
        # StartedChain's fields in order: see _sql_start_chain
        rows = yield Query(sql, params, tuples=True)
        started = StartedChain(*rows[0])
        if started.status == "pending" and not started.deduplicated:
            _tell_hooks(ready_types=[started.type_name])
        return started

    return op


def _chain_item(spec: BaseChainSpec) -> dict[str, Any]:
    if not isinstance(spec, ChainSpec):
        raise InvalidArgumentError(f"start_chains takes ChainSpec items, got {spec!r}")
    _check_priority(spec.priority)
    # Only the keys that differ from the defaults: most items are a type and
    # an input, and the engine inserts those in its fast path.
    item: dict[str, Any] = {"type_name": spec.type_name}
    if spec.input_json is not None:
        item["input"] = spec.input_json
    if spec.id is not None:
        item["id"] = str(_uuid(spec.id, "id"))
    if spec.schedule_at is not None:
        item["schedule_at"] = to_json_value(spec.schedule_at)
    if spec.schedule_after is not None:
        item["schedule_after_ms"] = _ms(spec.schedule_after)
    if spec.blockers is not None:
        item["blockers"] = [str(b) for b in _uuids(spec.blockers, "blockers") or []]
    if spec.dedup_key is not None:
        item["dedup_key"] = spec.dedup_key
    if spec.dedup_scope not in (None, "incomplete"):
        item["dedup_scope"] = spec.dedup_scope
    if spec.dedup_window is not None:
        item["dedup_window_ms"] = _ms(spec.dedup_window)
    if spec.priority:
        item["priority"] = spec.priority
    if spec.trace_context is not None:
        item["trace_context"] = spec.trace_context
    return item


def start_chains(schema: str, items: Sequence[BaseChainSpec]) -> OpFactory[list[StartedChain]]:
    s = check_schema(schema)
    if isinstance(items, (str, bytes, Mapping)):
        raise InvalidArgumentError("start_chains takes a sequence of ChainSpec")
    payload = [_chain_item(spec) for spec in items]
    sql = _sql_start_chains(s)

    def op() -> Op[list[StartedChain]]:
        if not payload:
            return []
        # (ord, then StartedChain's fields in order: see _sql_start_chains)
        rows = yield Query(sql, {"items": Jsonb(payload)}, tuples=True)
        started = [StartedChain(*r[1:]) for r in rows]
        _tell_hooks(
            ready_types=[c.type_name for c in started if c.status == "pending" and not c.deduplicated]
        )
        return started

    return op


def _explain_missing_current(
    s: str, chain_id: UUID, job_id: UUID | None, expected_type: str | None
) -> Op[None]:
    """After complete/continue matched no row: say why."""
    rows = yield Query(
        _sql_current_job_probe(s, job_id is not None), {"chain_id": chain_id, "job_id": job_id}
    )
    if not rows:
        if job_id is not None:
            raise ChainNotFoundError(
                f"job {job_id} is not a job of chain {chain_id}",
                chain_id=chain_id,
                job_id=job_id,
            )
        raise ChainNotFoundError(f"chain {chain_id} not found", chain_id=chain_id)
    raise InvalidArgumentError(
        f"the current job of chain {chain_id} is of type {rows[0]['type_name']!r}, "
        f"not {expected_type!r}",
        chain_id=chain_id,
        job_id=rows[0]["id"],
    )


def complete_chain(
    schema: str,
    chain_id: UUID | str,
    output: Any,
    *,
    continue_with: Continuation | None,
    job_type: JobType[Any, Any] | str | None,
    job_id: UUID | str | None,
) -> OpFactory[CompletedJob]:
    s = check_schema(schema)
    cid = _uuid(chain_id, "chain_id")
    jid = None if job_id is None else _uuid(job_id, "job_id")
    expected = None if job_type is None else _type_name_of(job_type)
    by_job = jid is not None

    if continue_with is not None:
        if output is not None:
            raise InvalidArgumentError("give an output or a continuation, not both")
        if not isinstance(continue_with, Continuation):
            raise InvalidArgumentError(
                f"continue_with must be a Continuation (see queuert.continue_with), got {continue_with!r}"
            )
        if isinstance(job_type, JobType):
            job_type.check_continuation(continue_with)
        cont = continue_with
        params: dict[str, Any] = {
            "chain_id": cid,
            "job_id": jid,
            "expected_type": expected,
            "type_name": cont.type_name,
            "input": _json(cont.input_json),
            "id": None if cont.id is None else _uuid(cont.id, "id"),
            "schedule_at": cont.schedule_at,
            "schedule_after": cont.schedule_after,
            "blockers": _uuids(cont.blockers, "blockers"),
            "priority": cont.priority,
            "trace_context": cont.trace_context,
        }
        sql = _sql_continue_chain(s, by_job)

        def op_continue() -> Op[CompletedJob]:
            rows = yield Query(sql, params)
            if not rows:
                yield from _explain_missing_current(s, cid, jid, expected)
            row = rows[0]
            nxt = ContinuedJob.from_row(row)
            fresh = not nxt.deduplicated
            _tell_hooks(
                ready_types=[nxt.type_name] if fresh and nxt.status == "pending" else [],
                # a worker that held the job lost it (read before the call: a hint)
                lost_jobs=[row["previous_job_id"]]
                if fresh and row["previous_status"] == "running"
                else [],
            )
            return CompletedJob(
                job_id=row["previous_job_id"],
                chain_id=nxt.chain_id,
                status="completed",
                chain_completed=False,
                continued_to=nxt,
            )

        return op_continue

    out_json = job_type.dump_output(output) if isinstance(job_type, JobType) else to_json_value(output)
    params = {"chain_id": cid, "job_id": jid, "expected_type": expected, "output": _json(out_json)}
    sql = _sql_complete_chain(s, by_job)

    def op_complete() -> Op[CompletedJob]:
        rows = yield Query(sql, params)
        if not rows:
            yield from _explain_missing_current(s, cid, jid, expected)
        row = rows[0]
        done = CompletedJob(
            job_id=row["id"],
            chain_id=row["chain_id"],
            status=row["status"],
            chain_completed=bool(row["chain_completed"]),
        )
        _tell_hooks(
            completed_chains=[done.chain_id] if done.chain_completed else [],
            lost_jobs=[done.job_id] if row["previous_status"] == "running" else [],
        )
        return done

    return op_complete


def chain_op(
    schema: str, fn: str, chain_ids: Iterable[UUID | str], cascade: bool
) -> OpFactory[list[UUID]]:
    s = check_schema(schema)
    ids = _uuids(chain_ids, "chain_ids")
    params = {"chain_ids": ids, "cascade": bool(cascade)}
    sql = _sql_chain_op(s, fn)

    def op() -> Op[list[UUID]]:
        rows = yield Query(sql, params)
        return [r["chain_id"] for r in rows]

    return op


def job_op(schema: str, fn: str, job_ids: Iterable[UUID | str]) -> OpFactory[list[UUID]]:
    s = check_schema(schema)
    ids = _uuids(job_ids, "job_ids")
    sql = _sql_job_op(s, fn)

    def op() -> Op[list[UUID]]:
        rows = yield Query(sql, {"job_ids": ids})
        # retry_jobs may leave a job blocked; a spurious wake-up is harmless
        _tell_hooks(ready_types=[r["type_name"] for r in rows if r["type_name"]])
        return [r["job_id"] for r in rows]

    return op


def _chain_from_prefixed(row: Row, prefix: str) -> dict[str, Any]:
    return {c: row[prefix + c] for c in _CHAIN_COLS}


def get_chain(schema: str, chain_id: UUID | str) -> OpFactory[Chain]:
    s = check_schema(schema)
    cid = _uuid(chain_id, "chain_id")
    sql = _sql_get_chain(s)

    def op() -> Op[Chain]:
        rows = yield Query(sql, {"chain_id": cid})
        if not rows:
            raise ChainNotFoundError(f"chain {cid} not found", chain_id=cid)
        jobs = [
            Job.from_row({k: v for k, v in r.items() if not k.startswith("chain.")})
            for r in rows
            if r.get("id") is not None
        ]
        return Chain.from_row(_chain_from_prefixed(rows[0], "chain."), jobs)

    return op


def encode_cursor(chain: Chain) -> str:
    raw = f"{chain.created_at.isoformat()}|{chain.chain_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, cid = raw.split("|")
        created = datetime.fromisoformat(ts)
        if created.tzinfo is None:
            raise ValueError("naive timestamp")
        return created, UUID(cid)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidArgumentError(f"not a list_chains cursor: {cursor!r}") from None


def list_chains(
    schema: str,
    *,
    type_name: str | JobType[Any, Any] | None,
    status: str | Sequence[str] | None,
    limit: int,
    after: str | None,
) -> OpFactory[ChainPage]:
    s = check_schema(schema)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidArgumentError(f"limit must be a positive int, got {limit!r}")
    statuses = None if status is None else ([status] if isinstance(status, str) else list(status))
    params: dict[str, Any] = {
        "type_name": None if type_name is None else _type_name_of(type_name),
        "statuses": statuses,
        "limit": limit + 1,
    }
    if after is not None:
        params["after_created_at"], params["after_id"] = decode_cursor(after)
    sql = _sql_list_chains(s, type_name is not None, statuses is not None, after is not None)

    def op() -> Op[ChainPage]:
        rows = yield Query(sql, params)
        items = [Chain.from_row(r) for r in rows[:limit]]
        more = len(rows) > limit
        return ChainPage(items=items, next_cursor=encode_cursor(items[-1]) if more else None)

    return op


# --------------------------------------------------------------------------
# wait_for_chain: besides queries, the operation yields instructions to sleep,
# to wait for a notification, and a cleanup statement; the drivers perform them.


@dataclasses.dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclasses.dataclass(frozen=True)
class WaitNotify:
    """Wait up to ``timeout`` s for a notification on ``channel`` with
    ``payload``; the driver sends back True if it came."""

    channel: str
    payload: str
    timeout: float


@dataclasses.dataclass(frozen=True)
class Cleanup:
    """Run ``query`` unless the connection is closed or broken."""

    query: Query


def wait_verdict(
    rows: list[dict[str, Any]],
    chain_id: UUID,
    *,
    in_transaction: bool,
    raise_on_failure: bool,
) -> Chain | None:
    """The finished chain, None to keep waiting, or an exception."""
    if not rows:
        raise ChainNotFoundError(f"chain {chain_id} not found", chain_id=chain_id)
    row = rows[0]
    chain = Chain.from_row(row)
    if chain.status == "completed":
        return chain
    if chain.status == "cancelled":
        raise ChainCancelledError(
            f"chain {chain_id} was cancelled", chain_id=chain_id, job_id=chain.current_job_id
        )
    if chain.status == "failed" and raise_on_failure:
        raise ChainFailedError(
            f"chain {chain_id} failed at job {chain.current_job_id} "
            f"({chain.current_type_name}): {row.get('last_attempt_error')}",
            chain_id=chain_id,
            job_id=chain.current_job_id,
        )
    if in_transaction and row["isolation"] != "read committed":
        raise InvalidArgumentError(
            f"wait_for_chain inside a {str(row['isolation']).upper()} transaction would "
            "never see the chain complete; call it outside a transaction (autocommit) "
            "or in READ COMMITTED",
            chain_id=chain_id,
        )
    return None


def wait_for_chain(
    schema: str,
    chain_id: UUID | str,
    timeout: float,
    *,
    poll_interval: float,
    raise_on_failure: bool,
    can_listen: bool,
) -> OpFactory[Chain]:
    s = check_schema(schema)
    cid = _uuid(chain_id, "chain_id")
    if timeout < 0 or poll_interval <= 0:
        raise InvalidArgumentError("timeout must be >= 0 and poll_interval > 0")
    probe = Query(_sql_wait_probe(s), {"chain_id": cid})
    channel = f"{s}_chain_completed"

    def timed_out() -> ChainWaitTimeout:
        return ChainWaitTimeout(
            f"chain {cid} did not complete within {timeout:g} s", chain_id=cid
        )

    def poll_only() -> Op[Chain]:
        deadline = time.monotonic() + timeout
        while True:
            rows = yield probe
            chain = wait_verdict(rows, cid, in_transaction=True, raise_on_failure=raise_on_failure)
            if chain is not None:
                return chain
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise timed_out()
            yield Sleep(min(poll_interval, remaining))

    def listening() -> Op[Chain]:
        deadline = time.monotonic() + timeout
        rows = yield Query(
            "SELECT %(ch)s::text = ANY(ARRAY(SELECT pg_listening_channels())) AS listening",
            {"ch": channel},
        )
        was_listening = bool(rows[0]["listening"])
        if not was_listening:
            yield Query(f"LISTEN {channel}", {})
        try:
            while True:
                rows = yield probe
                chain = wait_verdict(
                    rows, cid, in_transaction=False, raise_on_failure=raise_on_failure
                )
                if chain is not None:
                    return chain
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise timed_out()
                # a notification is a hint: re-check on it, or after poll_interval
                yield WaitNotify(channel, str(cid), min(poll_interval, remaining))
        finally:
            if not was_listening:
                yield Cleanup(Query(f"UNLISTEN {channel}", {}))

    return listening if can_listen else poll_only
