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
  ``continue_with`` per continuation, ``fail_jobs`` for all failures and the
  next ``claim`` for the free slots and, by default, for jobs held ahead
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
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, Literal, TypeVar, overload

from queuert._runners import _resumed, _SlotThread, _ThreadPool
from queuert._worker import job_state as st
from queuert._worker.due_poll import DuePoll
from queuert._worker.maintenance import Maintenance, Service
from queuert._worker.outcomes import SHUTDOWN_RELEASE, Ack, Completed, Continued, Failed, Outcome, Released
from queuert._worker.pg_store import PgStore
from queuert._worker.publisher import Publisher
from queuert._worker.reaping import Reaper
from queuert._worker.renewal import Renewal
from queuert._worker.stats import WorkerStats
from queuert._worker.wakeup import Wakeup, listen
from queuert._worker.store import (
    AtomicSession,
    Conflict,
    ConnectionLost,
    JobLost,
    Rejected,
    Session,
    StoreError,
    SyncAtomicSession,
    Written,
)
from queuert.errors import PayloadValidationError, QueuertError
from queuert.job import JobContext
from queuert.migrate import validate_schema_name
from queuert.notify.base import Notifier, Subscription
from queuert.notify.postgres import PostgresNotifier
from queuert.types import Continuation, JobType, RetryAt, to_json_value

__all__ = ["Worker", "WorkerStats", "run_worker_cli"]

logger = logging.getLogger("queuert.worker")

Mode = Literal["staged", "atomic"]
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_MAX_ERROR_TEXT = 8000
_COMPLETED_EMPTY = Completed(None)
_ABORTED = "the handler left its transaction in an aborted state"


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


