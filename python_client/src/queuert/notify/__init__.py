"""Notify adapters: hints that wake idle workers. See :mod:`queuert.notify.base`."""

from queuert.notify.base import EVENT_KINDS, Listener, Notifier, NotifyEvent, Subscription
from queuert.notify.inprocess import InProcessNotifier
from queuert.notify.postgres import PostgresNotifier

__all__ = [
    "EVENT_KINDS",
    "InProcessNotifier",
    "Listener",
    "Notifier",
    "NotifyEvent",
    "PostgresNotifier",
    "Subscription",
]
