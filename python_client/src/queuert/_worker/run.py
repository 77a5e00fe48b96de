"""One run of a worker: builds the parts, starts them, and stops them in
order (dispatcher or atomic slots first, then maintenance, the publisher,
the subscription and the notifier it opened).

Parts and who owns what (all on the loop thread unless said otherwise):
``flights`` (jobs claimed and not yet acknowledged: added by the staged
dispatcher, removed by the acknowledger and ``Dispatch.lose``),
``lifecycle`` (stop state, written by ``request_stop`` from any thread),
``wakeup`` (claim hints), the store (connections), the publisher, the
maintenance services (renewal, reaping, due-time poll), and the mode's
dispatcher (``StagedDispatcher`` or ``AtomicSlots``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from queuert._admin_records import FiredTick
from queuert._sqlite.worker_connection import is_sqlite_dsn
from queuert._worker.acks import Acknowledger
from queuert._worker.atomic import AtomicSlots
from queuert._worker.backends import store_for
from queuert._worker.claim_ahead import ClaimAhead
from queuert._worker.due_poll import DuePoll
from queuert._worker.execution import Dispatch, Execution
from queuert._worker.handlers import Handler
from queuert._worker.lifecycle import Lifecycle
from queuert._worker.looper import Looper
from queuert._worker.maintenance import Maintenance, Service
from queuert._worker.notify_policy import NotifyPolicy
from queuert._worker.pg_services import own_connection_services
from queuert._worker.publisher import Publisher
from queuert._worker.queue_depth import QueueDepth
from queuert._worker.reaping import Reaper
from queuert._worker.renewal import Renewal
from queuert._worker.settings import Settings
from queuert._worker.staged import StagedDispatcher
from queuert._worker.stats import WorkerStats
from queuert._worker.store import Session, Store
from queuert._worker.wake_budget import WakeBudget
from queuert._worker.wakeup import Wakeup, listen
from queuert.job import JobContext
from queuert.notify.base import Subscription
from queuert.notify.inprocess import InProcessNotifier
from queuert.notify.postgres import PostgresNotifier

logger = logging.getLogger("queuert.worker")


class Run:
    def __init__(self, settings: Settings, handlers: dict[str, Handler], stats: WorkerStats) -> None:
        self.settings = s = settings
        self.worker_id = s.worker_id
        self.stats = stats
        self.loop = asyncio.get_running_loop()
        self.started = asyncio.Event()
        self.finished = False
        self.loopers: list[Looper] = []
        self.wakeup = Wakeup()
        self.lifecycle = Lifecycle(
            self.loop,
            self.wakeup,
            grace_period=s.grace_period,
            reconnect_max=s.reconnect_max,
            worker_id=s.worker_id,
        )
        self.flights: dict[uuid.UUID, JobContext[Any]] = {}
        self.notifier = s.notifier
        self.sqlite = sqlite = is_sqlite_dsn(s.conninfo)
        if sqlite and s.prune_after is not None:
            raise ValueError("prune_after: the SQLite engine has no prune (PostgreSQL only, for now)")
        # no NOTIFY on SQLite: nothing to batch, the notifier carries it all
        batch = s.batch_notifications and not sqlite
        self.own_notifier = False
        if sqlite:
            if isinstance(s.notifier, PostgresNotifier):
                raise ValueError("a worker on SQLite cannot LISTEN: give it an in-process, Redis or NATS notifier")
            if s.notifier is None:
                # the worker's own acknowledgements wake it; others' jobs
                # by polling (or Redis/NATS, given as its notifier)
                self.notifier = InProcessNotifier()
                self.own_notifier = True
        # what our transactions leave to the engine's NOTIFY and what the
        # publisher sends after commit (see notify_policy.py): with a
        # non-PostgreSQL notifier the worker publishes everything itself
        # (the engine's notifications reach only PostgreSQL listeners); with
        # a broker the engine sends none at all
        policy = self.policy = NotifyPolicy.of(self.notifier, batch)
        self.store: Store = store_for(
            s,
            notify_setting=policy.setting,
            reap_notify_setting=policy.reap_setting,
            unblocked_wanted=policy.notifier_publish,
        )
        self.publisher: Publisher | None = None
        if policy.publishes:
            store = self.store
            self.publisher = Publisher(
                (lambda: self.lifecycle.reconnecting("notify", store.open_announcer)) if policy.pg_notify else None,
                self.notifier if policy.notifier_publish else None,
                worker_id=s.worker_id,
            )
        self.acks = Acknowledger(
            self.flights,
            stats,
            worker_id=s.worker_id,
            publish=None if self.publisher is None else self.publisher.add,
            publish_unblocked=policy.notifier_publish,
            wake=self.wakeup.dispatcher.set,
            publish_outside=None if self.publisher is None else self.publisher.add_outside,
        )
        self.renewal = Renewal(
            self.flights, self.lose, lease=s.lease, interval=s.renew_interval, wake=self.wakeup.maintenance.set
        )
        self.execution = Execution(handlers, s.worker_id, self.renewal.observe_claim, mode=s.mode)
        self.dispatch: Dispatch | None = None
        self.staged: StagedDispatcher | None = None
        self.atomic: AtomicSlots | None = None
        self.subscription: Subscription | None = None

    # -- control (any thread) ----------------------------------------------

    def request_stop(self, immediate: bool) -> None:
        self.lifecycle.request_stop(immediate)

    def on_signal(self, sig: object) -> None:
        self.lifecycle.on_signal(sig)

    # -- parts' callbacks --------------------------------------------------

    def publish(self, ready: Mapping[str, int] | Iterable[str], chains: Iterable[str]) -> None:
        """Notifications implied by a committed acknowledgement (loop thread):
        ``{type: jobs made pending}`` (or names, one job each), chains."""
        if self.publisher is not None:
            self.publisher.add(ready, chains)

    def idle(self) -> bool:
        """Asleep with room for a job: the last claim of every kind of
        claimer came back short, no hint since, and a slot free. A job_ready
        then costs a unit of the type's wake budget; a busy worker's next
        claim sees the job anyway (an atomic worker with one kind of slot
        still claiming is hinted for free: its drained kind needs the hint)."""
        if not self.lifecycle.claiming or not self.wakeup.all_drained():
            return False
        if self.staged is not None:
            return self.staged.free() > 0
        return self.atomic is not None and self.atomic.has_free_slot()

    def _hint_taken(self) -> None:
        self.stats.wake_hints_taken += 1

    def _hint_declined(self) -> None:
        self.stats.wake_hints_declined += 1

    def lose(self, job: JobContext[Any], reason: str) -> None:
        if self.dispatch is not None:
            self.dispatch.lose(job, reason)

    async def open_session(self, purpose: Any) -> Session:
        return await self.lifecycle.reconnecting(purpose, lambda: self.store.open(purpose))

    # -- main --------------------------------------------------------------

    def own_connection_services(self) -> list[Looper]:
        """Services on connections of their own (pg_services.py): the
        schedule ticker, the pruner. PostgreSQL only: the SQLite engine has
        no schedules (the ticker has nothing to tick) and no prune."""
        if self.sqlite:
            self.loopers = []
        else:
            # the ticker's transactions, like reaping, leave the news to the
            # notifier when the engine's notifications are off
            self.loopers = own_connection_services(
                self.settings, on_fired=self._fired, notify_setting=self.policy.reap_setting
            )
        return self.loopers

    def _fired(self, fired: list[FiredTick]) -> None:
        """Chains the schedule ticker started (loop thread, after commit):
        their types to the notifier (the database heard of them from the
        engine, unless the policy turned that off)."""
        if self.publisher is not None:
            self.publisher.add_outside([f.type_name for f in fired if not f.deduplicated], (), ())

    async def main(self) -> None:
        s = self.settings
        notifier = self.notifier
        own_notifier = notifier is None or self.own_notifier
        if notifier is None:
            notifier = PostgresNotifier(s.conninfo, schema=s.schema)
        maintenance: Maintenance | None = None
        if self.publisher is not None:
            self.publisher.start()
        budget = WakeBudget(notifier, self.wakeup.hint, self._hint_taken, self._hint_declined)
        try:
            self.subscription = await listen(
                notifier, s.type_names, self.wakeup, self.renewal.check, budget, self.idle
            )
            logger.info(
                "worker %s starting (%s mode, concurrency %d, types %s)",
                self.worker_id,
                s.mode,
                s.concurrency,
                ", ".join(s.type_names),
                extra={"worker_id": self.worker_id},
            )
            services: list[Service] = [
                DuePoll(self.wakeup, lambda: self.lifecycle.claiming, poll_interval=s.poll_interval),
                Reaper(
                    self.flights,
                    self.lose,
                    self.stats,
                    interval=s.reap_interval,
                    worker_id=self.worker_id,
                    publish=None if self.publisher is None else self.publisher.add_reaped,
                ),
                QueueDepth(interval=s.stats_interval),
            ]
            if s.mode == "staged":
                services.insert(0, self.renewal)
            maintenance = Maintenance(
                services,
                lambda: self.open_session("maintenance"),
                self.wakeup.maintenance,
                reconnect_max=s.reconnect_max,
                worker_id=self.worker_id,
            )
            maintenance.start()
            for looper in self.own_connection_services():
                looper.start()
            if s.mode == "staged":
                await self._staged()
            else:
                self.atomic = AtomicSlots(
                    store=self.store,
                    execution=self.execution,
                    acks=self.acks,
                    lifecycle=self.lifecycle,
                    wakeup=self.wakeup,
                    stats=self.stats,
                    concurrency=s.concurrency,
                    reconnect_max=s.reconnect_max,
                    worker_id=self.worker_id,
                )
                await self.atomic.main(s.type_names, self.started)
        finally:
            self.finished = True
            self.lifecycle.stop_event.set()
            self.acks.report_now()  # telemetry deferred to the loop's next turn
            if maintenance is not None:
                await maintenance.stop()
            for looper in self.loopers:
                await looper.stop()
            await budget.close()
            if self.publisher is not None:
                await self.publisher.stop()
            if self.subscription is not None:
                await self.subscription.close()
            if own_notifier:
                await notifier.close()
            logger.info("worker %s stopped", self.worker_id, extra={"worker_id": self.worker_id})

    async def _staged(self) -> None:
        await self.build_staged().main(self.started)

    def build_staged(self) -> StagedDispatcher:
        """The staged dispatcher and its handler dispatch (loop thread)."""
        s = self.settings
        ahead = ClaimAhead(s.concurrency, s.prefetch, s.prefetch_window, s.prefetch_max)
        self.dispatch = Dispatch(
            self.execution,
            self.flights,
            self.stats,
            concurrency=s.concurrency,
            pace=ahead,
            on_outcome=self.acks.queue,
            wake=self.wakeup.dispatcher.set,
        )
        self.staged = StagedDispatcher(
            execution=self.execution,
            dispatch=self.dispatch,
            acks=self.acks,
            ahead=ahead,
            lifecycle=self.lifecycle,
            wakeup=self.wakeup,
            stats=self.stats,
            open_session=lambda: self.open_session("main"),
            publish_released=lambda types: self.publish(types, ()),
            flush_connections=s.flush_connections,
            reconnect_max=s.reconnect_max,
            worker_id=self.worker_id,
        )
        return self.staged
