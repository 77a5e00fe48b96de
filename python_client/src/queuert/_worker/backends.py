"""Which store a run uses: where a backend plugs in.

PostgreSQL is the only worker backend for now; an SQLite store (behind the
same ``store`` protocols) is chosen here by the conninfo, and nothing else in
the worker changes.
"""

from __future__ import annotations

from queuert._worker.pg_store import PgStore
from queuert._worker.settings import Settings
from queuert._worker.store import Store


def store_for(settings: Settings, *, notify_setting: str | None, unblocked_wanted: bool) -> Store:
    """The store of one run. ``notify_setting``: the ``queuert.notify``
    value for the worker's acknowledging sessions (None: the engine's
    notifications as usual). ``unblocked_wanted``: the worker publishes the
    job types of dependents its completions unblock (``Written.unblocked``)."""
    return PgStore(
        settings.conninfo,
        schema=settings.schema,
        worker_id=settings.worker_id,
        type_names=settings.type_names,
        lease=settings.lease,
        prepare_threshold=settings.prepare_threshold,
        notify_setting=notify_setting,
        unblocked_wanted=unblocked_wanted,
    )
