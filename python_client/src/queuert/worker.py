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
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any, Literal, TypeVar, overload

from queuert._worker.handlers import Handler
from queuert._worker.run import Run
from queuert._worker.settings import (
    Mode,
    Settings,
    as_interval,
    check_concurrency,
    check_mode,
    check_prefetch,
    check_prune,
    new_worker_id,
)
from queuert._worker.stats import WorkerStats
from queuert.job import JobContext  # re-exported: handlers annotate with queuert.worker.JobContext too
from queuert.migrate import validate_schema_name
from queuert.notify.base import Notifier
from queuert.notify.factory import notifier_from_url
from queuert.types import JobType

__all__ = ["Worker", "WorkerStats", "run_worker_cli"]

logger = logging.getLogger("queuert.worker")

F = TypeVar("F", bound=Callable[..., Any])


class Worker:
    """Runs handlers for job types. See the module documentation.

    ``conninfo`` may be left out and given later (``worker.conninfo = ...``,
    as ``queuert worker --dsn`` does). ``lease`` (seconds or timedelta) is
    the lease asked for at claim and renewal; ``None`` uses each type's lease
    from ``set_job_type`` (default 60 s). ``types`` limits the claimed types
    to a subset of the registered handlers. ``worker_id`` defaults to a fresh
    ``<host>-<pid>-<uuid>`` per run. ``prepare_threshold`` is passed to
    psycopg (``None`` disables server-side prepared statements, for PgBouncer
    in transaction mode; the connection that announces completions always
    runs with ``None``, each of its texts being new). ``flush_connections``
    (staged mode) is the number of connections that claim and acknowledge,
    so one batch can commit while the next is on its way. ``prefetch`` (staged mode) is how many jobs a
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
    With a broker ``notifier`` (Redis, NATS) or ``NullNotifier`` the worker
    sends no NOTIFY at all, batched or not: its transactions run with
    ``SET LOCAL queuert.notify = 'none'`` and everything (reaped jobs too)
    goes through the notifier. An idle worker woken by ``job_ready`` takes a
    unit of the type's wake budget first (docs/notify.md).
    ``stats_interval`` (seconds, default 15): how often the worker reads the
    ``stats`` view for the queue-depth gauges when an OpenTelemetry meter is
    configured (never without one; docs/observability.md).
    ``schedules`` (default True): the worker starts the chains of due
    schedule ticks of the types it handles (docs/recurring.md).
    ``prune_after`` (a timedelta; default None, off): every
    ``prune_interval`` seconds (300) the worker deletes completed and
    cancelled chains older than that (failed ones too past
    ``prune_failed_after``), in batches, one worker at a time
    (docs/engine.md, "Running at scale").
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
        stats_interval: float = 15.0,
        schedules: bool = True,
        prune_after: timedelta | None = None,
        prune_failed_after: timedelta | None = None,
        prune_interval: float = 300.0,
    ) -> None:
        check_prefetch(prefetch, prefetch_window, prefetch_max)
        check_prune(prune_after, prune_failed_after, prune_interval)
        self.conninfo = conninfo
        self.schema = validate_schema_name(schema)
        self.concurrency = check_concurrency(concurrency)
        self.mode: Mode = check_mode(mode)
        self.types = None if types is None else [t.name if isinstance(t, JobType) else t for t in types]
        self.poll_interval = poll_interval
        self.lease = as_interval(lease)
        self.reap_interval = reap_interval
        self.renew_interval = renew_interval
        self.notifier = notifier
        self.worker_id_prefix = worker_id
        self.grace_period = grace_period
        self.reconnect_max = reconnect_max
        self.prepare_threshold = prepare_threshold
        self.flush_connections = flush_connections
        self.prefetch: int | Literal["auto"] = prefetch
        self.prefetch_window = float(prefetch_window)
        self.prefetch_max = prefetch_max
        self.batch_notifications = batch_notifications
        if not stats_interval > 0:
            raise ValueError("stats_interval must be positive")
        self.stats_interval = float(stats_interval)
        self.schedules = schedules
        self.prune_after = prune_after
        self.prune_failed_after = prune_failed_after
        self.prune_interval = float(prune_interval)
        self.stats = WorkerStats()
        self._handlers: dict[str, Handler] = {}
        self._run: Run | None = None
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
                h = Handler(job_type.name, f, job_type)
            elif isinstance(job_type, str) and 1 <= len(job_type) <= 255:
                h = Handler(job_type, f, None)
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
        run = Run(self._settings(), self._handlers, self.stats)
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

    def _settings(self) -> Settings:
        return Settings(
            conninfo=self.conninfo or "",
            schema=self.schema,
            worker_id=self.worker_id_prefix or new_worker_id(),
            type_names=self.type_names,
            concurrency=self.concurrency,
            mode=self.mode,
            poll_interval=self.poll_interval,
            lease=self.lease,
            reap_interval=self.reap_interval,
            renew_interval=self.renew_interval,
            notifier=self.notifier,
            grace_period=self.grace_period,
            reconnect_max=self.reconnect_max,
            prepare_threshold=self.prepare_threshold,
            flush_connections=self.flush_connections,
            prefetch=self.prefetch,
            prefetch_window=self.prefetch_window,
            prefetch_max=self.prefetch_max,
            batch_notifications=self.batch_notifications,
            stats_interval=self.stats_interval,
            schedules=self.schedules,
            prune_after=self.prune_after,
            prune_failed_after=self.prune_failed_after,
            prune_interval=self.prune_interval,
        )


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
    notifier: Notifier | str | None = None,
) -> Worker:
    """The :class:`Worker` named by ``target`` (``module:attr``), with CLI
    overrides applied. The attribute may be a Worker, a zero-argument factory
    returning one, or a mapping / list of ``(job type, handler)`` pairs.
    ``notifier``: a :class:`~queuert.notify.Notifier`, or a string for
    :func:`~queuert.notify.notifier_from_url` (``queuert worker --notify``;
    ValueError when it names none)."""
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
    if isinstance(notifier, str):
        notifier = notifier_from_url(notifier, conninfo=worker.conninfo, schema=worker.schema)
    if notifier is not None:
        worker.notifier = notifier
    return worker


def run_worker_cli(
    target: str,
    dsn: str | None = None,
    schema: str | None = None,
    concurrency: int | None = None,
    types: Sequence[str] | None = None,
    mode: Mode | None = None,
    notifier: Notifier | str | None = None,
) -> None:
    """Load the worker named by ``target`` and run it until SIGTERM/SIGINT.
    ``notifier`` (an object, or a ``--notify`` string) replaces the worker's
    own; see :func:`build_worker`."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker = build_worker(
        target, dsn=dsn, schema=schema, concurrency=concurrency, types=types, mode=mode, notifier=notifier
    )
    worker.run(handle_signals=True)

