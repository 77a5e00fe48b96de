"""Notify adapters: hints that wake idle workers. See :mod:`queuert.notify.base`.

``RedisNotifier`` and ``NatsNotifier`` are imported on first use (they need
the ``redis`` / ``nats`` extras); the others always.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from queuert.notify.base import EVENT_KINDS, Listener, Notifier, NotifyEvent, Subscription
from queuert.notify.factory import notifier_from_url
from queuert.notify.inprocess import InProcessNotifier
from queuert.notify.null import NullNotifier
from queuert.notify.postgres import PostgresNotifier

__all__ = [
    "EVENT_KINDS",
    "InProcessNotifier",
    "Listener",
    "NatsNotifier",
    "Notifier",
    "NotifyEvent",
    "NullNotifier",
    "PostgresNotifier",
    "RedisNotifier",
    "Subscription",
    "notifier_from_url",
]

if TYPE_CHECKING:
    from queuert.notify.nats import NatsNotifier
    from queuert.notify.redis import RedisNotifier


def __getattr__(name: str) -> Any:
    if name == "RedisNotifier":
        from queuert.notify.redis import RedisNotifier

        return RedisNotifier
    if name == "NatsNotifier":
        from queuert.notify.nats import NatsNotifier

        return NatsNotifier
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
