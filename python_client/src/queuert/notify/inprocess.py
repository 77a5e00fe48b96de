"""In-process notifier: events travel only inside this Python process.

For tests and single-process applications (a web app that runs its worker in
the same process). Publishing delivers to every subscriber of this object on
its own event loop, from any thread. Pair it with
:func:`queuert.transaction_hooks` so events are published after commit::

    notifier = InProcessNotifier()
    worker = Worker(dsn, notifier=notifier)
    with queuert.transaction_hooks(notifier):
        with conn.transaction():
            queuert.start_chain(conn, "send-email", {"to": "a@example.com"})

It keeps wake budgets in memory (see :mod:`queuert.notify.base`): several
workers of one process sharing this notifier wake one per ready job.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable

from queuert.notify.base import Notifier, NotifyEvent, ReadyTypes, Subscription, ready_counts

__all__ = ["InProcessNotifier"]


class InProcessNotifier(Notifier):
    """Delivers published events straight to this process's subscribers.

    ``hint_ttl``: seconds a wake budget lasts after its last top-up.
    """

    wake_budgets = True

    def __init__(self, *, hint_ttl: float = 30.0) -> None:
        super().__init__()
        self.hint_ttl = hint_ttl
        self._budgets: dict[str, tuple[int, float]] = {}  # type -> (units, expires at)
        self._budget_lock = threading.Lock()  # publishers and takers on any thread

    async def publish_job_ready(self, type_names: ReadyTypes) -> None:
        self._ready(type_names)

    async def publish_chain_completed(self, chain_ids: Iterable[str]) -> None:
        self._each("chain_completed", chain_ids)

    async def publish_job_lost(self, job_ids: Iterable[str]) -> None:
        self._each("job_lost", job_ids)

    def publish_nowait(self, ready: ReadyTypes, chain_ids: Iterable[str], job_ids: Iterable[str]) -> bool:
        self._ready(ready)
        self._each("chain_completed", chain_ids)
        self._each("job_lost", job_ids)
        return True

    def _each(self, kind: str, payloads: Iterable[str]) -> None:
        """One event per distinct payload, when anyone subscribed to ``kind``."""
        if payloads and self._anyone_wants(kind):
            for payload in dict.fromkeys(payloads):
                self._dispatch(NotifyEvent(kind, str(payload)))

    def _ready(self, type_names: ReadyTypes) -> None:
        counts = ready_counts(type_names)
        now = time.monotonic()
        with self._budget_lock:
            for name, n in counts.items():
                units, expires = self._budgets.get(name, (0, now))
                self._budgets[name] = ((units if expires > now else 0) + n, now + self.hint_ttl)
        # budgets first, then the events: a woken worker finds its unit
        for name in counts:
            self._dispatch(NotifyEvent("job_ready", name))

    async def take_wake_hint(self, type_names: Collection[str]) -> bool:
        now = time.monotonic()
        with self._budget_lock:
            for name in type_names:
                units, expires = self._budgets.get(name, (0, now))
                if units > 0 and expires > now:
                    if units == 1:
                        del self._budgets[name]
                    else:
                        self._budgets[name] = (units - 1, expires)
                    return True
        return False

    async def _subscribed(self, sub: Subscription) -> None:
        sub.deliver(NotifyEvent("resync", ""))
