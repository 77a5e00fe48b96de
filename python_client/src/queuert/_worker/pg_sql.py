"""The worker's SQL for PostgreSQL: statement texts, and how an
acknowledgement batch becomes statements and their rows a ``Written``.

Only ``pg_store`` uses this module. Parameters are rendered as literals by
``pg_text`` (one simple-protocol message per round trip), so the
arrays a flush carries cost microseconds, not psycopg's per-element binding.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from psycopg import sql

from queuert._worker.pg_text import UUID_LIST, literal, quote
from queuert._worker.outcomes import Ack, Completed, Continued, Failed, Released, by_kind
from queuert._worker.store import Written
from queuert._worker.telemetry_reports import completion_traceparents

SAVEPOINT = "SAVEPOINT queuert_handler"
ROLLBACK_TO = "ROLLBACK TO SAVEPOINT queuert_handler"

# claim's columns the worker reads, in store.ClaimRow's order
_CLAIM_COLUMNS = (
    "id, type_name, chain_id, chain_type_name, chain_index, input, priority, "
    "attempt, scheduled_at, created_at, leased_until, last_attempt_error, "
    "trace_context, blockers::text, seq"
)


@dataclasses.dataclass(frozen=True)
class Texts:
    """The statements of one worker run, for one schema."""

    claim: str
    complete_jobs: str
    complete: str
    fail: str
    continue_with: str
    fail_jobs: str
    fail_jobs_at: str
    release_jobs: str
    renew: str
    reap: str
    next_due: str
    release_unknown: str
    queue_stats: str
    #: SET LOCAL queuert.notify for acknowledging / reaping transactions
    #: (None: the session's setting)
    notify_setting_local: str | None
    reap_setting_local: str | None
    #: an atomic attempt's first statements: BEGIN, then (a worker whose
    #: notifier carries everything) SET LOCAL queuert.notify = 'none', so
    #: the handler's own calls on job.conn send no NOTIFY either (the worker
    #: publishes what they made ready after the commit)
    begin_attempt: tuple[tuple[str, None], ...]

    @classmethod
    def for_schema(cls, schema: str, notify_setting: str | None, reap_setting: str | None = None) -> Texts:
        s = sql.Identifier(schema).as_string(None)
        return cls(
            claim=(
                f"SELECT {_CLAIM_COLUMNS}, clock_timestamp() FROM {s}.claim("
                "worker_id => %s, type_names => %s, max_jobs => %s, lease => %s)"
            ),
            complete_jobs=(
                f"SELECT job_id, outcome, unblocked_types, dependents FROM {s}.complete_jobs(worker_id => %s, "
                "job_ids => %s::uuid[], outputs => %s::text[]::jsonb[], attempts => %s::int[], "
                "trace_contexts => %s::text[])"
            ),
            complete=(
                f"SELECT id, chain_id, status, chain_completed, dependents FROM {s}.complete("
                "job_id => %s, worker_id => %s, output => %s::jsonb, attempt => %s, trace_context => %s)"
            ),
            fail=(
                f"SELECT id, status, scheduled_at FROM {s}.fail(job_id => %s, worker_id => %s, error => %s, "
                "retry_at => coalesce(%s::timestamptz, now() + %s::interval), attempt => %s)"
            ),
            continue_with=(
                f"SELECT id, type_name, status FROM {s}.continue_with(job_id => %s, worker_id => %s, "
                "type_name => %s, input => %s::jsonb, id => %s, schedule_at => %s, "
                "schedule_after => %s::interval, blockers => %s::uuid[], priority => %s, "
                "trace_context => %s, attempt => %s)"
            ),
            fail_jobs=(
                f"SELECT job_id, outcome, status, scheduled_at FROM {s}.fail_jobs(worker_id => %s, "
                "job_ids => %s::uuid[], errors => %s::text[], attempts => %s::int[])"
            ),
            # retry times given as a time or as a delay from the database's now
            fail_jobs_at=(
                f"SELECT job_id, outcome, status, scheduled_at FROM {s}.fail_jobs(worker_id => %s, "
                "job_ids => %s::uuid[], errors => %s::text[], retry_ats => ("
                "SELECT array_agg(coalesce(r.at, now() + r.after) ORDER BY r.o) "
                "FROM unnest(%s::text[]::timestamptz[], %s::text[]::interval[]) WITH ORDINALITY AS r (at, after, o)"
                "), attempts => %s::int[])"
            ),
            release_jobs=(
                f"SELECT job_id, outcome FROM {s}.release_jobs("
                "worker_id => %s, job_ids => %s::uuid[], attempts => %s::int[])"
            ),
            renew=f"SELECT job_id, outcome FROM {s}.renew_leases(worker_id => %s, job_ids => %s::uuid[], lease => %s)",
            # reap with each job's type: the worker announces the ones back
            # to pending (job_ready per type) through its notifier
            reap=f"SELECT job_id, previous_worker, status, type_name FROM {s}.reap_jobs(max_jobs => %s)",
            next_due=f"SELECT {s}.next_due_at(%s::text[]), clock_timestamp()",
            release_unknown=(
                f"SELECT job_id, type_name FROM {s}.release_unknown_jobs(worker_id => %s, known_ids => %s::uuid[])"
            ),
            # the stats view (public API) for the queue-depth gauges, seconds as float
            queue_stats=(
                "SELECT type_name, status::text, count, extract(epoch FROM oldest_due_age)::float8 "
                f"FROM {s}.stats"
            ),
            notify_setting_local=_set_local(notify_setting),
            reap_setting_local=_set_local(reap_setting),
            begin_attempt=(
                (("BEGIN", None),)
                if reap_setting is None
                else (("BEGIN", None), (f"SET LOCAL queuert.notify = '{reap_setting}'", None))
            ),
        )

    def prepared(self) -> tuple[Texts, list[str]]:
        """The texts of an atomic slot's session whose claim and complete
        are server-side prepared statements (EXECUTE with literals: neither
        parsed nor planned again per job), and the PREPAREs the session
        runs once when it connects."""
        prepares = []
        executes: dict[str, Any] = {}
        for field, name, types in _PREPARED:
            text = getattr(self, field)
            parts = text.split("%s")
            numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
            prepares.append(f"PREPARE {name} ({', '.join(types)}) AS {numbered}")
            executes[field] = f"EXECUTE {name}({', '.join(['%s'] * len(types))})"
        return dataclasses.replace(self, **executes), prepares


#: the atomic slot's statements it prepares: field, name, parameter types
_PREPARED = (
    ("claim", "queuert_slot_claim", ("text", "text[]", "integer", "interval")),
    ("complete", "queuert_slot_complete", ("uuid", "text", "jsonb", "integer", "text")),
)


def _set_local(setting: str | None) -> str | None:
    return None if setting is None else f"SET LOCAL queuert.notify = '{setting}'"


def _interval_text(td: timedelta | None) -> str | None:
    return None if td is None else f"{td.total_seconds()!r} seconds"


class _Alone:
    """Part kinds of a single acknowledgement written with the single-job
    functions (complete, fail): cheaper for one job than their batched
    forms (complete_jobs of one job took about 1.35x complete's time in an
    atomic slot's round trip), and what the worker always sent for one."""


class _CompletedAlone(_Alone):
    pass


class _FailedAlone(_Alone):
    pass


@dataclasses.dataclass(slots=True)
class AckPlan:
    """Statements writing a batch of acknowledgements, and which acks each
    statement's rows answer (read back by ``read``)."""

    statements: list[tuple[str, Any]]
    parts: list[tuple[type, list[Ack]]]


def plan_acks(t: Texts, worker_id: str, acks: Sequence[Ack], *, alone: bool = False) -> AckPlan:
    """One statement per kind (completions, failures, releases: the engine's
    batch functions) and one continue_with per continuation, in one
    message. ``alone``: one acknowledgement on its own (an atomic slot's,
    or the one-by-one fallback): a completion or failure goes through the
    single-job function instead."""
    if alone and len(acks) == 1:
        ack = acks[0]
        outcome = ack.outcome
        job = ack.job
        if type(outcome) is Completed:
            traceparent = job._telemetry.traceparent()
            return AckPlan(
                [(t.complete, (job.id, worker_id, outcome.output_json, job.attempt, traceparent))],
                [(_CompletedAlone, [ack])],
            )
        if type(outcome) is Failed:
            params = (job.id, worker_id, outcome.error, outcome.retry_at, outcome.retry_after, job.attempt)
            return AckPlan([(t.fail, params)], [(_FailedAlone, [ack])])
    completes, continues, fails, releases = by_kind(acks)
    statements: list[tuple[str, Any]] = []
    parts: list[tuple[type, list[Ack]]] = []
    if completes:
        statements.append(
            (
                t.complete_jobs,
                (
                    worker_id,
                    [a.job.id for a in completes],
                    [a.outcome.output_json for a in completes],  # type: ignore[union-attr]
                    [a.job.attempt for a in completes],
                    completion_traceparents(completes),
                ),
            )
        )
        parts.append((Completed, completes))
    for ack in continues:
        statements.append((t.continue_with, continue_params(worker_id, ack)))
        parts.append((Continued, [ack]))
    if fails:
        statements.append(fail_statement(t, worker_id, fails))
        parts.append((Failed, fails))
    if releases:
        statements.append(
            (t.release_jobs, (worker_id, [a.job.id for a in releases], [a.job.attempt for a in releases]))
        )
        parts.append((Released, releases))
    return AckPlan(statements, parts)


def continue_params(worker_id: str, ack: Ack) -> tuple[Any, ...]:
    job = ack.job
    cont = ack.outcome.continuation  # type: ignore[union-attr]
    return (
        job.id,
        worker_id,
        cont.type_name,
        json.dumps(cont.input_json),
        cont.id,
        cont.schedule_at,
        cont.schedule_after,
        list(cont.blockers) if cont.blockers is not None else None,
        cont.priority,
        cont.trace_context,
        job.attempt,
    )


def fail_statement(t: Texts, worker_id: str, fails: list[Ack]) -> tuple[str, Any]:
    ids = [a.job.id for a in fails]
    errors = [a.outcome.error for a in fails]  # type: ignore[union-attr]
    attempts = [a.job.attempt for a in fails]
    outcomes: list[Failed] = [a.outcome for a in fails]  # type: ignore[misc]
    if all(o.retry_at is None and o.retry_after is None for o in outcomes):
        return t.fail_jobs, (worker_id, ids, errors, attempts)
    ats = [None if o.retry_at is None else o.retry_at.isoformat() for o in outcomes]
    afters = [_interval_text(o.retry_after) for o in outcomes]
    return t.fail_jobs_at, (worker_id, ids, errors, ats, afters, attempts)


def read_acks(plan: AckPlan, results: Sequence[list[Any]], into: Written) -> None:
    """Sort the rows of a committed batch into ``into`` (results: one row list
    per statement of ``plan``, in order)."""
    done = into.done
    lost = into.lost
    for (kind, acks), rows in zip(plan.parts, results):
        if kind is Continued:
            done.append(acks[0])
            for next_id, type_name, status in rows:
                into.continued_to[acks[0].job.id] = (next_id, status)
                if status == "pending":
                    into.count_ready(type_name)
            continue
        if kind is _CompletedAlone:  # complete raises when the job is not ours
            done.append(acks[0])
            into.chains.append(str(acks[0].job.chain_id))
            for row in rows:
                if row[4]:
                    into.dependents[acks[0].job.id] = row[4]
            continue
        if kind is _FailedAlone:  # fail raises when the job is not ours
            done.append(acks[0])
            for _, status, scheduled_at in rows:
                if status == "pending":
                    into.count_ready(acks[0].job.type_name)
                    into.retry_at[acks[0].job.id] = scheduled_at
            continue
        by_id = {a.job.id: a for a in acks} if len(acks) > 1 else {acks[0].job.id: acks[0]}
        if kind is Completed:
            chains = into.chains
            for job_id, outcome, unblocked, dependents in rows:
                found = by_id.get(job_id)
                if found is None:
                    continue
                if outcome == "completed":
                    done.append(found)
                    chains.append(str(found.job.chain_id))
                    into.count_unblocked(unblocked or ())
                    if dependents:
                        into.dependents[job_id] = dependents
                else:
                    lost.append((found, outcome))
        elif kind is Failed:
            for job_id, outcome, status, scheduled_at in rows:
                found = by_id.get(job_id)
                if found is None:
                    continue
                if outcome == "failed":
                    done.append(found)
                    if status == "pending":
                        into.count_ready(found.job.type_name)
                        into.retry_at[job_id] = scheduled_at
                else:
                    lost.append((found, outcome))
        else:
            for job_id, outcome in rows:
                found = by_id.get(job_id)
                if found is None:
                    continue
                if outcome == "released":
                    done.append(found)
                    into.count_ready(found.job.type_name)
                else:
                    lost.append((found, outcome))


@dataclasses.dataclass(slots=True)
class AtomicAck:
    """An atomic slot's acknowledgement as statements; ``plan``'s start at
    ``first``."""

    statements: list[tuple[str, Any]]
    plan: AckPlan
    first: int


def atomic_ack_statements(t: Texts, worker_id: str, ack: Ack, rollback: bool, *, unblocked_wanted: bool) -> AtomicAck:
    """An atomic slot's acknowledgement in its open transaction, ending with
    COMMIT. ``unblocked_wanted``: a completion goes through complete_jobs,
    which reports the types of the dependents it made pending. With batched
    notifications the engine sends no job_ready / chain_completed from here
    on in this transaction (the handler's own SQL before it keeps the
    engine's notifications); the worker publishes them after the commit."""
    stmts: list[tuple[str, Any]] = []
    if rollback:
        stmts.append((ROLLBACK_TO, None))
    if t.notify_setting_local is not None:
        stmts.append((t.notify_setting_local, None))
    plan = plan_acks(t, worker_id, (ack,), alone=not unblocked_wanted)
    first = len(stmts)
    stmts.extend(plan.statements)
    stmts.append(("COMMIT", None))
    return AtomicAck(stmts, plan, first)


def read_atomic_completion(a: AtomicAck, results: Sequence[list[Any]]) -> str | None:
    """The chain id an atomic slot's plain completion completed (written by
    ``complete``, nothing waiting on the chain reported), for
    ``Acknowledger.record_completed`` (which also reports the attempt's
    telemetry, if any: a completion with no dependents is all it needs);
    None for any other acknowledgement (``read_atomic_acks``). A slot's
    usual commit then builds no ``Written``, traced or not."""
    parts = a.plan.parts
    if parts[0][0] is not _CompletedAlone:
        return None
    job = parts[0][1][0].job
    for row in results[a.first]:
        if row[4]:
            return None
    return str(job.chain_id)


def read_atomic_acks(a: AtomicAck, results: Sequence[list[Any]]) -> Written:
    """What ``a``'s statements, the first of ``results``, wrote."""
    written = Written()
    read_acks(a.plan, results[a.first : a.first + len(a.plan.statements)], written)
    return written


def notify_statement(schema: str, ready: Sequence[str], chains: Sequence[str]) -> str:
    """One ``pg_notify`` statement for all of them, rendered here (not bound
    by psycopg, whose text-array dumper runs a regex per element: ~8% of the
    worker's CPU at 20,000 jobs/s, one chain id per job)."""
    parts = []
    if ready:
        parts.append(f"SELECT {quote(schema + '_job_ready')} AS c, unnest({literal(list(ready))}) AS p")
    if chains:
        joined = ",".join(chains)
        # chain ids are UUID texts: safe inside an array literal unquoted
        arr = f"'{{{joined}}}'::text[]" if UUID_LIST.fullmatch(joined) else literal(list(chains))
        parts.append(f"SELECT {quote(schema + '_chain_completed')} AS c, unnest({arr}) AS p")
    return "SELECT count(pg_notify(c, p)) FROM (" + " UNION ALL ".join(parts) + ") AS t"
