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
"""

from __future__ import annotations

from collections.abc import Iterable

from queuert.notify.base import Notifier, NotifyEvent, Subscription

__all__ = ["InProcessNotifier"]


class InProcessNotifier(Notifier):
    """Delivers published events straight to this process's subscribers."""

    async def publish_job_ready(self, type_names: Iterable[str]) -> None:
        for name in dict.fromkeys(type_names):
            self._dispatch(NotifyEvent("job_ready", name))

    async def publish_chain_completed(self, chain_ids: Iterable[str]) -> None:
        for cid in dict.fromkeys(chain_ids):
            self._dispatch(NotifyEvent("chain_completed", str(cid)))

    async def publish_job_lost(self, job_ids: Iterable[str]) -> None:
        for jid in dict.fromkeys(job_ids):
            self._dispatch(NotifyEvent("job_lost", str(jid)))

    async def _subscribed(self, sub: Subscription) -> None:
        sub.deliver(NotifyEvent("resync", ""))
