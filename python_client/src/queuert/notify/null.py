"""A notifier that carries nothing: poll-only workers.

``Worker(dsn, notifier=NullNotifier())`` (``queuert worker --notify none``)
never wakes early: it claims when its poll timer (``next_due_at``, capped by
``poll_interval``) says so. For setups with no broker and no usable LISTEN
(PgBouncer in transaction mode without Redis or NATS); pair it with
``SET queuert.notify = 'none'`` for the role or database so the engine sends
no NOTIFY either.
"""

from __future__ import annotations

from collections.abc import Iterable

from queuert.notify.base import Notifier, NotifyEvent, ReadyTypes, Subscription

__all__ = ["NullNotifier"]


class NullNotifier(Notifier):
    """Publishes nothing and delivers only the ``resync`` of a new subscriber.
    A worker with it sends no NOTIFY either (``database_notify``)."""

    database_notify = False

    async def publish_job_ready(self, type_names: ReadyTypes) -> None:
        return None

    async def publish_chain_completed(self, chain_ids: Iterable[str]) -> None:
        return None

    async def publish_job_lost(self, job_ids: Iterable[str]) -> None:
        return None

    def publish_nowait(self, ready: ReadyTypes, chain_ids: Iterable[str], job_ids: Iterable[str]) -> bool:
        # nothing to hand over: a sync hooks block needs no event loop for it
        return True

    def _hand_over_ready(self, ready: dict[str, int]) -> bool:
        return True  # publishes nothing (publish_nowait without its frame)

    async def _subscribed(self, sub: Subscription) -> None:
        sub.deliver(NotifyEvent("resync", ""))
