"""Which store a run uses: where a backend plugs in.

PostgreSQL, or SQLite for a ``sqlite:///`` conninfo (docs/sqlite.md "The
worker"): both behind the same ``store`` protocols, and nothing else in the
worker changes. (The run gives a worker on SQLite an in-process notifier by
default and no NOTIFY batching: SQLite has neither LISTEN nor NOTIFY.)
"""

from __future__ import annotations

from queuert._sqlite.worker_connection import is_sqlite_dsn
from queuert._worker.pg_store import PgStore
from queuert._worker.settings import Settings
from queuert._worker.sqlite_store import SqliteStore
from queuert._worker.store import Store


def store_for(
    settings: Settings, *, notify_setting: str | None, reap_notify_setting: str | None, unblocked_wanted: bool
) -> Store:
    """The store of one run. ``notify_setting``: the ``queuert.notify``
    value for the worker's acknowledging transactions (None: the engine's
    notifications as usual); ``reap_notify_setting`` the same for reaping
    (see notify_policy.py). ``unblocked_wanted``: the worker publishes the
    job types of dependents its completions unblock (``Written.unblocked``);
    the SQLite store always reports them (and has no NOTIFY to set)."""
    if is_sqlite_dsn(settings.conninfo):
        return SqliteStore(
            settings.conninfo,
            schema=settings.schema,
            worker_id=settings.worker_id,
            type_names=settings.type_names,
            lease=settings.lease,
        )
    return PgStore(
        settings.conninfo,
        schema=settings.schema,
        worker_id=settings.worker_id,
        type_names=settings.type_names,
        lease=settings.lease,
        prepare_threshold=settings.prepare_threshold,
        notify_setting=notify_setting,
        reap_notify_setting=reap_notify_setting,
        unblocked_wanted=unblocked_wanted,
    )
