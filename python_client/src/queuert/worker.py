"""The queuert worker: claims jobs, runs handlers, acknowledges outcomes.

Quick start::

    import queuert

    worker = queuert.Worker("postgresql://localhost/app", concurrency=10)

    @worker.handler(send_welcome_email)          # a JobType (or a type name)
    async def send(job: queuert.JobContext[WelcomeInput]) -> EmailSent:
        ...

    worker.run()                                 # until SIGTERM / SIGINT

How it works (asyncio inside; sync handlers run in worker threads):

* **Staged mode** (default). One connection claims jobs with a lease and
  commits; handlers run outside any transaction; their outcomes are
  acknowledged in batches: every flush is *one* round trip carrying one
  implicit transaction with ``complete_jobs`` for all completed jobs, one
  statement for all continuations, one for all failures and the next
  ``claim`` for the free slots and, by default, for jobs held ahead
  (``prefetch="auto"``: about 50 ms of expected work). A crash before
  that commit leaves the jobs running until their lease expires; ``reap``
  then hands them to another worker. Nothing is lost; a job may run twice (at-least-once).
  Every acknowledgement is fenced with the worker id and the attempt, so a
  stale outcome can never overwrite a newer one.
* **Atomic mode**. Each slot owns a connection; claim, the handler's SQL (on
  ``job.conn``) and the completion share one transaction. A handler exception
  rolls back to a savepoint taken right after the claim (undoing the handler's
  writes) and records the failure in that same transaction. A crash rolls
  back everything: the job is simply pending again. Exactly-once effects for
  database work.

Leases are renewed for all in-flight jobs with one ``renew_leases`` call per
interval; a job reported ``taken``, ``finished`` or ``not_found`` is stopped
(async handlers are cancelled, sync handlers see ``job.lease_lost``). An
idle worker sleeps until ``next_due_at`` (capped by ``poll_interval``) unless
a notification (LISTEN on ``<schema>_job_ready`` by default) wakes it
earlier; ``reap`` runs every ``reap_interval``. A lost database is survived
by reconnecting with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import dataclasses
import functools
import importlib
import inspect
import json
import logging
import math
import os
import random
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, Literal, TypeVar, overload

import psycopg
from psycopg import sql

from queuert._publisher import _Publisher
from queuert._runners import _resumed, _SlotThread, _ThreadPool
from queuert._sqltext import close_quietly, execute_many, execute_many_sync
from queuert.errors import PayloadValidationError, QueuertError, sqlstate_of, translate
from queuert.job import JobContext
from queuert.migrate import validate_schema_name
from queuert.notify.base import Notifier, NotifyEvent, Subscription
from queuert.notify.postgres import PostgresNotifier
from queuert.types import Continuation, JobType, RetryAt, to_json_value

__all__ = ["Worker", "WorkerStats", "run_worker_cli"]

logger = logging.getLogger("queuert.worker")

Mode = Literal["staged", "atomic"]
F = TypeVar("F", bound=Callable[..., Any])

# job states (JobContext._state)
_QUEUED = -1  # claimed (prefetched), waiting for a free slot
_RUNNING = 0  # handler running
_ACKING = 1  # outcome buffered, not yet sent
_FLUSHING = 2  # outcome being written
_LOST = 3  # no longer ours (lease lost / finished from outside)
_RELEASED = 4  # released at shutdown
_DONE = 5  # acknowledged

# outcome kinds
_COMPLETE = 0
_CONTINUE = 1
_FAIL = 2
_RELEASE = 3  # claimed but never started: give it back, attempt restored

_SAVEPOINT = "SAVEPOINT queuert_handler"
_ROLLBACK_TO = "ROLLBACK TO SAVEPOINT queuert_handler"

_LOST_SQLSTATES = frozenset({"QU001", "QU003", "QU004"})
_CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})
_MAX_ERROR_TEXT = 8000

_CLAIM_COLUMNS = (
    "id, type_name, chain_id, chain_type_name, chain_index, input, priority, "
    "attempt, scheduled_at, created_at, leased_until, last_attempt_error, "
    "trace_context, blockers::text"
)


class _ConnectionLost(Exception):
    """The connection broke; the commit state of the last transaction is unknown."""


def _is_connection_error(exc: BaseException) -> bool:
    """The connection is gone (or its state unknown), as opposed to an error
    the server reported on a live connection. psycopg files deadlocks and
    serialization failures (class 40) under OperationalError too: those are
    not connection errors, the transaction is simply rolled back."""
    state = sqlstate_of(exc)
    if state is not None:
        return state.startswith(("08", "57P"))  # connection exception, admin shutdown
    return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError, OSError))


def _error_text(exc: BaseException) -> str:
    """``Type: message`` plus the traceback, capped."""
    head = f"{type(exc).__name__}: {exc}"
    try:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    except Exception:  # pragma: no cover - defensive
        tb = ""
    text = head if not tb else f"{head}\n\n{tb}"
    if len(text) > _MAX_ERROR_TEXT:
        text = text[: _MAX_ERROR_TEXT - 20] + "\n... (truncated)"
    return text


def _interval(td: timedelta | float | None) -> timedelta | None:
    if td is None:
        return None
    if isinstance(td, timedelta):
        return td
    return timedelta(seconds=float(td))


class _Handler:
    __slots__ = ("type_name", "fn", "job_type", "is_async", "output_none")

    def __init__(self, type_name: str, fn: Callable[..., Any], job_type: JobType[Any, Any] | None):
        self.type_name = type_name
        self.fn = fn
        self.job_type = job_type
        self.is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
            getattr(fn, "__call__", None)
        )
        self.output_none = job_type is None or job_type.output_type is type(None)


@dataclasses.dataclass
class WorkerStats:
    """Counters of one worker (cumulative over runs)."""

    claimed: int = 0
    completed: int = 0
    continued: int = 0
    failed: int = 0
    lost: int = 0
    released: int = 0
    flushes: int = 0
    reconnects: int = 0
    reaped: int = 0
    #: the most jobs one claim returned (staged mode): above ``concurrency``
    #: when claims take jobs ahead (``prefetch``)
    largest_claim: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class _Lane:
    """A flush connection of the staged dispatcher."""

    __slots__ = ("index", "conn", "busy", "task", "delay")

    def __init__(self, index: int) -> None:
        self.index = index
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.busy = False
        self.task: asyncio.Task[None] | None = None
        self.delay = 0.05


class Worker:
    """Runs handlers for job types. See the module documentation.

    ``conninfo`` may be left out and given later (``worker.conninfo = ...``,
    as ``queuert worker --dsn`` does). ``lease`` (seconds or timedelta) is
    the lease asked for at claim and renewal; ``None`` uses each type's lease
    from ``set_job_type`` (default 60 s). ``types`` limits the claimed types
    to a subset of the registered handlers. ``worker_id`` defaults to a fresh
    ``<host>-<pid>-<uuid>`` per run. ``prepare_threshold`` is passed to
    psycopg (``None`` disables server-side prepared statements, for PgBouncer
    in transaction mode). ``flush_connections`` (staged mode) is the number
    of connections that claim and acknowledge, so one batch can commit while
    the next is on its way. ``prefetch`` (staged mode) is how many jobs a
    claim may take beyond the free slots; they wait in a local queue,
    leased and renewed, until a slot frees (bigger batches per commit, at
    the price of holding jobs other workers could run; released at stop).
    ``"auto"`` (default) holds about ``prefetch_window`` seconds (default
    0.05) of expected work: ``ceil(concurrency * prefetch_window / d)``
    jobs, ``d`` being a moving average of handler durations (none until
    the first handler finished), at most ``prefetch_max`` (default
    ``max(200, 10 * concurrency)``). No-op handlers thus get batches of
    ~100 jobs per commit; 1 s handlers at concurrency 10 get one job
    ahead. An int is a fixed number; 0 claims only the free slots.
    ``batch_notifications`` (default True): the worker's acknowledgements
    send no ``job_ready`` / ``chain_completed`` NOTIFY inside their
    transactions (``queuert.notify = 'job_lost,job_ready_unblocked'``: only
    the rare job_ready of dependents a completion unblocked stays with the
    engine); the worker publishes them itself after the commit, several
    commits' worth in one statement (a NOTIFY serialises commits in
    PostgreSQL). False keeps the engine's per-transaction notifications.
    """

    def __init__(
        self,
        conninfo: str | None = None,
        *,
        schema: str = "queuert",
        concurrency: int = 10,
        mode: Mode = "staged",
        types: Iterable[str | JobType[Any, Any]] | None = None,
        poll_interval: float = 5.0,
        lease: timedelta | float | None = None,
        reap_interval: float = 10.0,
        renew_interval: float | None = None,
        notifier: Notifier | None = None,
        worker_id: str | None = None,
        grace_period: float = 30.0,
        reconnect_max: float = 5.0,
        prepare_threshold: int | None = 5,
        flush_connections: int = 2,
        prefetch: int | Literal["auto"] = "auto",
        prefetch_window: float = 0.05,
        prefetch_max: int | None = None,
        batch_notifications: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if mode not in ("staged", "atomic"):
            raise ValueError(f"mode must be 'staged' or 'atomic', not {mode!r}")
        self.conninfo = conninfo
        self.schema = validate_schema_name(schema)
        self.concurrency = concurrency
        self.mode: Mode = mode
        self.types = None if types is None else [t.name if isinstance(t, JobType) else t for t in types]
        self.poll_interval = poll_interval
        self.lease = _interval(lease)
        self.reap_interval = reap_interval
        self.renew_interval = renew_interval
        self.notifier = notifier
        self.worker_id_prefix = worker_id
        self.grace_period = grace_period
        self.reconnect_max = reconnect_max
        self.prepare_threshold = prepare_threshold
        self.flush_connections = flush_connections
        if prefetch != "auto" and (isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0):
            raise ValueError(f"prefetch must be 'auto' or a non-negative int, not {prefetch!r}")
        if not prefetch_window > 0:
            raise ValueError("prefetch_window must be positive")
        if prefetch_max is not None and prefetch_max < 0:
            raise ValueError("prefetch_max must not be negative")
        self.prefetch: int | Literal["auto"] = prefetch
        self.prefetch_window = float(prefetch_window)
        self.prefetch_max = prefetch_max
        self.batch_notifications = batch_notifications
        self.stats = WorkerStats()
        self._handlers: dict[str, _Handler] = {}
        self._run: _Run | None = None
        self._pending_stop: bool | None = None

    # -- registration ------------------------------------------------------

    @overload
    def handler(self, job_type: JobType[Any, Any] | str) -> Callable[[F], F]: ...

    @overload
    def handler(self, job_type: JobType[Any, Any] | str, fn: F) -> F: ...

    def handler(self, job_type: JobType[Any, Any] | str, fn: Any = None) -> Any:
        """Register ``fn`` as the handler of ``job_type`` (decorator or call).

        ``fn(job)`` may be ``async`` (runs on the worker's loop) or plain (runs
        in a worker thread). It returns the output, a continuation
        (``job.continue_with(...)``) or a :class:`~queuert.RetryAt`; it raises
        to fail the attempt (retried with the type's backoff).
        """

        def register(f: F) -> F:
            if isinstance(job_type, JobType):
                h = _Handler(job_type.name, f, job_type)
            elif isinstance(job_type, str) and 1 <= len(job_type) <= 255:
                h = _Handler(job_type, f, None)
            else:
                raise TypeError(f"handler() needs a JobType or a type name, got {job_type!r}")
            if h.type_name in self._handlers:
                raise ValueError(f"a handler for {h.type_name!r} is already registered")
            self._handlers[h.type_name] = h
            return f

        if fn is not None:
            return register(fn)
        return register

    @property
    def type_names(self) -> list[str]:
        """The job types this worker claims."""
        if self.types is None:
            return list(self._handlers)
        missing = [t for t in self.types if t not in self._handlers]
        if missing:
            raise ValueError(f"no handler registered for types {missing}")
        return list(self.types)

    @property
    def worker_id(self) -> str | None:
        """The id of the current (or last) run: ``leased_by`` / ``completed_by``."""
        return self._run.worker_id if self._run is not None else None

    @property
    def running(self) -> bool:
        return self._run is not None and not self._run.finished

    # -- running -----------------------------------------------------------

    def run(self, *, handle_signals: bool = True) -> None:
        """Run until :meth:`stop` or SIGTERM/SIGINT (a second one: at once)."""
        asyncio.run(self.run_async(handle_signals=handle_signals))

    async def run_async(self, *, handle_signals: bool = False) -> None:
        """Run on the current event loop until stopped."""
        if self.conninfo is None:
            raise ValueError("Worker needs a conninfo (Worker(conninfo) or worker.conninfo = ...)")
        if not self._handlers:
            raise ValueError("no handlers registered")
        if self.running:
            raise RuntimeError("this worker is already running")
        run = _Run(self)
        self._run = run
        if self._pending_stop is not None:
            run.request_stop(self._pending_stop)
            self._pending_stop = None
        loop = asyncio.get_running_loop()
        installed: list[int] = []
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                try:
                    loop.add_signal_handler(sig, run.on_signal, sig)
                    installed.append(sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    pass
        try:
            await run.main()
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    def stop(self, *, immediate: bool = False) -> None:
        """Stop claiming; finish in-flight jobs within ``grace_period``, then
        release the rest. ``immediate`` skips the grace period. Thread-safe."""
        run = self._run
        if run is None or run.finished:
            self._pending_stop = immediate or bool(self._pending_stop)
            return
        run.request_stop(immediate)

    async def wait_started(self, timeout: float = 10.0) -> str:
        """Wait until the current run has connected; returns the worker id."""
        deadline = time.monotonic() + timeout
        while True:
            run = self._run
            if run is not None and not run.finished and run.started.is_set():
                return run.worker_id
            if time.monotonic() > deadline:
                raise TimeoutError("worker did not start")
            await asyncio.sleep(0.01)


class _Run:
    """The state of one ``run_async`` of a :class:`Worker`."""

    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self.loop = asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()
        self.schema = worker.schema
        host = socket.gethostname().split(".")[0][:40]
        self.worker_id = worker.worker_id_prefix or f"{host}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.type_names = worker.type_names
        self.handlers = worker._handlers
        self.concurrency = worker.concurrency
        self.lease = worker.lease
        self.stats = worker.stats
        self.started = asyncio.Event()
        self.finished = False
        self.claiming = True
        self.stop_requested = False
        self.immediate = False
        self.grace_deadline: float | None = None
        self.stop_event = asyncio.Event()

        # claim coordination: a claim came back short at generation drained_gen;
        # any hint (notification, poll timer, reconnect) bumps hint_gen.
        self.hint_gen = 0
        self.drained_gen: int | None = None
        self.hint_event = asyncio.Event()
        self.poll_at: float | None = None

        self.flights: dict[uuid.UUID, JobContext[Any]] = {}
        self.acks: list[tuple[JobContext[Any], int, Any]] = []
        self.running = 0  # handlers executing (slots in use)
        self.queued: collections.deque[JobContext[Any]] = collections.deque()  # prefetched
        # claim-ahead (staged mode): how many jobs a claim may take beyond
        # the free slots. A fixed number, or "auto": as many as make
        # prefetch_window seconds of expected work for all slots, from an
        # EWMA of handler durations (0 until the first duration is known),
        # capped at ahead_max. See claim_ahead().
        self.auto_ahead = worker.prefetch == "auto"
        self.fixed_ahead = 0 if worker.prefetch == "auto" else int(worker.prefetch)
        self.ahead_max = (
            worker.prefetch_max if worker.prefetch_max is not None else max(200, 10 * self.concurrency)
        )
        self.ahead_work = self.concurrency * worker.prefetch_window  # slot-seconds
        self.duration: float | None = None  # EWMA of handler durations, seconds
        # when a handler last started or finished: with every slot busy far
        # longer than expected, jobs held ahead are given back
        self.last_progress = time.monotonic()
        self.wake = asyncio.Event()  # main loop wake-up
        self.maint_wake = asyncio.Event()
        self.check_ids: set[uuid.UUID] = set()
        self.renew_every: float = (
            worker.renew_interval
            if worker.renew_interval is not None
            else (self.lease.total_seconds() / 3 if self.lease is not None else 20.0)
        )
        self.lease_estimate: float | None = None
        self.last_renew = time.monotonic()
        self.pool: _ThreadPool | None = None
        self.atomic_tasks: set[asyncio.Task[Any]] = set()
        self.atomic_jobs: dict[int, tuple[JobContext[Any], Any]] = {}
        self.subscription: Subscription | None = None
        self.own_notifier = False
        self.notifier: Notifier | None = worker.notifier
        self.publish = self.notifier is not None and not isinstance(self.notifier, PostgresNotifier)
        # batch: our acknowledgements send no job_ready / chain_completed
        # NOTIFY; the publisher sends them after commit (see _Publisher)
        self.batch = worker.batch_notifications
        self.publisher: _Publisher | None = None
        self.collect = self.batch or self.publish
        # Dependents a completion made pending: the engine knows them inside
        # its completion (job_ready_unblocked stays on in our sessions:
        # such commits are rare, a fan-in's last blocker). Only a
        # non-PostgreSQL notifier needs the worker to look them up (a join
        # per acknowledging transaction) and publish them itself.
        self.lookup_dependents = self.publish
        self.notify_setting = "job_lost" if self.publish else "job_lost,job_ready_unblocked"
        self.maint_conn: psycopg.AsyncConnection[Any] | None = None

        s = sql.Identifier(self.schema).as_string(None)
        self.q_claim = (
            f"SELECT {_CLAIM_COLUMNS}, clock_timestamp() FROM {s}.claim("
            "worker_id => %s, type_names => %s, max_jobs => %s, lease => %s)"
        )
        self.q_release_jobs = (
            f"SELECT job_id, outcome FROM {s}.release_jobs("
            "worker_id => %s, job_ids => %s::uuid[], attempts => %s::int[])"
        )
        self.q_complete_jobs = (
            f"SELECT job_id, outcome, unblocked_types FROM {s}.complete_jobs("
            "worker_id => %s, job_ids => %s::uuid[], outputs => %s::text[]::jsonb[], attempts => %s::int[])"
        )
        self.q_continue_batch = (
            "SELECT a.job_id, r.id, r.type_name, r.status FROM jsonb_to_recordset(%s::jsonb) AS a("
            "job_id uuid, type_name text, input jsonb, id uuid, schedule_at timestamptz, "
            "schedule_after interval, blockers uuid[], priority int, trace_context text, attempt int) "
            f"CROSS JOIN LATERAL {s}.continue_with(job_id => a.job_id, worker_id => %s, "
            "type_name => a.type_name, input => a.input, id => a.id, schedule_at => a.schedule_at, "
            "schedule_after => a.schedule_after, blockers => a.blockers, priority => a.priority, "
            "trace_context => a.trace_context, attempt => a.attempt) AS r"
        )
        self.q_fail_batch = (
            "SELECT a.job_id, r.status FROM jsonb_to_recordset(%s::jsonb) AS a("
            "job_id uuid, error text, retry_at timestamptz, retry_after interval, attempt int) "
            f"CROSS JOIN LATERAL {s}.fail(job_id => a.job_id, worker_id => %s, error => a.error, "
            "retry_at => coalesce(a.retry_at, now() + a.retry_after), attempt => a.attempt) AS r"
        )
        self.q_complete_one = (
            f"SELECT id, chain_id, status, chain_completed FROM {s}.complete("
            "job_id => %s, worker_id => %s, output => %s::jsonb, attempt => %s)"
        )
        self.q_continue_one = (
            f"SELECT id, type_name, status FROM {s}.continue_with(job_id => %s, worker_id => %s, "
            "type_name => %s, input => %s::jsonb, id => %s, schedule_at => %s, "
            "schedule_after => %s::interval, blockers => %s::uuid[], priority => %s, "
            "trace_context => %s, attempt => %s)"
        )
        self.q_fail_one = (
            f"SELECT id, status FROM {s}.fail(job_id => %s, worker_id => %s, error => %s, "
            "retry_at => coalesce(%s::timestamptz, now() + %s::interval), attempt => %s)"
        )
        self.q_renew = f"SELECT job_id, outcome FROM {s}.renew_leases(worker_id => %s, job_ids => %s::uuid[], lease => %s)"
        self.q_reap = f"SELECT job_id, previous_worker, status FROM {s}.reap(max_jobs => %s)"
        self.q_next_due = f"SELECT {s}.next_due_at(%s::text[]), clock_timestamp()"
        self.q_orphans = (
            f"SELECT id, attempt, type_name FROM {s}.job WHERE status = 'running' AND leased_by = %s"
        )
        # in the acknowledging transaction, after completions: the types of
        # dependents those completions made pending (the engine's job_ready
        # for them is off on our connections)
        self.q_dependents = (
            f"SELECT DISTINCT d.type_name FROM {s}.job_blocker AS b JOIN {s}.job AS d ON d.id = b.job_id "
            "WHERE b.blocker_chain_id = ANY(%s::uuid[]) AND d.status = 'pending'"
        )

    # -- logging -----------------------------------------------------------

    def _extra(self, job: JobContext[Any]) -> dict[str, Any]:
        return {
            "job_id": str(job.id),
            "chain_id": str(job.chain_id),
            "type_name": job.type_name,
            "attempt": job.attempt,
            "worker_id": self.worker_id,
        }

    # -- stop / signals ----------------------------------------------------

    def on_signal(self, sig: signal.Signals | int) -> None:
        if self.stop_requested:
            logger.warning("second signal %s, stopping at once", sig, extra={"worker_id": self.worker_id})
            self.request_stop(True)
        else:
            logger.info(
                "signal %s, stopping (grace period %.1fs)",
                sig,
                self.w.grace_period,
                extra={"worker_id": self.worker_id},
            )
            self.request_stop(False)

    def request_stop(self, immediate: bool) -> None:
        try:
            running_loop = asyncio.get_running_loop()
        except RuntimeError:
            running_loop = None
        if running_loop is not self.loop:
            self.loop.call_soon_threadsafe(self.request_stop, immediate)
            return
        if not self.stop_requested:
            self.stop_requested = True
            self.claiming = False
            self.grace_deadline = time.monotonic() + self.w.grace_period
        if immediate:
            self.immediate = True
            self.grace_deadline = time.monotonic()
        self.stop_event.set()
        self.hint_event.set()
        self.wake.set()
        self.maint_wake.set()

    # -- connections -------------------------------------------------------

    async def connect(self, purpose: str) -> psycopg.AsyncConnection[Any]:
        delay = 0.05
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.w.conninfo or "",
                    autocommit=True,
                    prepare_threshold=self.w.prepare_threshold,
                    application_name=f"queuert-{purpose}",
                )
                if conn.info.parameter_status("standard_conforming_strings") != "on":
                    await conn.execute("SET standard_conforming_strings = on")  # see _sqltext.quote
                if purpose == "main" and self.batch:
                    # flush connections: only the worker's statements run
                    # there; the publisher sends job_ready / chain_completed
                    await conn.execute(f"SET queuert.notify = '{self.notify_setting}'")
                return conn
            except Exception as exc:
                if self.immediate or (self.stop_requested and purpose not in ("main", "notify")):
                    raise _ConnectionLost(str(exc)) from exc
                logger.warning(
                    "cannot connect (%s): %s; retrying in %.2fs",
                    purpose,
                    exc,
                    delay,
                    extra={"worker_id": self.worker_id},
                )
                try:
                    await asyncio.wait_for(self.stop_event.wait(), delay * random.uniform(0.5, 1.0))
                except asyncio.TimeoutError:
                    pass
                if self.immediate:
                    raise _ConnectionLost(str(exc)) from exc
                delay = min(delay * 2, self.w.reconnect_max)

    # -- hints -------------------------------------------------------------

    def hint(self) -> None:
        self.hint_gen += 1
        self.poll_at = None
        self.hint_event.set()
        self.hint_event = asyncio.Event()
        self.wake.set()

    def claim_ahead(self) -> int:
        """Jobs a claim may take beyond the free slots (staged mode).

        Auto: with every slot busy a worker finishes ``concurrency / d``
        jobs a second (``d``: the EWMA of handler durations), so holding
        ``ceil(concurrency * prefetch_window / d)`` jobs keeps about
        ``prefetch_window`` seconds of work queued locally: a no-op handler
        gets ``ahead_max`` (big batches per commit), a 1 s handler at
        concurrency 10 gets 1."""
        if not self.auto_ahead:
            return self.fixed_ahead
        d = self.duration
        if d is None:
            return 0
        if d * self.ahead_max <= self.ahead_work:
            return self.ahead_max
        return min(self.ahead_max, math.ceil(self.ahead_work / d))

    def give_back_if_stalled(self) -> float | None:
        """Auto claim-ahead holds jobs for about ``prefetch_window`` of
        expected work. If every slot has stayed busy far longer than handlers
        usually take (no handler started or finished for max(10 windows,
        3 x the usual duration)), the estimate is wrong: give the held jobs back
        (release_jobs: no attempt spent) so other workers can run them, and
        take the stall as the new duration so few are claimed ahead again.
        Returns the seconds until that point (None: nothing to watch)."""
        if not self.auto_ahead or not self.queued or self.running < self.concurrency:
            return None
        limit = max(10 * self.w.prefetch_window, 3 * (self.duration or 0.0))
        stalled = time.monotonic() - self.last_progress
        if stalled < limit:
            return limit - stalled
        n = len(self.queued)
        self.duration = max(self.duration or 0.0, stalled)
        self.release_queued()
        logger.info(
            "handlers are much slower than before (all slots busy for %.1f s): gave back %d jobs claimed ahead",
            stalled,
            n,
            extra={"worker_id": self.worker_id},
        )
        return None

    def claim_wanted(self) -> bool:
        return self.drained_gen != self.hint_gen

    def mark_drained(self, gen: int) -> None:
        if self.hint_gen == gen:
            self.drained_gen = gen
            self.poll_at = None
            self.maint_wake.set()

    def on_event(self, event: NotifyEvent) -> None:
        kind = event.kind
        if kind == "job_ready" or kind == "resync":
            self.hint()
        elif kind == "job_lost":
            try:
                jid = uuid.UUID(event.payload)
            except ValueError:
                return
            if jid in self.flights:
                self.check_ids.add(jid)
                self.maint_wake.set()

    # -- main --------------------------------------------------------------

    async def main(self) -> None:
        w = self.w
        notifier = self.notifier
        if notifier is None:
            notifier = PostgresNotifier(w.conninfo or "", schema=self.schema)
            self.notifier = notifier
            self.own_notifier = True
        maint: asyncio.Task[None] | None = None
        if self.collect:
            self.publisher = _Publisher(self, self.batch, notifier if self.publish else None)
        try:
            self.subscription = await notifier.subscribe(
                self.on_event, kinds=("job_ready", "job_lost"), type_names=self.type_names
            )
            logger.info(
                "worker %s starting (%s mode, concurrency %d, types %s)",
                self.worker_id,
                w.mode,
                self.concurrency,
                ", ".join(self.type_names),
                extra={"worker_id": self.worker_id},
            )
            maint = self.loop.create_task(self.maintenance(), name="queuert-maintenance")
            if w.mode == "staged":
                await self.staged_main()
            else:
                await self.atomic_main()
        finally:
            self.finished = True
            self.stop_event.set()
            self.maint_wake.set()
            if maint is not None:
                maint.cancel()
                try:
                    await maint
                except (asyncio.CancelledError, Exception):
                    pass
            if self.publisher is not None:
                await self.publisher.close()
            if self.maint_conn is not None:
                await self.maint_conn.close()
            if self.subscription is not None:
                await self.subscription.close()
            if self.own_notifier:
                await notifier.close()
            if self.pool is not None:
                self.pool.shutdown()
            logger.info("worker %s stopped", self.worker_id, extra={"worker_id": self.worker_id})

    # =====================================================================
    # staged mode
    # =====================================================================

    async def staged_main(self) -> None:
        """Dispatcher: starts a flush on a free lane whenever there are
        outcomes to acknowledge or free slots to claim for.

        Several lanes (connections) let one flush commit while the next is
        already on its way, so their commits share WAL flushes (group
        commit). Each flush claims at most ``concurrency / lanes`` jobs so
        every lane has work to carry.
        """
        self.pool = _ThreadPool(self.concurrency, self.loop, self.deliver_sync_results)
        most_ahead = self.ahead_max if self.auto_ahead else self.fixed_ahead
        n_lanes = max(1, min(self.w.flush_connections, self.concurrency + most_ahead))
        lanes: list[_Lane] = [_Lane(i) for i in range(n_lanes)]
        self.reserved = 0
        self.need_reconcile = False
        tasks: set[asyncio.Task[None]] = set()
        try:
            # connect the first lane up front: "started" means connected
            lanes[0].conn = await self.connect("main")
            self.started.set()
            while True:
                busy = [ln for ln in lanes if ln.busy]
                if not self.claiming:
                    if self.immediate or (
                        self.grace_deadline is not None and time.monotonic() >= self.grace_deadline
                    ):
                        if busy:
                            await asyncio.wait({ln.task for ln in busy if ln.task is not None}, timeout=10)
                        await self.release_all(lanes[0].conn)
                        return
                    if not self.flights and not self.acks and not busy:
                        return
                idle = next((ln for ln in lanes if not ln.busy), None)
                stall_left: float | None = None
                if self.queued:
                    if self.claiming:
                        self.start_queued()
                        stall_left = self.give_back_if_stalled()
                    else:  # stopping: prefetched jobs that never started go back at once
                        self.release_queued()
                if self.claiming:
                    capacity = self.concurrency + self.claim_ahead()
                    free = capacity - self.running - len(self.queued) - self.reserved
                else:
                    capacity = free = 0
                want = free > 0 and self.claim_wanted()
                if self.need_reconcile:
                    want = want and not busy  # reconcile first, with no claim in flight
                if idle is not None and (self.acks or want):
                    acks, self.acks = self.acks, []
                    claim_n = min(free, -(-capacity // n_lanes)) if want else 0
                    self.reserved += claim_n
                    idle.busy = True
                    idle.task = self.loop.create_task(self.run_lane(idle, acks, claim_n))
                    tasks.add(idle.task)
                    idle.task.add_done_callback(tasks.discard)
                    continue
                self.wake.clear()
                timeout = stall_left
                if self.grace_deadline is not None:
                    timeout = max(0.0, self.grace_deadline - time.monotonic())
                if timeout is None:
                    await self.wake.wait()
                else:
                    try:
                        await asyncio.wait_for(self.wake.wait(), timeout)
                    except asyncio.TimeoutError:
                        pass
        finally:
            for t in list(tasks):
                t.cancel()
            for t in list(tasks):
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass
            for ln in lanes:
                await close_quietly(ln.conn)

    async def run_lane(self, lane: _Lane, acks: list[tuple[JobContext[Any], int, Any]], claim_n: int) -> None:
        """One flush on one lane, reconnecting (with backoff) until it is
        written. Acks are retried after a connection loss: they were not
        committed, or they were and the engine now refuses them (QU003 or
        QU004: logged as lost, never written twice)."""
        gen = self.hint_gen
        reserved = claim_n
        rows: list[Any] = []
        try:
            while True:
                try:
                    if lane.conn is None or lane.conn.closed:
                        lane.conn = await self.connect("main")
                    if self.need_reconcile and self.reserved == reserved:
                        # no claim in flight on another lane, and ours is
                        # sent only after this: any job leased by us that we
                        # do not know is an orphan of a lost claim
                        self.need_reconcile = False
                        await self.reconcile(lane.conn)
                    rows = await self.flush(lane.conn, acks, claim_n)
                    lane.delay = 0.05
                    break
                except _ConnectionLost as exc:
                    self.stats.reconnects += 1
                    logger.warning(
                        "database connection lost (%s); reconnecting",
                        exc,
                        extra={"worker_id": self.worker_id},
                    )
                    for job, _, _ in acks:
                        if job._state == _FLUSHING:
                            job._state = _ACKING
                    await close_quietly(lane.conn)
                    lane.conn = None
                    if claim_n:
                        # that claim may have committed unseen: such jobs are
                        # released before the next claim
                        self.need_reconcile = True
                        claim_n = 0
                        self.reserved -= reserved
                        reserved = 0
                    if self.immediate:
                        self.acks = acks + self.acks
                        return
                    await self._sleep(lane.delay)
                    lane.delay = min(lane.delay * 2, self.w.reconnect_max)
            self.reserved -= reserved
            reserved = 0
            if claim_n:
                if len(rows) < claim_n:
                    self.mark_drained(gen)
                if len(rows) > self.stats.largest_claim:
                    self.stats.largest_claim = len(rows)
                for row in rows:
                    self.start(row)
        finally:
            self.reserved -= reserved
            lane.busy = False
            lane.task = None
            self.wake.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stop_event.wait(), seconds * random.uniform(0.5, 1.0))
        except asyncio.TimeoutError:
            pass

    async def flush(
        self, conn: psycopg.AsyncConnection[Any], acks: list[tuple[JobContext[Any], int, Any]], claim_n: int
    ) -> list[Any]:
        """One round trip, one implicit transaction: acks, then claim."""
        completes: list[JobContext[Any]] = []
        outputs: list[str | None] = []
        continues: list[tuple[JobContext[Any], Continuation]] = []
        fails: list[tuple[JobContext[Any], Any]] = []
        releases: list[JobContext[Any]] = []
        live: list[tuple[JobContext[Any], int, Any]] = []
        for item in acks:
            job, kind, data = item
            if job._state != _ACKING and job._state != _FLUSHING:
                continue  # lost or released meanwhile
            job._state = _FLUSHING
            live.append(item)
            if kind == _COMPLETE:
                completes.append(job)
                outputs.append(data)
            elif kind == _CONTINUE:
                continues.append((job, data))
            elif kind == _RELEASE:
                releases.append(job)
            else:
                fails.append((job, data))
        if not live and not claim_n:
            return []
        self.stats.flushes += 1
        wid = self.worker_id
        try:
            statements: list[tuple[str, Any]] = []
            if completes:
                statements.append(
                    (self.q_complete_jobs, (wid, [j.id for j in completes], outputs, [j.attempt for j in completes]))
                )
            if continues:
                statements.append((self.q_continue_batch, (self._continue_doc(continues), wid)))
            if fails:
                statements.append((self.q_fail_batch, (self._fail_doc(fails), wid)))
            if releases:
                statements.append((self.q_release_jobs, (wid, [j.id for j in releases], [j.attempt for j in releases])))
            if claim_n:
                statements.append((self.q_claim, (wid, self.type_names, claim_n, self.lease)))
            for conflict_retry in range(3):
                try:
                    results = await execute_many(conn, statements)
                    break
                except Exception as exc:
                    # a deadlock or serialization failure rolled the whole
                    # transaction back: the same batch is simply sent again
                    if sqlstate_of(exc) not in _CONFLICT_SQLSTATES or conflict_retry == 2:
                        raise
                    await asyncio.sleep(random.uniform(0.002, 0.02) * (conflict_retry + 1))
            i = 0
            c_rows = k_rows = f_rows = r_rows = claim_rows = []
            if completes:
                c_rows = results[i]
                i += 1
            if continues:
                k_rows = results[i]
                i += 1
            if fails:
                f_rows = results[i]
                i += 1
            if releases:
                r_rows = results[i]
                i += 1
            if claim_n:
                claim_rows = results[i]
        except Exception as exc:
            if _is_connection_error(exc):
                raise _ConnectionLost(str(exc)) from exc
            # The implicit transaction rolled back as a whole: nothing of it
            # happened. Redo each ack on its own to isolate the culprit.
            state = sqlstate_of(exc)
            if state not in _CONFLICT_SQLSTATES and not (state or "").startswith("QU"):
                logger.error(
                    "batched acknowledgement failed (%s); retrying one by one",
                    exc,
                    extra={"worker_id": wid},
                )
            await self.flush_one_by_one(conn, live)
            if claim_n:
                return await self.claim_only(conn, claim_n)
            return []
        self.after_flush(completes, c_rows, continues, k_rows, fails, f_rows)
        if releases:
            self.after_release(releases, r_rows)
        return claim_rows

    def _continue_doc(self, continues: list[tuple[JobContext[Any], Continuation]]) -> str:
        items = []
        for job, cont in continues:
            items.append(
                {
                    "job_id": str(job.id),
                    "type_name": cont.type_name,
                    "input": cont.input_json,
                    "id": str(cont.id) if cont.id is not None else None,
                    "schedule_at": cont.schedule_at.isoformat() if cont.schedule_at is not None else None,
                    "schedule_after": f"{cont.schedule_after.total_seconds()} seconds"
                    if cont.schedule_after is not None
                    else None,
                    "blockers": [str(b) for b in cont.blockers] if cont.blockers is not None else None,
                    "priority": cont.priority,
                    "trace_context": cont.trace_context,
                    "attempt": job.attempt,
                }
            )
        return json.dumps(items)

    def _fail_doc(self, fails: list[tuple[JobContext[Any], Any]]) -> str:
        items = []
        for job, (error, retry_at, retry_after) in fails:
            items.append(
                {
                    "job_id": str(job.id),
                    "error": error,
                    "retry_at": retry_at.isoformat() if retry_at is not None else None,
                    "retry_after": f"{retry_after.total_seconds()} seconds" if retry_after is not None else None,
                    "attempt": job.attempt,
                }
            )
        return json.dumps(items)

    def after_flush(
        self,
        completes: list[JobContext[Any]],
        c_rows: list[Any],
        continues: list[tuple[JobContext[Any], Continuation]],
        k_rows: list[Any],
        fails: list[tuple[JobContext[Any], Any]],
        f_rows: list[Any],
    ) -> None:
        """Bookkeeping after a committed flush; hand the notifications it
        implies (chains completed, job types made pending) to the publisher."""
        flights = self.flights
        stats = self.stats
        ready: set[str] = set()
        chains: set[str] = set()
        debug = logger.isEnabledFor(logging.DEBUG)
        if c_rows:
            by_id = {j.id: j for j in completes}
            for job_id, outcome, unblocked in c_rows:
                job = by_id.get(job_id)
                if job is None:
                    continue
                flights.pop(job_id, None)
                if outcome == "completed":
                    job._state = _DONE
                    stats.completed += 1
                    if debug:
                        logger.debug("job completed", extra=self._extra(job))
                    if self.collect:
                        chains.add(str(job.chain_id))
                        if self.lookup_dependents and unblocked:
                            ready.update(unblocked)
                else:
                    job._state = _LOST
                    stats.lost += 1
                    logger.warning(
                        "job %s was lost before its completion was written (%s); "
                        "its outcome is discarded",
                        job_id,
                        outcome,
                        extra=self._extra(job),
                    )
        for job, _ in continues:
            flights.pop(job.id, None)
            job._state = _DONE
            stats.continued += 1
            if debug:
                logger.debug("job continued", extra=self._extra(job))
        if self.collect:
            for row in k_rows:
                if row[3] == "pending":
                    ready.add(row[2])
        for job, _ in fails:
            flights.pop(job.id, None)
            job._state = _DONE
            stats.failed += 1
        if self.collect and f_rows:
            types = {job.id: job.type_name for job, _ in fails}
            for row in f_rows:
                if row[1] == "pending" and row[0] in types:
                    ready.add(types[row[0]])
        if ready or chains:
            self.publish_after(ready, chains)

    def after_release(self, releases: list[JobContext[Any]], rows: list[Any]) -> None:
        """Bookkeeping after committed releases (release_jobs outcomes)."""
        by_id = {j.id: j for j in releases}
        ready: set[str] = set()
        for job_id, outcome in rows:
            job = by_id.pop(job_id, None)
            if job is None:
                continue
            self.flights.pop(job_id, None)
            job._state = _DONE
            if outcome == "released":
                ready.add(job.type_name)
            else:
                logger.info(
                    "job %s was no longer ours to release (%s)", job_id, outcome, extra=self._extra(job)
                )
        if ready and self.collect:
            self.publish_after(ready, ())

    def publish_after(self, ready: Iterable[str], chains: Iterable[str]) -> None:
        """Notifications implied by a committed acknowledgement (loop thread)."""
        if self.publisher is not None:
            self.publisher.add(ready, chains)

    async def flush_one_by_one(
        self, conn: psycopg.AsyncConnection[Any], acks: list[tuple[JobContext[Any], int, Any]]
    ) -> None:
        """Slow path after a failed batch: each ack in its own transaction.
        QU001/QU003/QU004 mean the job is no longer ours: logged, dropped
        (never retried). Another engine error on a continuation (a bad
        blocker, an invalid argument) fails the attempt with that error."""
        for job, kind, data in acks:
            try:
                for _ in range(5):
                    try:
                        await self.ack_one(conn, job, kind, data)
                        break
                    except Exception as exc:
                        if sqlstate_of(exc) in _CONFLICT_SQLSTATES:
                            await asyncio.sleep(random.uniform(0.005, 0.05))
                            continue
                        raise
            except Exception as exc:
                if _is_connection_error(exc):
                    raise _ConnectionLost(str(exc)) from exc
                state = sqlstate_of(exc)
                if state in _LOST_SQLSTATES:
                    self.flights.pop(job.id, None)
                    job._state = _LOST
                    self.stats.lost += 1
                    logger.warning(
                        "job %s is no longer ours (%s); outcome discarded",
                        job.id,
                        translate(exc),
                        extra=self._extra(job),
                    )
                    continue
                if kind != _FAIL:
                    err = translate(exc)
                    logger.warning(
                        "acknowledging job %s failed (%s); failing the attempt",
                        job.id,
                        err,
                        extra=self._extra(job),
                    )
                    try:
                        await self.ack_one(conn, job, _FAIL, (_error_text(err), None, None))
                    except Exception as exc2:
                        if _is_connection_error(exc2):
                            raise _ConnectionLost(str(exc2)) from exc2
                        logger.error(
                            "cannot record failure of job %s: %s; it will be reaped",
                            job.id,
                            exc2,
                            extra=self._extra(job),
                        )
                        self.flights.pop(job.id, None)
                        job._state = _LOST
                else:
                    logger.error(
                        "cannot record failure of job %s: %s; it will be reaped",
                        job.id,
                        exc,
                        extra=self._extra(job),
                    )
                    self.flights.pop(job.id, None)
                    job._state = _LOST

    async def ack_one(self, conn: psycopg.AsyncConnection[Any], job: JobContext[Any], kind: int, data: Any) -> None:
        wid = self.worker_id
        if kind == _RELEASE:
            cur = await conn.execute(self.q_release_jobs, (wid, [job.id], [job.attempt]))
            self.after_release([job], await cur.fetchall())
            return
        if kind == _COMPLETE:
            if self.lookup_dependents:
                res = await execute_many(
                    conn,
                    ((self.q_complete_one, (job.id, wid, data, job.attempt)), (self.q_dependents, ([job.chain_id],))),
                )
                self.publish_after([r[0] for r in res[1]], [str(job.chain_id)])
            elif self.collect:
                await conn.execute(self.q_complete_one, (job.id, wid, data, job.attempt))
                self.publish_after((), [str(job.chain_id)])
            else:
                await conn.execute(self.q_complete_one, (job.id, wid, data, job.attempt))
            self.stats.completed += 1
        elif kind == _CONTINUE:
            cur = await conn.execute(self.q_continue_one, self._continue_params(job, data))
            row = await cur.fetchone()
            self.stats.continued += 1
            if self.collect and row is not None and row[2] == "pending":
                self.publish_after({row[1]}, set())
        else:
            error, retry_at, retry_after = data
            cur = await conn.execute(self.q_fail_one, (job.id, wid, error, retry_at, retry_after, job.attempt))
            row = await cur.fetchone()
            self.stats.failed += 1
            if self.collect and row is not None and row[1] == "pending":
                self.publish_after({job.type_name}, set())
        self.flights.pop(job.id, None)
        job._state = _DONE

    def _continue_params(self, job: JobContext[Any], cont: Continuation) -> tuple[Any, ...]:
        return (
            job.id,
            self.worker_id,
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

    async def claim_only(self, conn: psycopg.AsyncConnection[Any], n: int) -> list[Any]:
        try:
            cur = await conn.execute(self.q_claim, (self.worker_id, self.type_names, n, self.lease))
            return await cur.fetchall()
        except Exception as exc:
            if _is_connection_error(exc):
                raise _ConnectionLost(str(exc)) from exc
            raise

    async def reconcile(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """After a connection loss during a claim: jobs running under this
        worker that it does not know about were claimed by a transaction
        whose answer never arrived. Release them now (retry now) rather than
        letting them wait for their lease to expire."""
        try:
            cur = await conn.execute(self.q_orphans, (self.worker_id,))
            rows = await cur.fetchall()
            for job_id, attempt, type_name in rows:
                if job_id in self.flights:
                    continue
                try:
                    cur = await conn.execute(self.q_release_jobs, (self.worker_id, [job_id], [attempt]))
                    if any(row[1] == "released" for row in await cur.fetchall()):
                        self.publish_after([type_name], ())
                    logger.info(
                        "released job %s claimed before a lost connection",
                        job_id,
                        extra={"job_id": str(job_id), "attempt": attempt, "worker_id": self.worker_id},
                    )
                except Exception as exc:
                    if _is_connection_error(exc):
                        raise
                    logger.info("could not release job %s: %s", job_id, exc)
        except Exception as exc:
            if _is_connection_error(exc):
                raise _ConnectionLost(str(exc)) from exc
            logger.warning("reconciling claimed jobs failed: %s", exc)

    # -- dispatch ------------------------------------------------------------

    def make_job(self, row: Any) -> JobContext[Any]:
        job: JobContext[Any] = JobContext()
        (
            job.id,
            job.type_name,
            job.chain_id,
            job.chain_type_name,
            job.chain_index,
            job.raw_input,
            job.priority,
            job.attempt,
            job.scheduled_at,
            job.created_at,
            job.leased_until,
            job.last_attempt_error,
            job.trace_context,
            job._blockers_json,
            now,
        ) = row
        job.worker_id = self.worker_id
        if self.lease is None and job.leased_until is not None and now is not None:
            est = (job.leased_until - now).total_seconds()
            if self.lease_estimate is None or est < self.lease_estimate:
                self.lease_estimate = est
                if self.w.renew_interval is None:
                    self.renew_every = max(0.05, est / 3)
        return job

    def prepare(self, job: JobContext[Any]) -> _Handler | None:
        """Resolve the handler and parse the input; None if it failed (an ack
        was queued)."""
        h = self.handlers.get(job.type_name)
        if h is None:  # claim is filtered by our types; defensive
            self.queue_ack(job, _FAIL, (f"no handler for job type {job.type_name!r}", None, None))
            return None
        job.job_type = h.job_type
        if h.job_type is None:
            job.input = job.raw_input
        else:
            try:
                job.input = h.job_type.parse_input(job.raw_input, job_id=job.id, chain_id=job.chain_id)
            except PayloadValidationError as exc:
                logger.error("%s", exc, extra=self._extra(job))
                self.queue_ack(job, _FAIL, (_error_text(exc), None, None))
                return None
        return h

    def start(self, row: Any) -> None:
        """A claimed row: run it now if a slot is free, else queue it
        (prefetch)."""
        job = self.make_job(row)
        self.stats.claimed += 1
        self.flights[job.id] = job
        if self.running >= self.concurrency:
            job._state = _QUEUED
            self.queued.append(job)
            return
        self.run_job(job)

    def start_queued(self) -> None:
        queued = self.queued
        while queued and self.running < self.concurrency:
            job = queued.popleft()
            if job._state == _QUEUED:
                self.run_job(job)

    def release_queued(self) -> None:
        while self.queued:
            job = self.queued.popleft()
            if job._state == _QUEUED:
                self.stats.released += 1
                self.queue_ack(job, _RELEASE, None)

    def run_job(self, job: JobContext[Any]) -> None:
        job._state = _RUNNING
        self.last_progress = time.monotonic()
        h = self.prepare(job)
        if h is None:
            return
        self.running += 1
        if h.is_async:
            ctx = contextvars.copy_context()
            t0 = time.monotonic()
            try:
                coro = h.fn(job)
                first = ctx.run(coro.send, None)
            except StopIteration as stop:
                self.finish(job, h, stop.value, None, time.monotonic() - t0)
                return
            except BaseException as exc:  # noqa: BLE001
                self.finish(job, h, None, exc, time.monotonic() - t0)
                return
            task = self.loop.create_task(_resumed(coro, first), context=ctx)
            job._task = task
            task.add_done_callback(functools.partial(self.task_done, job, h, t0))
        else:
            assert self.pool is not None
            self.pool.submit(job, h.fn)

    def task_done(self, job: JobContext[Any], h: _Handler, t0: float, task: asyncio.Task[Any]) -> None:
        job._task = None
        took = time.monotonic() - t0
        if task.cancelled():
            self.finish(job, h, None, asyncio.CancelledError(), took)
            return
        exc = task.exception()
        self.finish(job, h, task.result() if exc is None else None, exc, took)

    def deliver_sync_results(self, items: list[Any]) -> None:
        handlers = self.handlers
        for job, result, exc, took in items:
            self.finish(job, handlers[job.type_name], result, exc, took)

    def finish(
        self, job: JobContext[Any], h: _Handler, result: Any, exc: BaseException | None, took: float
    ) -> None:
        """A handler ended after ``took`` seconds: turn its result into an
        acknowledgement."""
        self.running -= 1
        self.last_progress = time.monotonic()
        self.wake.set()
        d = self.duration
        self.duration = took if d is None else d + 0.1 * (took - d)
        if job._state != _RUNNING:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("discarding outcome of a job no longer ours", extra=self._extra(job))
            return
        kind, data = self.outcome(job, h, result, exc)
        self.queue_ack(job, kind, data)

    def outcome(self, job: JobContext[Any], h: _Handler, result: Any, exc: BaseException | None) -> tuple[int, Any]:
        if exc is not None:
            if isinstance(exc, RetryAt):
                return self.retry_outcome(job, exc)
            if isinstance(exc, asyncio.CancelledError):
                err = "handler was cancelled"
            else:
                err = _error_text(exc)
            logger.warning(
                "job %s attempt %d failed: %s: %s",
                job.id,
                job.attempt,
                type(exc).__name__,
                exc,
                extra=self._extra(job),
            )
            return _FAIL, (err, None, None)
        if result is None and h.output_none:
            return _COMPLETE, None
        if isinstance(result, Continuation):
            try:
                if h.job_type is not None:
                    h.job_type.check_continuation(result)
            except QueuertError as e:
                logger.warning("%s", e, extra=self._extra(job))
                return _FAIL, (_error_text(e), None, None)
            return _CONTINUE, result
        if isinstance(result, RetryAt):
            return self.retry_outcome(job, result)
        try:
            if h.job_type is not None:
                value = h.job_type.dump_output(result)
            else:
                value = to_json_value(result)
            return _COMPLETE, (None if value is None else json.dumps(value))
        except Exception as e:
            logger.warning("invalid output of job %s: %s", job.id, e, extra=self._extra(job))
            return _FAIL, (_error_text(e), None, None)

    def retry_outcome(self, job: JobContext[Any], r: RetryAt) -> tuple[int, Any]:
        reason = r.reason or f"retry requested ({r.when})"
        if isinstance(r.when, timedelta):
            return _FAIL, (reason, None, max(r.when, timedelta(0)))
        return _FAIL, (reason, r.at(), None)

    def queue_ack(self, job: JobContext[Any], kind: int, data: Any) -> None:
        job._state = _ACKING
        self.acks.append((job, kind, data))
        self.wake.set()

    # -- lease loss ------------------------------------------------------------

    def lose(self, job: JobContext[Any], reason: str) -> None:
        state = job._state
        if state == _FLUSHING or state >= _LOST:
            return  # the in-flight acknowledgement decides
        job._state = _LOST
        self.flights.pop(job.id, None)
        self.stats.lost += 1
        job.lease_lost._set(reason)
        logger.warning("lost job %s (%s); stopping its handler", job.id, reason, extra=self._extra(job))
        if job._task is not None:
            job._task.cancel()
        self.wake.set()

    # -- shutdown -------------------------------------------------------------

    async def release_all(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        """Grace period over: flush finished outcomes, release running jobs
        (fail with retry now, fenced), stop their handlers."""
        release: list[tuple[JobContext[Any], int, Any]] = []
        self.queued.clear()
        for job in list(self.flights.values()):
            if job._state == _QUEUED:  # never started: give it back, attempt restored
                job._state = _RELEASED
                release.append((job, _RELEASE, None))
            elif job._state == _RUNNING:
                job._state = _RELEASED
                job.lease_lost._set("released: worker shutting down")
                if job._task is not None:
                    job._task.cancel()
                release.append((job, _FAIL, ("released: worker shutting down", None, timedelta(0))))
        acks, self.acks = self.acks, []
        for job, _, _ in release:
            job._state = _ACKING
        todo = acks + release
        if not todo:
            return
        tries, limit = (1, 2.0) if self.immediate else (3, 10.0)
        for _attempt in range(tries):
            try:
                if conn is None or conn.closed:
                    conn = await asyncio.wait_for(self.connect("main"), limit / 2)
                await asyncio.wait_for(self.flush(conn, todo, 0), limit)
                self.stats.released += len(release)
                if release:
                    logger.info(
                        "released %d unfinished job(s) for immediate retry",
                        len(release),
                        extra={"worker_id": self.worker_id},
                    )
                return
            except Exception as exc:
                for job, _, _ in todo:
                    if job._state == _FLUSHING:
                        job._state = _ACKING
                logger.warning("releasing jobs at shutdown failed: %s", exc)
                await close_quietly(conn)
                conn = None
        logger.error(
            "could not release %d job(s); they will be retried after their lease expires",
            len(todo),
            extra={"worker_id": self.worker_id},
        )

    # =====================================================================
    # maintenance: lease renewal, reap, polling
    # =====================================================================

    async def maintenance(self) -> None:
        next_reap = time.monotonic() + random.uniform(0, min(1.0, self.w.reap_interval))
        delay = 0.05
        while not self.finished:
            now = time.monotonic()
            deadlines = [next_reap]
            staged = self.w.mode == "staged"
            if staged and self.flights:
                deadlines.append(self.last_renew + self.renew_every)
            drained = not self.claim_wanted() and self.claiming
            if drained and self.poll_at is not None:
                deadlines.append(self.poll_at)
            need_poll_query = drained and self.poll_at is None
            if not need_poll_query and not self.check_ids:
                timeout = max(0.0, min(deadlines) - now)
                self.maint_wake.clear()
                if timeout > 0:
                    try:
                        await asyncio.wait_for(self.maint_wake.wait(), timeout)
                    except asyncio.TimeoutError:
                        pass
                if self.finished:
                    return
            try:
                conn = self.maint_conn
                if conn is None or conn.closed:
                    conn = self.maint_conn = await self.connect("maintenance")
                now = time.monotonic()
                if staged and self.flights and (now >= self.last_renew + self.renew_every or self.check_ids):
                    await self.renew(conn)
                if self.claiming and not self.claim_wanted():
                    if self.poll_at is None:
                        cur = await conn.execute(self.q_next_due, (self.type_names,))
                        row = await cur.fetchone()
                        self.set_poll(row)
                    elif now >= self.poll_at:
                        self.poll_at = None
                        self.hint()
                if now >= next_reap:
                    await self.reap(conn)
                    next_reap = time.monotonic() + self.w.reap_interval * random.uniform(0.8, 1.2)
                delay = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.finished:
                    return
                logger.warning(
                    "maintenance connection error: %s; retrying", exc, extra={"worker_id": self.worker_id}
                )
                await close_quietly(self.maint_conn)
                self.maint_conn = None
                await self._sleep(delay)
                delay = min(delay * 2, self.w.reconnect_max)

    def set_poll(self, row: Any) -> None:
        cap = self.w.poll_interval
        if row is None or row[0] is None:
            wait = cap
        else:
            due, now = row
            wait = (due - now).total_seconds()
            # a due job we did not get is locked by someone else: look again soon
            wait = min(max(wait, min(0.05, cap)), cap)
        self.poll_at = time.monotonic() + wait

    async def renew(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.check_ids.clear()
        ids = [jid for jid, job in self.flights.items() if job._state < _LOST]
        self.last_renew = time.monotonic()
        if not ids:
            return
        cur = await conn.execute(self.q_renew, (self.worker_id, ids, self.lease))
        rows = await cur.fetchall()
        for job_id, outcome in rows:
            if outcome != "renewed":
                job = self.flights.get(job_id)
                if job is not None:
                    self.lose(job, f"lease renewal: {outcome}")

    async def reap(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            cur = await conn.execute(self.q_reap, (100,))
            rows = await cur.fetchall()
            self.stats.reaped += len(rows)
            for job_id, previous, status in rows:
                logger.info(
                    "reaped job %s (lease of %s expired), now %s",
                    job_id,
                    previous,
                    status,
                    extra={"job_id": str(job_id), "worker_id": self.worker_id},
                )
                if job_id in self.flights:
                    self.lose(self.flights[job_id], "lease expired and was reaped")
            if len(rows) < 100:
                return

    # =====================================================================
    # atomic mode
    # =====================================================================

    async def atomic_main(self) -> None:
        async_types = [t for t in self.type_names if self.handlers[t].is_async]
        sync_types = [t for t in self.type_names if not self.handlers[t].is_async]
        self.started.set()
        slots: list[asyncio.Task[None]] = []
        if async_types:
            for i in range(self.concurrency):
                slots.append(self.loop.create_task(self.atomic_slot(i, async_types, None)))
        if sync_types:
            for i in range(self.concurrency):
                slots.append(self.loop.create_task(self.atomic_slot(i, sync_types, _SlotThread(self.loop, i))))
        try:
            await self.stop_event.wait()
            # graceful: slots stop claiming and finish their job
            remaining = max(0.0, (self.grace_deadline or time.monotonic()) - time.monotonic())
            done, pending = await asyncio.wait(slots, timeout=remaining if not self.immediate else 0)
            if pending:
                self.immediate = True
                await self.abort_atomic()
                await asyncio.wait(pending, timeout=10)
        finally:
            for t in slots:
                if not t.done():
                    t.cancel()
            for t in slots:
                try:
                    await t
                except (asyncio.CancelledError, Exception):
                    pass

    async def abort_atomic(self) -> None:
        """Past the grace period: roll back in-flight attempts. Async slots are
        cancelled; sync slots (a thread we cannot interrupt) have their
        backend terminated, which rolls their transaction back."""
        pids = []
        for job, holder in list(self.atomic_jobs.values()):
            job.lease_lost._set("released: worker shutting down")
            if isinstance(holder, asyncio.Task):
                holder.cancel()
            elif holder is not None:
                pids.append(holder)
            self.stats.released += 1
        if pids:
            try:
                async with await psycopg.AsyncConnection.connect(self.w.conninfo or "", autocommit=True) as c:
                    await c.execute("SELECT pg_terminate_backend(p) FROM unnest(%s::int[]) AS p", (pids,))
            except Exception as exc:
                logger.warning("could not terminate in-flight transactions: %s", exc)
        if self.atomic_jobs:
            logger.info(
                "rolled back %d unfinished job(s) at shutdown",
                len(self.atomic_jobs),
                extra={"worker_id": self.worker_id},
            )

    async def atomic_slot(self, index: int, type_names: list[str], executor: Any) -> None:
        conn: Any = None
        delay = 0.05
        key = id(asyncio.current_task())
        carry: Any = None  # async slots: the last job's acknowledgement, sent with the next claim
        try:
            while self.claiming:
                if not self.claim_wanted():
                    if carry is not None:
                        await self._flush_carry(conn, carry)
                        carry = None
                        continue
                    evt = self.hint_event
                    if not self.claim_wanted():
                        await evt.wait()
                    continue
                gen = self.hint_gen
                try:
                    if conn is not None and conn.closed:
                        # lost inside the attempt (e.g. under the handler's own
                        # statement): the rollback already happened server-side
                        self.stats.reconnects += 1
                        conn = None
                        carry = None  # its transaction died with the connection
                    if executor is None:
                        if conn is None:
                            conn = await self.connect("atomic")
                        got, carry = await self.atomic_attempt_async(conn, type_names, key, carry)
                    else:
                        if conn is None:
                            conn = await executor.call(self.connect_sync)
                        got = await executor.call(self.atomic_attempt_sync, conn, type_names, key)
                    delay = 0.05
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    carry = None  # its transaction committed or rolled back with the connection
                    if _is_connection_error(exc) or isinstance(exc, _ConnectionLost):
                        self.stats.reconnects += 1
                        logger.warning(
                            "database connection lost (%s); reconnecting",
                            exc,
                            extra={"worker_id": self.worker_id},
                        )
                    else:
                        logger.exception("atomic slot error", extra={"worker_id": self.worker_id})
                    await close_quietly(conn)  # the thread's call on it has ended
                    conn = None
                    await self._sleep(delay)
                    delay = min(delay * 2, self.w.reconnect_max)
                    continue
                if not got:
                    self.mark_drained(gen)
            if carry is not None:
                await self._flush_carry(conn, carry)
                carry = None
        finally:
            self.atomic_jobs.pop(key, None)
            if executor is not None:
                # this task may have been cancelled while its thread is still
                # inside a call on conn: the thread closes conn after it
                executor.stop(close=conn)
            else:
                await close_quietly(conn)

    async def _flush_carry(self, conn: Any, carry: Any) -> None:
        job, kind, data = carry
        try:
            await self._atomic_ack_async(conn, job, kind, data)
        except Exception as exc:
            if not _is_connection_error(exc):
                logger.exception("acknowledging job %s failed", job.id, extra=self._extra(job))
            await close_quietly(conn)

    def connect_sync(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(
            self.w.conninfo or "",
            autocommit=True,
            prepare_threshold=self.w.prepare_threshold,
            application_name="queuert-atomic",
        )
        if conn.info.parameter_status("standard_conforming_strings") != "on":
            conn.execute("SET standard_conforming_strings = on")  # see _sqltext.quote
        return conn

    async def atomic_attempt_async(
        self, conn: psycopg.AsyncConnection[Any], type_names: list[str], key: int, carry: Any
    ) -> tuple[bool, Any]:
        """Claim one job and run its handler in one transaction.

        ``carry`` is the previous job's acknowledgement (job, kind, data): its
        statements and COMMIT go in the same round trip as this claim, so a
        busy slot needs one round trip per job. Returns (claimed, carry for
        the next call)."""
        prefix: list[tuple[str, Any]] = []
        plan: Any = None
        if carry is not None:
            plan = self._carry_statements(conn, *carry)
            if plan is None:  # the handler ended the transaction itself: slow path
                await self._atomic_ack_async(conn, *carry)
                carry = None
            else:
                prefix = plan[0]
        try:
            results = await execute_many(
                conn,
                (
                    *prefix,
                    ("BEGIN", None),
                    (self.q_claim, (self.worker_id, type_names, 1, self.lease)),
                    (_SAVEPOINT, None),
                ),
            )
        except Exception as exc:
            if _is_connection_error(exc) or carry is None:
                raise
            await self._carry_failed(conn, carry, exc)
            return True, None  # claim again at once
        if carry is not None:
            _, ack_i, dep_i, ckind = plan
            self._count(ckind)
            self._ack_notes(carry[0], ckind, results, ack_i, dep_i)
        rows = results[len(prefix) + 1]
        if not rows:
            await conn.execute("ROLLBACK")
            return False, None
        job = self.make_job(rows[0])
        job.conn = conn
        self.stats.claimed += 1
        job._state = _RUNNING
        h = self.handlers[job.type_name]
        kind, data = await self._atomic_prepare(job, h)
        if kind < 0:
            self.atomic_jobs[key] = (job, asyncio.current_task())
            exc2: BaseException | None
            try:
                result = await h.fn(job)
                exc2 = None
            except asyncio.CancelledError:
                if self.immediate:
                    # shutdown: roll back, the job is pending again
                    await self._rollback_quietly(conn)
                    raise
                result, exc2 = None, asyncio.CancelledError()
            except Exception as e:
                result, exc2 = None, e
            finally:
                self.atomic_jobs.pop(key, None)
            kind, data = self.outcome(job, h, result, exc2)
        return True, (job, kind, data)

    def _carry_statements(
        self, conn: psycopg.AsyncConnection[Any], job: JobContext[Any], kind: int, data: Any
    ) -> tuple[list[tuple[str, Any]], int, int, int] | None:
        status = conn.info.transaction_status
        if status == psycopg.pq.TransactionStatus.IDLE:
            return None
        if kind != _FAIL and status == psycopg.pq.TransactionStatus.INERROR:
            kind, data = _FAIL, ("the handler left its transaction in an aborted state", None, None)
        stmts, ack_i, dep_i = self._ack_plan(job, kind, data, rollback=kind == _FAIL)
        return stmts, ack_i, dep_i, kind

    def _ack_plan(
        self, job: JobContext[Any], kind: int, data: Any, rollback: bool
    ) -> tuple[list[tuple[str, Any]], int, int]:
        """The statements that acknowledge an atomic job in its open
        transaction, ending with COMMIT; the index of the acknowledgement's
        result and of the dependents query's (-1: none). With batched
        notifications, the engine sends no job_ready / chain_completed from
        here on in this transaction (the handler's own SQL before it keeps
        the engine's notifications); the worker publishes them after commit."""
        stmts: list[tuple[str, Any]] = []
        if rollback:
            stmts.append((_ROLLBACK_TO, None))
        if self.batch:
            stmts.append((f"SET LOCAL queuert.notify = '{self.notify_setting}'", None))
        ack_i = len(stmts)
        stmts.append(self._ack_statement(job, kind, data))
        dep_i = -1
        if kind == _COMPLETE and self.lookup_dependents:
            dep_i = len(stmts)
            stmts.append((self.q_dependents, ([job.chain_id],)))
        stmts.append(("COMMIT", None))
        return stmts, ack_i, dep_i

    def _ack_notes(self, job: JobContext[Any], kind: int, results: list[list[Any]], ack_i: int, dep_i: int) -> None:
        """After the COMMIT of an atomic acknowledgement: what to publish
        (any thread)."""
        if not self.collect:
            return
        ready: list[str] = []
        chains: list[str] = []
        if kind == _COMPLETE:
            chains.append(str(job.chain_id))
            if dep_i >= 0:
                ready.extend(r[0] for r in results[dep_i])
        elif kind == _CONTINUE:
            ready.extend(r[1] for r in results[ack_i] if r[2] == "pending")
        elif any(r[1] == "pending" for r in results[ack_i]):
            ready.append(job.type_name)
        if not ready and not chains:
            return
        if threading.get_ident() == self.loop_thread:
            self.publish_after(ready, chains)
        else:
            self.loop.call_soon_threadsafe(self.publish_after, ready, chains)

    async def _carry_failed(self, conn: psycopg.AsyncConnection[Any], carry: Any, exc: BaseException) -> None:
        """The combined acknowledgement + claim failed. If the savepoint still
        exists, the acknowledgement failed (e.g. a continuation naming a
        missing blocker): undo the handler, record the failure. Otherwise the
        acknowledgement committed and the claim failed: roll that back."""
        job, kind, _ = carry
        try:
            await conn.execute(_ROLLBACK_TO)
        except Exception as exc2:
            if _is_connection_error(exc2):
                raise
            await conn.execute("ROLLBACK")
            self._count(kind)
            logger.warning("claim failed: %s", exc, extra={"worker_id": self.worker_id})
            return
        err = translate(exc)
        logger.warning("acknowledging job %s failed: %s", job.id, err, extra=self._extra(job))
        stmts, ack_i, dep_i = self._ack_plan(job, _FAIL, (_error_text(err), None, None), rollback=False)
        results = await execute_many(conn, stmts)
        self._count(_FAIL)
        self._ack_notes(job, _FAIL, results, ack_i, dep_i)

    async def _atomic_prepare(self, job: JobContext[Any], h: _Handler) -> tuple[int, Any]:
        job.job_type = h.job_type
        if h.job_type is None:
            job.input = job.raw_input
            return -1, None
        try:
            job.input = h.job_type.parse_input(job.raw_input, job_id=job.id, chain_id=job.chain_id)
            return -1, None
        except PayloadValidationError as exc:
            logger.error("%s", exc, extra=self._extra(job))
            return _FAIL, (_error_text(exc), None, None)

    async def _rollback_quietly(self, conn: psycopg.AsyncConnection[Any]) -> None:
        try:
            await asyncio.shield(conn.execute("ROLLBACK"))
        except BaseException:
            pass

    def _ack_statement(self, job: JobContext[Any], kind: int, data: Any) -> tuple[str, tuple[Any, ...]]:
        if kind == _COMPLETE:
            return self.q_complete_one, (job.id, self.worker_id, data, job.attempt)
        if kind == _CONTINUE:
            return self.q_continue_one, self._continue_params(job, data)
        error, retry_at, retry_after = data
        return self.q_fail_one, (job.id, self.worker_id, error, retry_at, retry_after, job.attempt)

    def _ended_transaction(self, job: JobContext[Any], status: int) -> None:
        logger.warning(
            "the handler of job %s ended the transaction itself (atomic mode owns it); "
            "acknowledging in a new transaction",
            job.id,
            extra=self._extra(job),
        )

    async def _atomic_ack_async(
        self, conn: psycopg.AsyncConnection[Any], job: JobContext[Any], kind: int, data: Any
    ) -> None:
        status = conn.info.transaction_status
        if status == psycopg.pq.TransactionStatus.IDLE:
            self._ended_transaction(job, status)
            await execute_many(conn, (("BEGIN", None), (_SAVEPOINT, None)))
        if kind == _FAIL or status == psycopg.pq.TransactionStatus.INERROR:
            if kind != _FAIL:
                kind, data = _FAIL, ("the handler left its transaction in an aborted state", None, None)
            stmts, ack_i, dep_i = self._ack_plan(job, kind, data, rollback=True)
            results = await execute_many(conn, stmts)
            self._count(kind)
            self._ack_notes(job, kind, results, ack_i, dep_i)
            return
        stmts, ack_i, dep_i = self._ack_plan(job, kind, data, rollback=False)
        try:
            results = await execute_many(conn, stmts)
        except Exception as exc:
            if _is_connection_error(exc):
                raise
            # e.g. a continuation naming a missing blocker: undo the handler,
            # record the failure in the same transaction
            err = translate(exc)
            logger.warning("acknowledging job %s failed: %s", job.id, err, extra=self._extra(job))
            stmts, ack_i, dep_i = self._ack_plan(job, _FAIL, (_error_text(err), None, None), rollback=True)
            results = await execute_many(conn, stmts)
            self._count(_FAIL)
            self._ack_notes(job, _FAIL, results, ack_i, dep_i)
            return
        self._count(kind)
        self._ack_notes(job, kind, results, ack_i, dep_i)

    def _count(self, kind: int) -> None:
        if kind == _COMPLETE:
            self.stats.completed += 1
        elif kind == _CONTINUE:
            self.stats.continued += 1
        else:
            self.stats.failed += 1

    def atomic_attempt_sync(self, conn: psycopg.Connection[Any], type_names: list[str], key: int) -> bool:
        """The whole attempt in a worker thread, on a sync connection."""
        rows = execute_many_sync(
            conn, (("BEGIN", None), (self.q_claim, (self.worker_id, type_names, 1, self.lease)), (_SAVEPOINT, None))
        )[1]
        if not rows:
            conn.execute("ROLLBACK")
            return False
        row = rows[0]
        job = self.make_job(row)
        job.conn = conn
        job._state = _RUNNING
        h = self.handlers[job.type_name]
        job.job_type = h.job_type
        kind = -1
        data: Any = None
        if h.job_type is None:
            job.input = job.raw_input
        else:
            try:
                job.input = h.job_type.parse_input(job.raw_input, job_id=job.id, chain_id=job.chain_id)
            except PayloadValidationError as exc:
                logger.error("%s", exc, extra=self._extra(job))
                kind, data = _FAIL, (_error_text(exc), None, None)
        self.loop.call_soon_threadsafe(self._count_claim)
        if kind < 0:
            self.atomic_jobs[key] = (job, conn.info.backend_pid)
            try:
                result = h.fn(job)
                exc2: BaseException | None = None
            except Exception as e:
                result, exc2 = None, e
            finally:
                self.atomic_jobs.pop(key, None)
            if job.lease_lost.is_set():
                # shutdown terminated our backend; the transaction is gone
                raise _ConnectionLost("released at shutdown")
            kind, data = self.outcome(job, h, result, exc2)
        status = conn.info.transaction_status
        if status == psycopg.pq.TransactionStatus.IDLE:
            self._ended_transaction(job, status)
            execute_many_sync(conn, (("BEGIN", None), (_SAVEPOINT, None)))
        if kind != _FAIL and status == psycopg.pq.TransactionStatus.INERROR:
            kind, data = _FAIL, ("the handler left its transaction in an aborted state", None, None)
        stmts, ack_i, dep_i = self._ack_plan(job, kind, data, rollback=kind == _FAIL)
        if kind == _FAIL:
            results = execute_many_sync(conn, stmts)
        else:
            try:
                results = execute_many_sync(conn, stmts)
            except Exception as exc:
                if _is_connection_error(exc):
                    raise
                err = translate(exc)
                logger.warning("acknowledging job %s failed: %s", job.id, err, extra=self._extra(job))
                kind = _FAIL
                stmts, ack_i, dep_i = self._ack_plan(job, _FAIL, (_error_text(err), None, None), rollback=True)
                results = execute_many_sync(conn, stmts)
        self.loop.call_soon_threadsafe(self._count, kind)
        self._ack_notes(job, kind, results, ack_i, dep_i)
        return True

    def _count_claim(self) -> None:
        self.stats.claimed += 1


# ---------------------------------------------------------------------------
# CLI entry point


def _load_target(target: str) -> Any:
    if ":" not in target:
        raise ValueError(f"worker target must look like 'module:attribute', got {target!r}")
    module_name, _, attr = target.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def build_worker(
    target: str | Any,
    *,
    dsn: str | None = None,
    schema: str | None = None,
    concurrency: int | None = None,
    types: Sequence[str] | None = None,
    mode: Mode | None = None,
) -> Worker:
    """The :class:`Worker` named by ``target`` (``module:attr``), with CLI
    overrides applied. The attribute may be a Worker, a zero-argument factory
    returning one, or a mapping / list of ``(job type, handler)`` pairs."""
    obj = _load_target(target) if isinstance(target, str) else target
    if not isinstance(obj, Worker) and callable(obj) and not isinstance(obj, (dict, list, tuple)):
        obj = obj()
    if isinstance(obj, Worker):
        worker = obj
        if schema is not None and schema != worker.schema:
            worker.schema = validate_schema_name(schema)
    else:
        pairs: Iterable[Any] = obj.items() if isinstance(obj, dict) else obj
        worker = Worker(schema=schema or "queuert")
        for pair in pairs:
            job_type, fn = pair
            worker.handler(job_type, fn)
    if dsn is not None:
        worker.conninfo = dsn
    if concurrency is not None:
        worker.concurrency = concurrency
    if types:
        worker.types = list(types)
    if mode is not None:
        if mode not in ("staged", "atomic"):
            raise ValueError(f"mode must be 'staged' or 'atomic', not {mode!r}")
        worker.mode = mode
    if worker.conninfo is None:
        worker.conninfo = (
            os.environ.get("DATABASE_URL")
            or os.environ.get("QUEUERT_DSN")
            or "postgresql://postgres@127.0.0.1:5432/postgres"
        )
    return worker


def run_worker_cli(
    target: str,
    dsn: str | None = None,
    schema: str | None = None,
    concurrency: int | None = None,
    types: Sequence[str] | None = None,
    mode: Mode | None = None,
) -> None:
    """Load the worker named by ``target`` and run it until SIGTERM/SIGINT."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = build_worker(target, dsn=dsn, schema=schema, concurrency=concurrency, types=types, mode=mode)
    worker.run(handle_signals=True)

