"""``transaction_hooks(broker)`` turns the engine's NOTIFY off for the
caller's transaction.

A producer whose hooks publish through a notifier outside the database
(Redis, NATS, ``NullNotifier``: ``Notifier.database_notify`` is False) has
no use for the engine's own ``pg_notify`` calls, and they cost it: PostgreSQL
serialises the commits of transactions that sent a NOTIFY (a database-wide
lock from pre-commit to the end of the commit), which caps concurrent
producers (benchmarks/producer_notify.py: 1.4x-1.7x creation throughput with
four producers when it is off). So the first client call on a psycopg
connection inside such a hooks block sends ``set_config('queuert.notify',
'none', true)`` (``SET LOCAL``) in the same round trip, pipelined before
its own statement; on an autocommit connection, where each call is its own
transaction, every call does. It is per transaction, never per session, so
it holds behind PgBouncer in transaction mode. A role or database setting
(docs/notify.md) does the same for every transaction without the extra
statement: the statement also reads the setting it replaces, and a
connection found with ``none`` already is left alone from then on (if that
was wrong, the engine simply notifies, as without hooks).
"""

from __future__ import annotations

import weakref
from typing import Any

from psycopg.pq import TransactionStatus

from .hooks import TransactionHooks, current_hooks

__all__ = ["QUIET", "learn", "quiet_known", "quiet_needed"]

#: the statement sent ahead of the call (SET LOCAL, as a function: it can be
#: pipelined with the call's parameters on the extended protocol), reading
#: the value it replaces
QUIET = "SELECT current_setting('queuert.notify', true), set_config('queuert.notify', 'none', true)"

_IDLE = TransactionStatus.IDLE

# ids of the connections whose sessions already have queuert.notify = 'none'
# (their role's, their database's or their own setting), each dropped when
# its connection is collected (a WeakSet would make a weak reference per
# lookup: every call inside a hooks block looks)
_quiet_sessions: set[int] = set()


def _outermost_publisher(hooks: TransactionHooks) -> tuple[TransactionHooks, bool]:
    """The outermost active block (it owns the transaction) and whether the
    blocks publish through a notifier that replaces the database's NOTIFY."""
    block: TransactionHooks | None = hooks
    outer = hooks
    quiet = False
    while block is not None and block._active:
        notifier = block.notifier
        if notifier is not None:
            quiet = not notifier.database_notify
        outer = block
        block = block._parent
    return outer, quiet


def quiet_needed(conn: Any) -> bool:
    """Whether this call on ``conn`` (a psycopg connection) must send
    :data:`QUIET` first: inside a hooks block publishing through a broker,
    once per transaction."""
    if id(conn) in _quiet_sessions:  # first: a producer's every call asks
        return False
    hooks = current_hooks()
    if hooks is None:
        return False
    outer, quiet = _outermost_publisher(hooks)
    if not quiet:
        return False
    if conn.autocommit and conn.pgconn.transaction_status == _IDLE:
        return True  # the call is its own transaction
    return outer.quiet_connection(id(conn))


def quiet_known(conn: Any, hooks: TransactionHooks) -> bool:
    """Whether a call on ``conn`` inside ``hooks`` surely needs no
    :data:`QUIET`: its session has ``none`` already, or the blocks publish
    through the database. Unlike :func:`quiet_needed` it marks nothing, so
    a caller that finds False can leave the call to one that sends it."""
    return id(conn) in _quiet_sessions or not _outermost_publisher(hooks)[1]


def learn(conn: Any, row: Any) -> None:
    """What :data:`QUIET` read: the setting before it (``row[0]``)."""
    if row is not None and row[0] == "none":
        key = id(conn)
        if key not in _quiet_sessions:
            _quiet_sessions.add(key)
            weakref.finalize(conn, _quiet_sessions.discard, key)
