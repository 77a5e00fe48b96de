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

from collections.abc import Iterable

from ..hooks import current_hooks

__all__ = ["announce"]


def announce(
    ready_types: Iterable[str] = (),
    completed_chains: Iterable[str] = (),
    lost_jobs: Iterable[str] = (),
) -> None:
    hooks = current_hooks()
    if hooks is None:
        return
    for type_name in ready_types:
        hooks.job_ready(type_name)
    for chain_id in completed_chains:
        hooks.chain_completed(chain_id)
    for job_id in lost_jobs:
        hooks.job_lost(job_id)
