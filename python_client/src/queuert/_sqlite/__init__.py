"""queuert's engine for SQLite: the PostgreSQL engine's operations, with the
same semantics, result rows and typed errors, on an application's own
SQLite database file.

PostgreSQL runs queuert's engine as PL/pgSQL; SQLite runs no stored code, so
here the engine is SQL files (``sqlite/migrations/`` for the schema, with
the triggers that resolve fan-in, and ``sqlite/sql/`` for the statements of
each operation) run by this small package inside the caller's ``sqlite3``
transaction. Every function takes the connection first, never commits a
transaction it did not begin, and raises the exceptions of
:mod:`queuert.errors` for the engine's QU001..QU006 refusals.

Private: applications call the public client functions with their
``sqlite3.Connection`` (:mod:`queuert._sqlite.client_calls` runs them on
this engine) and ``queuert migrate --dsn sqlite:///...`` (docs/sqlite.md).
"""

from __future__ import annotations

from ._connection import connect, reading, transaction
from ._errors import DatabaseBusyError, SnapshotConflictError
from ._rows import Row
from ._values import frozen_clock, new_job_id
from .admin import cancel_chains, delete_chains, retry_jobs, set_job_type, trigger_jobs
from .claim import claim, claim_for_worker, next_due_at
from .complete import complete, complete_jobs, complete_one, complete_picked
from .continuation import continue_jobs, continue_with
from .fail import fail, fail_jobs
from .inspection import chain, chain_blockers, chain_jobs, list_chains, stats
from .leases import reap, release_jobs, renew_leases, running_jobs
from .migrate import migrate
from .start import start_chain
from .start_batch import start_chains

__all__ = [
    "DatabaseBusyError",
    "Row",
    "SnapshotConflictError",
    "cancel_chains",
    "chain",
    "chain_blockers",
    "chain_jobs",
    "claim",
    "claim_for_worker",
    "complete",
    "complete_jobs",
    "complete_one",
    "complete_picked",
    "connect",
    "continue_jobs",
    "continue_with",
    "delete_chains",
    "fail",
    "fail_jobs",
    "frozen_clock",
    "list_chains",
    "migrate",
    "new_job_id",
    "next_due_at",
    "reading",
    "reap",
    "release_jobs",
    "renew_leases",
    "retry_jobs",
    "running_jobs",
    "set_job_type",
    "start_chain",
    "start_chains",
    "stats",
    "transaction",
    "trigger_jobs",
]
