"""Every client call except ``wait_for_chain``, written once for both clients.

Each function checks and converts its arguments right away (so a bad one is
refused before anything is sent), then returns the operation: a
:class:`~queuert._instructions.Call` (one statement and the function that
maps its rows to the result and reports to the transaction hooks,
:mod:`queuert.hooks`), or for ``complete_chain``, which may need a second
statement to say why nothing matched, :class:`~queuert._instructions.Steps`.
Either carries its SQLite twin, the matching function of
:mod:`queuert._sqlite.client_calls` with the checked arguments bound.
:mod:`queuert._execution` runs either on a sync or an async connection.

``start_chain`` and ``start_chains`` are the hot paths (an application calls
them per request, or per thousand items): they bind positional parameters,
send their JSON as text and build their result objects in the row factory.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from . import _statements as sql
from ._arguments import (
    batch_json,
    chain_items,
    check_priority,
    decode_cursor,
    encode_cursor,
    json_text,
    plain_batch_json,
    uuid_of,
    uuids_of,
)
from ._instructions import Call, Op, Query, Steps
from ._schema_name import validate_schema_name
from .errors import ChainNotFoundError, InvalidArgumentError
from .hooks import _current, announce
from ._chain_spec import BaseChainSpec
from ._continuation import Continuation
from ._job_type import _MAX_NAME, JobType, _check_delays, _type_name_of, dump_payload
from ._records import Chain, ChainPage, CompletedJob, ContinuedJob, Job, StartedChain
from ._started_rows import started_rows
from ._sqlite import client_calls as lite
from . import _traced_calls as traced
from .telemetry import tracing
from .telemetry.switch import inactive as _telemetry_inactive

__all__ = [
    "at_defaults",
    "chain_op",
    "complete_chain",
    "get_chain",
    "job_op",
    "list_chains",
    "start_chain",
    "start_chains",
]

_NO_OPTIONS: tuple[str, ...] = ()
_current_hooks = _current.get  # hooks.current_hooks without its frame


def at_defaults(
    id: UUID | str | None,
    schedule_at: datetime | None,
    schedule_after: timedelta | None,
    blockers: Sequence[UUID | str] | None,
    dedup_key: str | None,
    dedup_scope: str,
    dedup_window: timedelta | None,
    priority: int,
    trace_context: str | None,
) -> bool:
    """Every option of ``start_chain`` at its default: the common start
    (two parameters here; straight to the connection in ``_plain_start``)."""
    return (
        id is None
        and schedule_at is None
        and schedule_after is None
        and blockers is None
        and dedup_key is None
        and dedup_scope == "incomplete"
        and dedup_window is None
        and type(priority) is int
        and priority == 0
        and trace_context is None
    )


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
) -> Call[StartedChain]:
    s = validate_schema_name(schema)
    # validated and serialised (one pass) before anything reaches the database
    if type(job_type) is str and 0 < len(job_type) <= _MAX_NAME:  # a valid name, inline
        params: list[Any] = [job_type, json_text(input)]
    else:
        params = [_type_name_of(job_type), json_text(dump_payload(job_type, input))]
    # telemetry (None when off): the creation span's traceparent is stored
    creation = (
        None
        if _telemetry_inactive()
        else tracing.creating(params[0], trace_context, "start_chain", blockers=blockers)
    )
    if creation is not None:
        trace_context = creation.traceparent
    if at_defaults(
        id, schedule_at, schedule_after, blockers, dedup_key, dedup_scope, dedup_window, priority, trace_context
    ):
        given = _NO_OPTIONS  # the common start: two parameters
    else:
        _check_delays(schedule_at, schedule_after)
        check_priority(priority)
        optional = {
            "id": None if id is None else uuid_of(id, "id"),
            "schedule_at": schedule_at,
            "schedule_after": schedule_after,
            "blockers": uuids_of(blockers, "blockers"),
            "dedup_key": dedup_key,
            "dedup_scope": dedup_scope,
            "dedup_window": dedup_window,
            "priority": priority,
            "trace_context": trace_context,
        }
        given = tuple(
            name
            for name, value in optional.items()
            if value is not None and value != sql.START_CHAIN_OPTIONAL[name][1]
        )
        params.extend(optional[name] for name in given)
    if creation is not None:
        return traced.traced_start_call(
            creation,
            sql.start_chain(s, given, True),
            params,
            _started_one,
            partial(lite.start_chain_traced_call, s, params, given),
        )
    return Call(
        Query(sql.start_chain(s, given), params, started_rows),
        _started_one,
        partial(lite.start_chain_call, s, params, given),
    )


def _started_one(rows: list[StartedChain]) -> StartedChain:
    started = rows[0]
    if started.status == "pending" and not started.deduplicated:
        hooks = _current_hooks()
        if hooks is not None:
            hooks.job_ready(started.type_name)
    return started


def start_chains(
    schema: str, items: Sequence[BaseChainSpec]
) -> Call[list[StartedChain]] | Steps[list[StartedChain]]:
    s = validate_schema_name(schema)
    traced_call = not (_telemetry_inactive() or not tracing.active())
    if not traced_call:
        # the common batch: serialised from the specs, no item dicts
        items, text = plain_batch_json(items)
        if text is not None:
            query = Query(sql.start_chains(s), (text,), started_rows)
            return Call(query, _started_many, partial(_lite_start_chains, s, items))
    payload = chain_items(items)
    if not payload:
        return Steps(_nothing_started, _nothing_started)
    with_creations = traced.items_with_creations(payload) if traced_call else None
    if with_creations is not None:
        payload, creations = with_creations
        return traced.traced_start_many_call(
            creations,
            sql.start_chains(s, traced=True),
            (batch_json(payload),),
            _started_many,
            partial(lite.start_chains_traced_call, s, payload),
        )
    # rows of one batch share their timestamps: parsed once (_started_rows)
    query = Query(sql.start_chains(s), (batch_json(payload),), started_rows)
    return Call(query, _started_many, partial(lite.start_chains_call, s, payload))


def _lite_start_chains(s: str, items: Sequence[BaseChainSpec], conn: Any) -> list[StartedChain]:
    # SQLite's twin takes the items in the engine's shape
    return lite.start_chains_call(s, chain_items(items), conn)


def _nothing_started() -> Op[list[StartedChain]]:
    return []
    yield  # a generator that sends nothing


def _started_many(started: list[StartedChain]) -> list[StartedChain]:
    hooks = _current_hooks()
    if hooks is not None:
        for c in started:
            if c.status == "pending" and not c.deduplicated:
                hooks.job_ready(c.type_name)
    return started


def _explain_missing_current(
    s: str, chain_id: UUID, job_id: UUID | None, expected_type: str | None
) -> Op[None]:
    """After complete/continue matched no row: say why."""
    rows = yield Query(
        sql.current_job_probe(s, job_id is not None), {"chain_id": chain_id, "job_id": job_id}
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
) -> Steps[CompletedJob]:
    s = validate_schema_name(schema)
    cid = uuid_of(chain_id, "chain_id")
    jid = None if job_id is None else uuid_of(job_id, "job_id")
    expected = None if job_type is None else _type_name_of(job_type)
    by_job = jid is not None

    if continue_with is not None:
        return _continue_chain(s, cid, jid, expected, output, continue_with, job_type)

    # validated (typed) and serialised in one pass before anything is sent
    out_text = json_text(job_type.dump_output(output) if isinstance(job_type, JobType) else output)
    # trace_context: the settle span's, when traced (the engine writes it on
    # the blocker edges this completion resolves)
    params = {"chain_id": cid, "job_id": jid, "expected_type": expected, "output": out_text, "trace_context": None}
    text = sql.complete_chain(s, by_job)
    on_sqlite = partial(lite.complete_chain, s, cid, jid, expected, out_text)

    def op_complete() -> Op[CompletedJob]:
        settlement = None
        if tracing.active():
            current = yield Query(sql.current_job_probe(s, by_job), params)
            if current:
                settlement, _ = traced.begin_settlement(current[0], "complete_chain", None, None)
        run_params = params
        if settlement is not None and settlement.span is not None:
            run_params = {**params, "trace_context": settlement.traceparent()}
        rows = yield Query(text, run_params)
        if not rows:
            yield from _explain_missing_current(s, cid, jid, expected)
        row = rows[0]
        done = CompletedJob(
            job_id=row["id"],
            chain_id=row["chain_id"],
            status=row["status"],
            chain_completed=bool(row["chain_completed"]),
        )
        if settlement is not None:
            settlement.settled(
                done.job_id, done.chain_id, done.chain_completed, "completed", row["dependents"]
            )
        announce(
            # dependents this completion made pending (a fan-in's last blocker)
            ready_types=row["unblocked_types"] or (),
            completed_chains=[done.chain_id] if done.chain_completed else [],
            lost_jobs=[done.job_id] if row["previous_status"] == "running" else [],
        )
        return done

    def lite_complete() -> Op[CompletedJob]:
        if tracing.active():  # the settle span, as above
            traced_done: CompletedJob = yield partial(lite.complete_chain, s, cid, jid, expected, out_text, traced=True)
            return traced_done
        done: CompletedJob = yield on_sqlite
        return done

    return Steps(op_complete, lite_complete)


def _continue_chain(
    s: str,
    cid: UUID,
    jid: UUID | None,
    expected: str | None,
    output: Any,
    cont: Continuation,
    job_type: JobType[Any, Any] | str | None,
) -> Steps[CompletedJob]:
    if output is not None:
        raise InvalidArgumentError("give an output or a continuation, not both")
    if not isinstance(cont, Continuation):
        raise InvalidArgumentError(
            f"continue_with must be a Continuation (see queuert.continue_with), got {cont!r}"
        )
    if isinstance(job_type, JobType):
        job_type.check_continuation(cont)
    params: dict[str, Any] = {
        "chain_id": cid,
        "job_id": jid,
        "expected_type": expected,
        "type_name": cont.type_name,
        "input": json_text(cont.input_json),
        "id": None if cont.id is None else uuid_of(cont.id, "id"),
        "schedule_at": cont.schedule_at,
        "schedule_after": cont.schedule_after,
        "blockers": uuids_of(cont.blockers, "blockers"),
        "priority": cont.priority,
        "trace_context": cont.trace_context,
    }
    text = sql.continue_chain(s, jid is not None)
    on_sqlite = partial(lite.continue_chain, s, cid, jid, expected, params)

    def op_continue() -> Op[CompletedJob]:
        settlement = creation = current = None
        if tracing.active():
            probe = yield Query(sql.current_job_probe(s, jid is not None), params)
            if probe:
                current = probe[0]
                settlement, creation = traced.begin_settlement(
                    current, "complete_chain", cont.type_name, cont.trace_context
                )
        run_params = params
        if creation is not None and creation.traceparent is not None:
            run_params = {**params, "trace_context": creation.traceparent}
        rows = yield Query(text, run_params)
        if not rows:
            yield from _explain_missing_current(s, cid, jid, expected)
        row = rows[0]
        nxt = ContinuedJob.from_row(row)
        if settlement is not None and current is not None:
            if creation is not None:
                creation.created(
                    nxt.id, nxt.chain_id, current["chain_type_name"], nxt.status, nxt.deduplicated
                )
            settlement.settled(row["previous_job_id"], nxt.chain_id, False, "continued")
        fresh = not nxt.deduplicated
        announce(
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

    def lite_continue() -> Op[CompletedJob]:
        if tracing.active():  # the settle and creation spans, as above
            traced_done: CompletedJob = yield partial(
                lite.continue_chain, s, cid, jid, expected, params, traced=True
            )
            return traced_done
        done: CompletedJob = yield on_sqlite
        return done

    return Steps(op_continue, lite_continue)


def chain_op(
    schema: str, fn: str, chain_ids: Iterable[UUID | str], cascade: bool
) -> Call[list[UUID]]:
    """cancel_chains or delete_chains."""
    s = validate_schema_name(schema)
    ids = uuids_of(chain_ids, "chain_ids")
    params = {"chain_ids": ids, "cascade": bool(cascade)}
    return Call(
        Query(sql.chain_op(s, fn), params), _chain_ids, partial(lite.chain_op, s, fn, ids, bool(cascade))
    )


def _chain_ids(rows: list[dict[str, Any]]) -> list[UUID]:
    # the running jobs these chains had: their workers lost them
    announce(lost_jobs=[job_id for r in rows for job_id in r["lost_job_ids"]])
    return [r["chain_id"] for r in rows]


def job_op(schema: str, fn: str, job_ids: Iterable[UUID | str]) -> Call[list[UUID]]:
    """trigger_jobs or retry_jobs."""
    s = validate_schema_name(schema)
    ids = uuids_of(job_ids, "job_ids")
    return Call(Query(sql.job_op(s, fn), {"job_ids": ids}), _job_ids, partial(lite.job_op, s, fn, ids))


def _job_ids(rows: list[dict[str, Any]]) -> list[UUID]:
    # retry_jobs may leave a job blocked; a spurious wake-up is harmless
    announce(ready_types=[r["type_name"] for r in rows if r["type_name"]])
    return [r["job_id"] for r in rows]


def get_chain(schema: str, chain_id: UUID | str) -> Call[Chain]:
    s = validate_schema_name(schema)
    cid = uuid_of(chain_id, "chain_id")

    def chain_with_jobs(rows: list[dict[str, Any]]) -> Chain:
        if not rows:
            raise ChainNotFoundError(f"chain {cid} not found", chain_id=cid)
        jobs = [
            Job.from_row({k: v for k, v in r.items() if not k.startswith("chain.")})
            for r in rows
            if r.get("id") is not None
        ]
        first = rows[0]
        return Chain.from_row({c: first["chain." + c] for c in sql.CHAIN_COLUMNS}, jobs)

    return Call(
        Query(sql.get_chain(s), {"chain_id": cid}), chain_with_jobs, partial(lite.get_chain, s, cid)
    )


def list_chains(
    schema: str,
    *,
    type_name: str | JobType[Any, Any] | None,
    status: str | Sequence[str] | None,
    limit: int,
    after: str | None,
) -> Call[ChainPage]:
    s = validate_schema_name(schema)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidArgumentError(f"limit must be a positive int, got {limit!r}")
    statuses = None if status is None else ([status] if isinstance(status, str) else list(status))
    params: dict[str, Any] = {
        "type_name": None if type_name is None else _type_name_of(type_name),
        "statuses": statuses,
        "limit": limit + 1,
    }
    cursor = None if after is None else decode_cursor(after)
    if cursor is not None:
        params["after_created_at"], params["after_id"] = cursor
    text = sql.list_chains(s, type_name is not None, statuses is not None, after is not None)
    rows_on_sqlite = partial(lite.list_chain_rows, s, params["type_name"], statuses, limit + 1, cursor)

    def page(rows: list[dict[str, Any]]) -> ChainPage:
        items = [Chain.from_row(r) for r in rows[:limit]]
        cursor = None
        if len(rows) > limit:
            cursor = encode_cursor(items[-1].created_at, items[-1].chain_id)
        return ChainPage(items=items, next_cursor=cursor)

    return Call(Query(text, params), page, lambda conn: page(rows_on_sqlite(conn)))

