"""The SQLite engine's notifications, through the transaction hooks.

PostgreSQL's engine sends ``pg_notify`` from its functions, delivered only
if the transaction commits. SQLite has no NOTIFY; its equivalent is
:func:`queuert.transaction_hooks`: the engine buffers the same three events
(``job_ready`` per type, ``chain_completed`` per chain, ``job_lost`` per
job) in the innermost active hooks block, which publishes them through its
notifier (in-process, Redis, NATS) after the enclosing transaction commits
and drops them if it rolls back. Without a hooks block nothing is sent and
workers poll (``next_due_at``), as with ``queuert.notify = 'none'``.
"""

from __future__ import annotations

from ..hooks import announce

__all__ = ["announce"]
