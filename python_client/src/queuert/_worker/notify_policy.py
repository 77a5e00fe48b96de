"""Which notifications a worker's own transactions leave to the engine, and
which the worker publishes itself after commit (see docs/worker.md "Waking
up" and docs/notify.md).

=============================  =====================================  ==========  ========
notifier                       engine (``SET LOCAL queuert.notify``)   pg_notify   notifier
                                                                       after        after
                                                                       commit       commit
=============================  =====================================  ==========  ========
PostgreSQL (default), batched  ``job_lost,job_ready_unblocked``        yes         no
PostgreSQL, not batched        the session's (all by default)          no          no
in-process (keeps database     ``job_lost``                            yes         yes
notify), batched
in-process, not batched        the session's                           no          yes
broker, NullNotifier           ``none``                                no          yes
=============================  =====================================  ==========  ========

The setting is applied with ``SET LOCAL`` in each transaction that
acknowledges or reaps, never per session: behind PgBouncer in transaction
mode a session ``SET`` lands on one server connection and stays there for
whoever gets it next, while the worker's next transaction runs elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from queuert.notify.base import Notifier
from queuert.notify.postgres import PostgresNotifier

__all__ = ["NotifyPolicy"]


@dataclass(frozen=True)
class NotifyPolicy:
    #: ``queuert.notify`` for the worker's acknowledging and reaping
    #: transactions (``SET LOCAL``); None leaves the session's setting
    setting: str | None
    #: the worker sends the job_ready / chain_completed its commits imply as
    #: one batched ``pg_notify`` statement after commit
    pg_notify: bool
    #: ... and hands them, with reaped jobs' job_lost / job_ready, to its
    #: notifier (every notifier but PostgreSQL's, which hears the database)
    notifier_publish: bool

    @classmethod
    def of(cls, notifier: Notifier | None, batch_notifications: bool) -> NotifyPolicy:
        """The policy of a worker with ``notifier`` (None: the default
        PostgreSQL one) and ``batch_notifications``."""
        if notifier is None or isinstance(notifier, PostgresNotifier):
            if batch_notifications:
                return cls("job_lost,job_ready_unblocked", pg_notify=True, notifier_publish=False)
            return cls(None, pg_notify=False, notifier_publish=False)
        if not notifier.database_notify:
            return cls("none", pg_notify=False, notifier_publish=True)
        if batch_notifications:
            return cls("job_lost", pg_notify=True, notifier_publish=True)
        return cls(None, pg_notify=False, notifier_publish=True)

    @property
    def publishes(self) -> bool:
        """Whether the worker publishes anything itself after commit."""
        return self.pg_notify or self.notifier_publish

    @property
    def reap_setting(self) -> str | None:
        """``queuert.notify`` for reaping: ``none`` when the notifier
        carries reaped jobs' events instead of the database."""
        return "none" if self.setting == "none" else None