class _Lane:
    """A flush connection of the staged dispatcher."""

    __slots__ = ("index", "session", "busy", "task", "delay")

    def __init__(self, index: int) -> None:
        self.index = index
        self.session: Session | None = None
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

        self.wakeup = Wakeup()

        self.flights: dict[uuid.UUID, JobContext[Any]] = {}
        self.acks: list[Ack] = []
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
        self.renewal = Renewal(
            self.flights,
            self.lose,
            lease=self.lease,
            interval=worker.renew_interval,
            wake=self.wakeup.maintenance.set,
        )
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
        self.publisher: Publisher | None = None
        self.collect = self.batch or self.publish
        # Dependents a completion made pending: the engine announces them
        # inside its completion (job_ready_unblocked stays on in our
        # sessions: such commits are rare, a fan-in's last blocker). Only a
        # non-PostgreSQL notifier needs the worker to publish them itself,
        # from what complete_jobs reports.
        self.publish_unblocked = self.publish
        notify_setting = "job_lost" if self.publish else "job_lost,job_ready_unblocked"
        self.store = PgStore(
            worker.conninfo or "",
            schema=self.schema,
            worker_id=self.worker_id,
            type_names=self.type_names,
            lease=self.lease,
            prepare_threshold=worker.prepare_threshold,
            notify_setting=notify_setting if self.batch else None,
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
        self.wakeup.stop()

    # -- connections -------------------------------------------------------

    async def reconnecting(self, purpose: str, opener: Callable[[], Awaitable[T]]) -> T:
        """``opener()`` until it succeeds, with capped exponential backoff.
        Gives up (ConnectionLost) at an immediate stop, or once stopping
        for connections other than the flush lanes' and the publisher's."""
        delay = 0.05
        while True:
            try:
                return await opener()
            except ConnectionLost as exc:
                if self.immediate or (self.stop_requested and purpose not in ("main", "notify")):
                    raise
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
                    raise
                delay = min(delay * 2, self.w.reconnect_max)

    async def connect(self, purpose: str) -> Any:
        """A connection for the publisher (reconnecting)."""
        return await self.reconnecting(purpose, lambda: self.store.connect(purpose))

    async def open_session(self, purpose: Literal["main", "maintenance"]) -> Session:
        return await self.reconnecting(purpose, lambda: self.store.open(purpose))

    # -- hints -------------------------------------------------------------

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

    # -- main --------------------------------------------------------------

    async def main(self) -> None:
        w = self.w
        notifier = self.notifier
        if notifier is None:
            notifier = PostgresNotifier(w.conninfo or "", schema=self.schema)
            self.notifier = notifier
            self.own_notifier = True
        maint: Maintenance | None = None
        if self.collect:
            store = self.store
            self.publisher = Publisher(
                (lambda: self.reconnecting("notify", store.open_announcer)) if self.batch else None,
                notifier if self.publish else None,
                worker_id=self.worker_id,
            )
            self.publisher.start()
        try:
            self.subscription = await listen(notifier, self.type_names, self.wakeup, self.renewal.check)
            logger.info(
                "worker %s starting (%s mode, concurrency %d, types %s)",
                self.worker_id,
                w.mode,
                self.concurrency,
                ", ".join(self.type_names),
                extra={"worker_id": self.worker_id},
            )
            services: list[Service] = [
                DuePoll(self.wakeup, lambda: self.claiming, poll_interval=w.poll_interval),
                Reaper(self.flights, self.lose, self.stats, interval=w.reap_interval, worker_id=self.worker_id),
            ]
            if w.mode == "staged":
                services.insert(0, self.renewal)
            maint = Maintenance(
                services,
                lambda: self.open_session("maintenance"),
                self.wakeup.maintenance,
                reconnect_max=w.reconnect_max,
                worker_id=self.worker_id,
            )
            maint.start()
            if w.mode == "staged":
                await self.staged_main()
            else:
                await self.atomic_main()
        finally:
            self.finished = True
            self.stop_event.set()
            if maint is not None:
                await maint.stop()
            if self.publisher is not None:
                await self.publisher.stop()
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
            lanes[0].session = await self.open_session("main")
            self.started.set()
            while True:
                busy = [ln for ln in lanes if ln.busy]
                if not self.claiming:
                    if self.immediate or (
                        self.grace_deadline is not None and time.monotonic() >= self.grace_deadline
                    ):
                        if busy:
                            await asyncio.wait({ln.task for ln in busy if ln.task is not None}, timeout=10)
                        await self.release_all(lanes[0].session)
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
                want = free > 0 and self.wakeup.claim_wanted()
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
                self.wakeup.dispatcher.clear()
                timeout = stall_left
                if self.grace_deadline is not None:
                    timeout = max(0.0, self.grace_deadline - time.monotonic())
                if timeout is None:
                    await self.wakeup.dispatcher.wait()
                else:
                    try:
                        await asyncio.wait_for(self.wakeup.dispatcher.wait(), timeout)
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
                if ln.session is not None:
                    await ln.session.close()

    async def run_lane(self, lane: _Lane, acks: list[Ack], claim_n: int) -> None:
        """One flush on one lane, reconnecting (with backoff) until it is
        written. Acks are retried after a connection loss: they were not
        committed, or they were and the engine now refuses them (logged as
        lost, never written twice)."""
        gen = self.wakeup.hint_gen
        reserved = claim_n
        rows: list[Any] = []
        try:
            while True:
                try:
                    if lane.session is None or lane.session.closed:
                        lane.session = await self.open_session("main")
                    if self.need_reconcile and self.reserved == reserved:
                        # no claim in flight on another lane, and ours is
                        # sent only after this: any job leased by us that we
                        # do not know is an orphan of a lost claim
                        self.need_reconcile = False
                        await self.reconcile(lane.session)
                    rows = await self.flush(lane.session, acks, claim_n)
                    lane.delay = 0.05
                    break
                except ConnectionLost as exc:
                    self.stats.reconnects += 1
                    logger.warning(
                        "database connection lost (%s); reconnecting",
                        exc,
                        extra={"worker_id": self.worker_id},
                    )
                    for ack in acks:
                        if ack.job._state == st.FLUSHING:
                            ack.job._state = st.ACKING
                    if lane.session is not None:
                        await lane.session.close()
                    lane.session = None
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
                    self.wakeup.mark_drained(gen)
                if len(rows) > self.stats.largest_claim:
                    self.stats.largest_claim = len(rows)
                for row in rows:
                    self.start(row)
        finally:
            self.reserved -= reserved
            lane.busy = False
            lane.task = None
            self.wakeup.dispatcher.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stop_event.wait(), seconds * random.uniform(0.5, 1.0))
        except asyncio.TimeoutError:
            pass

    async def flush(self, session: Session, acks: list[Ack], claim_n: int) -> list[Any]:
        """One round trip, one transaction: acks, then claim."""
        live: list[Ack] = []
        for ack in acks:
            job = ack.job
            if job._state != st.ACKING and job._state != st.FLUSHING:
                continue  # lost or released meanwhile
            job._state = st.FLUSHING
            live.append(ack)
        if not live and not claim_n:
            return []
        self.stats.flushes += 1
        try:
            for conflict_retry in range(3):
                try:
                    written = await session.flush(live, claim_n)
                    break
                except Conflict:
                    # a deadlock or serialization failure rolled the whole
                    # transaction back: the same batch is simply sent again
                    if conflict_retry == 2:
                        raise
                    await asyncio.sleep(random.uniform(0.002, 0.02) * (conflict_retry + 1))
        except ConnectionLost:
            raise
        except StoreError as exc:
            # The transaction rolled back as a whole: nothing of it
            # happened. Redo each ack on its own to isolate the culprit.
            if isinstance(exc, Rejected) and not isinstance(exc.error, QueuertError):
                logger.error(
                    "batched acknowledgement failed (%s); retrying one by one",
                    exc,
                    extra={"worker_id": self.worker_id},
                )
            await self.flush_one_by_one(session, live)
            if claim_n:
                return await session.claim(claim_n)
            return []
        self.after_write(written)
        return written.claimed

    def after_write(self, written: Written) -> None:
        """Bookkeeping after a committed acknowledgement; hand the
        notifications it implies (chains completed, job types made pending)
        to the publisher."""
        flights = self.flights
        stats = self.stats
        debug = logger.isEnabledFor(logging.DEBUG)
        for ack in written.done:
            job = ack.job
            flights.pop(job.id, None)
            job._state = st.DONE
            kind = type(ack.outcome)
            if kind is Completed:
                stats.completed += 1
                if debug:
                    logger.debug("job completed", extra=self._extra(job))
            elif kind is Failed:
                stats.failed += 1
            elif kind is Continued:
                stats.continued += 1
                if debug:
                    logger.debug("job continued", extra=self._extra(job))
        for ack, outcome in written.lost:
            job = ack.job
            flights.pop(job.id, None)
            if type(ack.outcome) is Released:
                job._state = st.DONE
                logger.info("job %s was no longer ours to release (%s)", job.id, outcome, extra=self._extra(job))
                continue
            job._state = st.LOST
            stats.lost += 1
            logger.warning(
                "job %s was lost before its outcome was written (%s); its outcome is discarded",
                job.id,
                outcome,
                extra=self._extra(job),
            )
        if self.collect:
            ready = written.ready
            if self.publish_unblocked and written.unblocked:
                ready = ready | written.unblocked
            if ready or written.chains:
                self.publish_after(ready, written.chains)

    def publish_after(self, ready: Iterable[str], chains: Iterable[str]) -> None:
        """Notifications implied by a committed acknowledgement (loop thread)."""
        if self.publisher is not None:
            self.publisher.add(ready, chains)

    async def flush_one_by_one(self, session: Session, acks: list[Ack]) -> None:
        """Slow path after a failed batch: each ack in its own transaction.
        A job no longer ours is logged and dropped (never retried). Another
        engine error on a continuation (a bad blocker, an invalid argument)
        fails the attempt with that error."""
        for ack in acks:
            job = ack.job
            try:
                for retry in range(5):
                    try:
                        self.after_write(await session.acknowledge(ack))
                        break
                    except Conflict:
                        if retry == 4:
                            raise
                        await asyncio.sleep(random.uniform(0.005, 0.05))
            except ConnectionLost:
                raise
            except JobLost as exc:
                self.flights.pop(job.id, None)
                job._state = st.LOST
                self.stats.lost += 1
                logger.warning("job %s is no longer ours (%s); outcome discarded", job.id, exc, extra=self._extra(job))
            except StoreError as exc:
                err = exc.error if isinstance(exc, Rejected) else exc
                if not isinstance(ack.outcome, Failed):
                    logger.warning(
                        "acknowledging job %s failed (%s); failing the attempt", job.id, err, extra=self._extra(job)
                    )
                    try:
                        self.after_write(await session.acknowledge(Ack(job, Failed(_error_text(err)))))
                        continue
                    except ConnectionLost:
                        raise
                    except StoreError as exc2:
                        err = exc2
                logger.error(
                    "cannot record failure of job %s: %s; it will be reaped", job.id, err, extra=self._extra(job)
                )
                self.flights.pop(job.id, None)
                job._state = st.LOST

    async def reconcile(self, session: Session) -> None:
        """After a connection loss during a claim: jobs running under this
        worker that it does not know about were claimed by a transaction
        whose answer never arrived. Release them now (retry now) rather than
        letting them wait for their lease to expire."""
        try:
            released = await session.release_orphans(list(self.flights))
        except ConnectionLost:
            raise
        except StoreError as exc:
            logger.warning("reconciling claimed jobs failed: %s", exc)
            return
        for job_id, type_name in released:
            logger.info(
                "released job %s claimed before a lost connection",
                job_id,
                extra={"job_id": str(job_id), "worker_id": self.worker_id},
            )
        if released:
            self.publish_after({type_name for _, type_name in released}, ())

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
            _seq,
            now,
        ) = row
        job.worker_id = self.worker_id
        self.renewal.observe_claim(job.leased_until, now)
        return job

    def prepare(self, job: JobContext[Any]) -> _Handler | None:
        """Resolve the handler and parse the input; None if it failed (an ack
        was queued)."""
        h = self.handlers.get(job.type_name)
        if h is None:  # claim is filtered by our types; defensive
            self.queue_ack(job, Failed(f"no handler for job type {job.type_name!r}"))
            return None
        job.job_type = h.job_type
        if h.job_type is None:
            job.input = job.raw_input
        else:
            try:
                job.input = h.job_type.parse_input(job.raw_input, job_id=job.id, chain_id=job.chain_id)
            except PayloadValidationError as exc:
                logger.error("%s", exc, extra=self._extra(job))
                self.queue_ack(job, Failed(_error_text(exc)))
                return None
        return h

    def start(self, row: Any) -> None:
        """A claimed row: run it now if a slot is free, else queue it
        (prefetch)."""
        job = self.make_job(row)
        self.stats.claimed += 1
        self.flights[job.id] = job
        if self.running >= self.concurrency:
            job._state = st.QUEUED
            self.queued.append(job)
            return
        self.run_job(job)

    def start_queued(self) -> None:
        queued = self.queued
        while queued and self.running < self.concurrency:
            job = queued.popleft()
            if job._state == st.QUEUED:
                self.run_job(job)

    def release_queued(self) -> None:
        while self.queued:
            job = self.queued.popleft()
            if job._state == st.QUEUED:
                self.stats.released += 1
                self.queue_ack(job, Released())

    def run_job(self, job: JobContext[Any]) -> None:
        job._state = st.RUNNING
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
        self.wakeup.dispatcher.set()
        d = self.duration
        self.duration = took if d is None else d + 0.1 * (took - d)
        if job._state != st.RUNNING:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("discarding outcome of a job no longer ours", extra=self._extra(job))
            return
        self.queue_ack(job, self.outcome(job, h, result, exc))

    def outcome(self, job: JobContext[Any], h: _Handler, result: Any, exc: BaseException | None) -> Outcome:
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
            return Failed(err)
        if result is None and h.output_none:
            return _COMPLETED_EMPTY
        if isinstance(result, Continuation):
            try:
                if h.job_type is not None:
                    h.job_type.check_continuation(result)
            except QueuertError as e:
                logger.warning("%s", e, extra=self._extra(job))
                return Failed(_error_text(e))
            return Continued(result)
        if isinstance(result, RetryAt):
            return self.retry_outcome(job, result)
        try:
            if h.job_type is not None:
                value = h.job_type.dump_output(result)
            else:
                value = to_json_value(result)
            return _COMPLETED_EMPTY if value is None else Completed(json.dumps(value))
        except Exception as e:
            logger.warning("invalid output of job %s: %s", job.id, e, extra=self._extra(job))
            return Failed(_error_text(e))

    def retry_outcome(self, job: JobContext[Any], r: RetryAt) -> Failed:
        reason = r.reason or f"retry requested ({r.when})"
        if isinstance(r.when, timedelta):
            return Failed(reason, None, max(r.when, timedelta(0)))
        return Failed(reason, r.at(), None)

    def queue_ack(self, job: JobContext[Any], outcome: Outcome) -> None:
        job._state = st.ACKING
        self.acks.append(Ack(job, outcome))
        self.wakeup.dispatcher.set()

    # -- lease loss ------------------------------------------------------------

    def lose(self, job: JobContext[Any], reason: str) -> None:
        state = job._state
        if state == st.FLUSHING or state >= st.LOST:
            return  # the in-flight acknowledgement decides
        job._state = st.LOST
        self.flights.pop(job.id, None)
        self.stats.lost += 1
        job.lease_lost._set(reason)
        logger.warning("lost job %s (%s); stopping its handler", job.id, reason, extra=self._extra(job))
        if job._task is not None:
            job._task.cancel()
        self.wakeup.dispatcher.set()

    # -- shutdown -------------------------------------------------------------

    async def release_all(self, session: Session | None) -> None:
        """Grace period over: flush finished outcomes, release running jobs
        (fail with retry now, fenced), stop their handlers."""
        release: list[Ack] = []
        self.queued.clear()
        for job in list(self.flights.values()):
            if job._state == st.QUEUED:  # never started: give it back, attempt restored
                job._state = st.RELEASED
                release.append(Ack(job, Released()))
            elif job._state == st.RUNNING:
                job._state = st.RELEASED
                job.lease_lost._set("released: worker shutting down")
                if job._task is not None:
                    job._task.cancel()
                release.append(Ack(job, SHUTDOWN_RELEASE))
        acks, self.acks = self.acks, []
        for ack in release:
            ack.job._state = st.ACKING
        todo = acks + release
        if not todo:
            return
        tries, limit = (1, 2.0) if self.immediate else (3, 10.0)
        for _attempt in range(tries):
            try:
                if session is None or session.closed:
                    session = await asyncio.wait_for(self.open_session("main"), limit / 2)
                await asyncio.wait_for(self.flush(session, todo, 0), limit)
                self.stats.released += len(release)
                if release:
                    logger.info(
                        "released %d unfinished job(s) for immediate retry",
                        len(release),
                        extra={"worker_id": self.worker_id},
                    )
                return
            except Exception as exc:
                for ack in todo:
                    if ack.job._state == st.FLUSHING:
                        ack.job._state = st.ACKING
                logger.warning("releasing jobs at shutdown failed: %s", exc)
                if session is not None:
                    await session.close()
                session = None
        logger.error(
            "could not release %d job(s); they will be retried after their lease expires",
            len(todo),
            extra={"worker_id": self.worker_id},
        )

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
        transaction ended by the store, which rolls it back."""
        backends = []
        for job, holder in list(self.atomic_jobs.values()):
            job.lease_lost._set("released: worker shutting down")
            if isinstance(holder, asyncio.Task):
                holder.cancel()
            elif holder is not None:
                backends.append(holder)
            self.stats.released += 1
        if backends:
            try:
                await self.store.interrupt(backends)
            except StoreError as exc:
                logger.warning("could not terminate in-flight transactions: %s", exc)
        if self.atomic_jobs:
            logger.info(
                "rolled back %d unfinished job(s) at shutdown",
                len(self.atomic_jobs),
                extra={"worker_id": self.worker_id},
            )

    async def atomic_slot(self, index: int, type_names: list[str], executor: Any) -> None:
        session: Any = None
        delay = 0.05
        key = id(asyncio.current_task())
        carry: Ack | None = None  # async slots: the last job's acknowledgement, sent with the next claim
        try:
            while self.claiming:
                if not self.wakeup.claim_wanted():
                    if carry is not None:
                        await self._flush_carry(session, carry)
                        carry = None
                        continue
                    evt = self.wakeup.hint_event
                    if not self.wakeup.claim_wanted():
                        await evt.wait()
                    continue
                gen = self.wakeup.hint_gen
                try:
                    if session is not None and session.closed:
                        # lost inside the attempt (e.g. under the handler's own
                        # statement): the rollback already happened server-side
                        self.stats.reconnects += 1
                        session = None
                        carry = None  # its transaction died with the connection
                    if executor is None:
                        if session is None:
                            session = await self.reconnecting("atomic", self.store.open_atomic)
                        got, carry = await self.atomic_attempt_async(session, type_names, key, carry)
                    else:
                        if session is None:
                            session = await executor.call(self.store.open_atomic_sync)
                        got = await executor.call(self.atomic_attempt_sync, session, type_names, key)
                    delay = 0.05
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    carry = None  # its transaction committed or rolled back with the connection
                    if isinstance(exc, ConnectionLost):
                        self.stats.reconnects += 1
                        logger.warning(
                            "database connection lost (%s); reconnecting",
                            exc,
                            extra={"worker_id": self.worker_id},
                        )
                    else:
                        logger.exception("atomic slot error", extra={"worker_id": self.worker_id})
                    if session is not None:
                        if executor is not None:
                            await executor.call(session.close)  # in its thread: its call has ended
                        else:
                            await session.close()
                    session = None
                    await self._sleep(delay)
                    delay = min(delay * 2, self.w.reconnect_max)
                    continue
                if not got:
                    self.wakeup.mark_drained(gen)
            if carry is not None:
                await self._flush_carry(session, carry)
                carry = None
        finally:
            self.atomic_jobs.pop(key, None)
            if executor is not None:
                # this task may have been cancelled while its thread is still
                # inside a call on the session: the thread closes it after that
                executor.stop(close=session)
            elif session is not None:
                await session.close()

    async def _flush_carry(self, session: AtomicSession, carry: Ack) -> None:
        try:
            await self._atomic_ack_async(session, carry)
        except Exception as exc:
            if not isinstance(exc, ConnectionLost):
                logger.exception("acknowledging job %s failed", carry.job.id, extra=self._extra(carry.job))
            await session.close()

    def _atomic_plan(self, job: JobContext[Any], outcome: Outcome, state: str) -> tuple[Ack, bool]:
        """The acknowledgement to write in an open transaction, and whether to
        roll back to the savepoint first (a failure undoes the handler's
        writes; an aborted transaction can only record a failure)."""
        if not isinstance(outcome, Failed) and state == "aborted":
            outcome = Failed(_ABORTED)
        return Ack(job, outcome), isinstance(outcome, Failed)

    async def atomic_attempt_async(
        self, session: AtomicSession, type_names: list[str], key: int, carry: Ack | None
    ) -> tuple[bool, Ack | None]:
        """Claim one job and run its handler in one transaction.

        ``carry`` is the previous job's acknowledgement: it is committed in
        the same round trip as this claim, so a busy slot needs one round
        trip per job. Returns (claimed, carry for the next call)."""
        plan: tuple[Ack, bool] | None = None
        if carry is not None:
            state = session.transaction_state()
            if state == "idle":  # the handler ended the transaction itself: slow path
                await self._atomic_ack_async(session, carry)
                carry = None
            else:
                plan = self._atomic_plan(carry.job, carry.outcome, state)
        try:
            written, row = await session.open_attempt(type_names, plan)
        except ConnectionLost:
            raise
        except StoreError as exc:
            if plan is None:
                raise
            await self._carry_failed(session, plan[0], exc)
            return True, None  # claim again at once
        if written is not None:
            self._atomic_written(written)
        if row is None:
            return False, None
        job = self.make_job(row)
        job.conn = session.handle
        self.stats.claimed += 1
        job._state = st.RUNNING
        h = self.handlers[job.type_name]
        outcome: Outcome | None = self._atomic_prepare(job, h)
        if outcome is None:
            self.atomic_jobs[key] = (job, asyncio.current_task())
            exc2: BaseException | None
            try:
                result = await h.fn(job)
                exc2 = None
            except asyncio.CancelledError:
                if self.immediate:
                    # shutdown: roll back, the job is pending again
                    await self._rollback_quietly(session)
                    raise
                result, exc2 = None, asyncio.CancelledError()
            except Exception as e:
                result, exc2 = None, e
            finally:
                self.atomic_jobs.pop(key, None)
            outcome = self.outcome(job, h, result, exc2)
        return True, Ack(job, outcome)

    def _atomic_written(self, written: Written) -> None:
        """After the COMMIT of an atomic acknowledgement (loop thread)."""
        stats = self.stats
        for ack in written.done:
            kind = type(ack.outcome)
            if kind is Completed:
                stats.completed += 1
            elif kind is Continued:
                stats.continued += 1
            else:
                stats.failed += 1
        for ack, outcome in written.lost:
            stats.lost += 1
            logger.warning(
                "job %s was lost before its outcome was written (%s); its outcome is discarded",
                ack.job.id,
                outcome,
                extra=self._extra(ack.job),
            )
        if self.collect:
            ready = written.ready
            if self.publish_unblocked and written.unblocked:
                ready = ready | written.unblocked
            if ready or written.chains:
                self.publish_after(ready, written.chains)

    async def _carry_failed(self, session: AtomicSession, carry: Ack, exc: StoreError) -> None:
        """The combined acknowledgement + claim failed. If the savepoint still
        exists, the acknowledgement failed (e.g. a continuation naming a
        missing blocker): undo the handler, record the failure. Otherwise the
        acknowledgement committed and the claim failed: roll that back."""
        job = carry.job
        try:
            await session.rollback_to_savepoint()
        except ConnectionLost:
            raise
        except StoreError:
            await session.rollback()
            self.stats_only(carry)
            logger.warning("claim failed: %s", exc, extra={"worker_id": self.worker_id})
            return
        err = exc.error if isinstance(exc, Rejected) else exc
        logger.warning("acknowledging job %s failed: %s", job.id, err, extra=self._extra(job))
        self._atomic_written(await session.acknowledge(Ack(job, Failed(_error_text(err))), False))

    def stats_only(self, ack: Ack) -> None:
        kind = type(ack.outcome)
        if kind is Completed:
            self.stats.completed += 1
        elif kind is Continued:
            self.stats.continued += 1
        else:
            self.stats.failed += 1

    def _atomic_prepare(self, job: JobContext[Any], h: _Handler) -> Failed | None:
        """Parse the input; a Failed outcome when it is invalid."""
        job.job_type = h.job_type
        if h.job_type is None:
            job.input = job.raw_input
            return None
        try:
            job.input = h.job_type.parse_input(job.raw_input, job_id=job.id, chain_id=job.chain_id)
            return None
        except PayloadValidationError as exc:
            logger.error("%s", exc, extra=self._extra(job))
            return Failed(_error_text(exc))

    async def _rollback_quietly(self, session: AtomicSession) -> None:
        try:
            await asyncio.shield(session.rollback())
        except BaseException:
            pass

    def _ended_transaction(self, job: JobContext[Any]) -> None:
        logger.warning(
            "the handler of job %s ended the transaction itself (atomic mode owns it); "
            "acknowledging in a new transaction",
            job.id,
            extra=self._extra(job),
        )

    async def _atomic_ack_async(self, session: AtomicSession, ack: Ack) -> None:
        job = ack.job
        state = session.transaction_state()
        if state == "idle":
            self._ended_transaction(job)
            await session.restart_transaction()
        ack, rollback = self._atomic_plan(job, ack.outcome, state)
        if rollback:
            self._atomic_written(await session.acknowledge(ack, True))
            return
        try:
            written = await session.acknowledge(ack, False)
        except ConnectionLost:
            raise
        except StoreError as exc:
            # e.g. a continuation naming a missing blocker: undo the handler,
            # record the failure in the same transaction
            err = exc.error if isinstance(exc, Rejected) else exc
            logger.warning("acknowledging job %s failed: %s", job.id, err, extra=self._extra(job))
            written = await session.acknowledge(Ack(job, Failed(_error_text(err))), True)
        self._atomic_written(written)

    def atomic_attempt_sync(self, session: SyncAtomicSession, type_names: list[str], key: int) -> bool:
        """The whole attempt in a worker thread, on a sync session."""
        row = session.open_attempt(type_names)
        if row is None:
            return False
        job = self.make_job(row)
        job.conn = session.handle
        job._state = st.RUNNING
        h = self.handlers[job.type_name]
        outcome: Outcome | None = self._atomic_prepare(job, h)
        self.loop.call_soon_threadsafe(self._count_claim)
        if outcome is None:
            self.atomic_jobs[key] = (job, session.backend_id)
            try:
                result = h.fn(job)
                exc2: BaseException | None = None
            except Exception as e:
                result, exc2 = None, e
            finally:
                self.atomic_jobs.pop(key, None)
            if job.lease_lost.is_set():
                # shutdown terminated our backend; the transaction is gone
                raise ConnectionLost("released at shutdown")
            outcome = self.outcome(job, h, result, exc2)
        state = session.transaction_state()
        if state == "idle":
            self._ended_transaction(job)
            session.restart_transaction()
        ack, rollback = self._atomic_plan(job, outcome, state)
        try:
            written = session.acknowledge(ack, rollback)
        except ConnectionLost:
            raise
        except StoreError as exc:
            if rollback:
                raise
            err = exc.error if isinstance(exc, Rejected) else exc
            logger.warning("acknowledging job %s failed: %s", job.id, err, extra=self._extra(job))
            written = session.acknowledge(Ack(job, Failed(_error_text(err))), True)
        self.loop.call_soon_threadsafe(self._atomic_written, written)
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

