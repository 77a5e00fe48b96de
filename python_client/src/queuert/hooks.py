"""Transaction hooks: run callbacks and publish notifications only after commit.

The SQL engine sends its own ``pg_notify`` calls, which PostgreSQL delivers only
when the transaction commits. Anything *outside* the database (a Redis or NATS
notify adapter, an in-process notifier, your own "send an e-mail after commit"
callback) has no such guarantee, so queuert buffers it in a hooks object that
lives exactly as long as your transaction block::

    import queuert

    with queuert.transaction_hooks(notifier) as hooks:   # outside ...
        with conn.transaction():                          # ... the transaction
            queuert.start_chain(conn, welcome_email, WelcomeInput(user_id=7))
            hooks.add(lambda: print("committed"))
    # here: the transaction committed, callbacks ran, notifications published

The hooks block must *enclose* the transaction block: its normal exit happens
after the inner ``with conn.transaction():`` committed. When the block exits
with an exception (the transaction rolled back), everything buffered is
dropped. The same works with ``async with`` around ``async with
conn.transaction():``.

Client functions that create or complete work (``start_chain`` and friends)
look up :func:`current_hooks` and, when a hooks block is active, buffer a
``job_ready`` (type name) or ``chain_completed`` (chain id) notification there;
deduplicated, so a batch of 1,000 chains of one type publishes once, as one
``job_ready`` whose wake budget is 1,000 (a notifier with wake budgets lets
that many idle workers wake, not every one and not only one).

In an atomic worker's handler, :func:`current_hooks` is the attempt's own
block (the worker makes it current with :class:`collecting`): what the
handler's calls on ``job.conn`` announce, and its callbacks, wait for the
attempt's transaction; the worker publishes the notifications through its
notifier after the commit (:meth:`TransactionHooks.committed`), and a
failed attempt, rolled back to its savepoint, drops them
(:meth:`TransactionHooks.rolled_back`).

Nested blocks behave like savepoints: an inner block that exits normally hands
its callbacks and notifications to the enclosing block (which runs them after
the outer transaction commits); an inner block that exits with an exception
drops only its own.

:meth:`TransactionHooks.on_rollback` is the other branch: a callback that runs
only when the block exits with an exception (queuert's tracing ends the spans
of work the rolled-back transaction had created with an error status there).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from queuert.notify.base import Notifier

__all__ = ["TransactionHooks", "collecting", "current_hooks", "transaction_hooks"]

logger = logging.getLogger("queuert.hooks")

Callback = Callable[[], Any]

_current: ContextVar[TransactionHooks | None] = ContextVar("queuert_transaction_hooks", default=None)

# Fire-and-forget tasks started from a sync exit inside a running loop; kept
# referenced until done so they are not garbage collected mid-flight.
_background: set[asyncio.Task[Any]] = set()


def current_hooks() -> TransactionHooks | None:
    """The innermost active :class:`TransactionHooks` of this context, or None."""
    return _current.get()


def announce(
    ready_types: Iterable[str] = (),
    completed_chains: Iterable[UUID | str] = (),
    lost_jobs: Iterable[UUID | str] = (),
) -> None:
    """Tell the innermost active hooks block, if any (it deduplicates)."""
    hooks = _current.get()
    if hooks is None:
        return
    for type_name in ready_types:
        hooks.job_ready(type_name)
    for chain_id in completed_chains:
        hooks.chain_completed(chain_id)
    for job_id in lost_jobs:
        hooks.job_lost(job_id)


class TransactionHooks:
    """Callbacks and notifications buffered until the enclosing block exits.

    Use through :func:`transaction_hooks`. Not thread-safe: one block belongs to
    one thread or task (as one transaction does).
    """

    # slots: an atomic worker makes one per attempt, a producer one per
    # commit. Only job_ready's dict is made up front; the other containers
    # are made on first use (None until then): a producer's block needs
    # none of them, and every container is an allocation and a
    # deallocation per commit.
    __slots__ = (
        "notifier",
        "_callbacks",
        "_job_ready",
        "_chain_completed",
        "_job_lost",
        "_rollbacks",
        "_quiet_connections",
        "_token",
        "_parent",
        "_active",
    )

    def __init__(self, notifier: Notifier | None = None) -> None:
        self.notifier = notifier
        self._callbacks: list[Callback] | None = None
        # dicts as ordered sets: deduplicated, first-seen order kept;
        # job_ready keeps how many jobs of the type became ready (the budget)
        self._job_ready: dict[str, int] = {}
        self._chain_completed: dict[str, None] | None = None
        self._job_lost: dict[str, None] | None = None
        self._rollbacks: list[Callback] | None = None
        # connections whose transaction already has the engine's NOTIFY
        # off (queuert._engine_quiet)
        self._quiet_connections: set[int] | None = None
        self._token: Token[TransactionHooks | None] | None = None
        self._parent: TransactionHooks | None = None
        self._active = False

    # -- buffering -----------------------------------------------------------

    def add(self, callback: Callback) -> None:
        """Run ``callback()`` after commit; it may be a plain or async function.

        Callbacks run in the order added. An exception from one is logged and
        does not stop the others (the transaction has already committed).
        """
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(callback)

    def on_rollback(self, callback: Callback) -> None:
        """Run ``callback()`` (plain functions only) if the block exits with an
        exception, that is when the transaction rolled back. An exception from
        it is logged; the block's own exception propagates as before."""
        if self._rollbacks is None:
            self._rollbacks = []
        self._rollbacks.append(callback)

    def job_ready(self, type_name: str, count: int = 1) -> None:
        """Publish "``count`` jobs of this type became pending" after commit
        (one event per type; the counts add up to its wake budget)."""
        self._job_ready[type_name] = self._job_ready.get(type_name, 0) + count

    def chain_completed(self, chain_id: UUID | str) -> None:
        """Publish "this chain completed" after commit."""
        if self._chain_completed is None:
            self._chain_completed = {}
        self._chain_completed[str(chain_id)] = None

    def job_lost(self, job_id: UUID | str) -> None:
        """Publish "this running job was taken from its worker" after commit."""
        if self._job_lost is None:
            self._job_lost = {}
        self._job_lost[str(job_id)] = None

    def quiet_connection(self, key: int) -> bool:
        """Mark connection ``key`` (an ``id``) as having the engine's NOTIFY
        off in this transaction; False when it already had
        (:mod:`queuert._engine_quiet`)."""
        if self._quiet_connections is None:
            self._quiet_connections = {key}
            return True
        if key in self._quiet_connections:
            return False
        self._quiet_connections.add(key)
        return True

    @property
    def pending(self) -> tuple[list[Callback], list[str], list[str], list[str]]:
        """What would run now: callbacks, job_ready, chain_completed, job_lost."""
        return (
            list(self._callbacks or ()),
            list(self._job_ready),
            list(self._chain_completed or ()),
            list(self._job_lost or ()),
        )

    def _clear(self) -> None:
        self._callbacks = None
        self._job_ready.clear()
        self._chain_completed = None
        self._job_lost = None
        self._rollbacks = None

    @property
    def ready_counts(self) -> dict[str, int]:
        """What would be published as ``job_ready``: ``{type name: jobs}``."""
        return dict(self._job_ready)

    def _merge_into(self, parent: TransactionHooks) -> None:
        if self._callbacks:
            for cb in self._callbacks:
                parent.add(cb)
        for type_name, count in self._job_ready.items():
            parent.job_ready(type_name, count)
        for chain_id in self._chain_completed or ():
            parent.chain_completed(chain_id)
        for job_id in self._job_lost or ():
            parent.job_lost(job_id)
        if self._rollbacks:
            for cb in self._rollbacks:
                parent.on_rollback(cb)
        if parent.notifier is None:
            parent.notifier = self.notifier
        self._clear()

    # -- block protocol ------------------------------------------------------

    def _leave(self, failed: bool) -> bool:
        """Reset the context; return True when this block must fire now."""
        assert self._token is not None
        _current.reset(self._token)
        self._token = None
        self._active = False
        if failed:
            rollbacks = list(self._rollbacks or ())
            self._clear()
            _run_rollbacks(rollbacks)
            return False
        if self._parent is not None and self._parent._active:
            # nested: the outer transaction has not committed yet
            self._merge_into(self._parent)
            return False
        return True

    def __enter__(self) -> TransactionHooks:
        # the one way in, sync or async (a producer enters a block per commit)
        if self._active:
            raise RuntimeError("a TransactionHooks block cannot be entered twice")
        self._active = True
        self._parent = _current.get()
        self._token = _current.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if (
            exc is not None
            or self._parent is not None
            or self._callbacks is not None
            or self._chain_completed is not None
            or self._job_lost is not None
        ):
            if self._leave(exc is not None):
                self._fire_sync()
            return
        # a producer's commit: an outermost block that buffered job_ready at
        # most, so _leave and _fire_sync come down to these lines (per commit,
        # this block's Python is most of what a broker path costs its caller)
        token = self._token
        assert token is not None
        _current.reset(token)
        self._token = None
        self._active = False
        self._rollbacks = self._quiet_connections = None
        ready = self._job_ready
        if ready:
            self._job_ready = {}
            notifier = self.notifier
            if notifier is not None and not notifier._hand_over_ready(ready):
                _run_awaitable(self._publish(ready, [], []))

    async def __aenter__(self) -> TransactionHooks:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._leave(exc is not None):
            await self._fire_async()

    # -- firing --------------------------------------------------------------

    def _take(self) -> tuple[list[Callback], dict[str, int], list[str], list[str]]:
        """What the transaction buffered, handed over whole (the block starts
        over with new containers: no copy per commit, a producer's every
        commit comes here)."""
        out = (
            self._callbacks or [],
            self._job_ready,
            list(self._chain_completed or ()),
            list(self._job_lost or ()),
        )
        self._job_ready = {}
        self._callbacks = self._chain_completed = self._job_lost = self._rollbacks = None
        self._quiet_connections = None
        return out

    async def _publish(self, ready: dict[str, int], chains: list[str], lost: list[str]) -> None:
        notifier = self.notifier
        if notifier is None:
            return
        try:
            if ready:
                await notifier.publish_job_ready(ready)
            if chains:
                await notifier.publish_chain_completed(chains)
            if lost:
                await notifier.publish_job_lost(lost)
        except Exception:
            # Notifications are hints; workers fall back to polling.
            logger.exception("publishing notifications after commit failed")

    async def _fire_async(self) -> None:
        callbacks, ready, chains, lost = self._take()
        for cb in callbacks:
            try:
                result = cb()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("after-commit callback %r failed", cb)
        await self._publish(ready, chains, lost)

    def _fire_sync(self) -> None:
        callbacks, ready, chains, lost = self._take()
        if callbacks:
            _run_callbacks(callbacks)
        notifier = self.notifier
        if notifier is not None and (ready or chains or lost):
            # a notifier that can take the hints without awaiting spares a
            # sync caller an event loop per transaction (asyncio.run)
            if not notifier.publish_nowait(ready, chains, lost):
                _run_awaitable(self._publish(ready, chains, lost))

    # -- settled by whoever owns the transaction (see collecting) ----------

    def committed(self) -> tuple[dict[str, int], list[str], list[str]]:
        """The transaction committed: run the callbacks (an async one as a
        task of the running loop) and return the notifications for the
        caller to publish: ``({type: jobs}, chain ids, job ids lost)``."""
        if not (self._callbacks or self._job_ready or self._chain_completed or self._job_lost or self._rollbacks):
            return {}, [], []  # nothing buffered (most atomic attempts)
        callbacks, ready, chains, lost = self._take()
        _run_callbacks(callbacks)
        return ready, chains, lost

    def rolled_back(self) -> None:
        """The transaction rolled back: drop everything, run the on-rollback
        callbacks."""
        rollbacks = list(self._rollbacks or ())
        self._clear()
        _run_rollbacks(rollbacks)


class collecting:
    """Make ``hooks`` the current block while the body runs, without firing
    or dropping anything at its end: for a transaction that ends after the
    body (an atomic worker's attempt). Its owner settles it later with
    :meth:`TransactionHooks.committed` or :meth:`TransactionHooks.rolled_back`.
    Blocks opened in the body merge into it, as nested blocks do.

    ``with collecting(hooks):`` (a class, not a generator: it is entered
    once per atomic attempt)."""

    __slots__ = ("hooks", "token")

    def __init__(self, hooks: TransactionHooks) -> None:
        self.hooks = hooks
        self.token: Token[TransactionHooks | None] | None = None

    def __enter__(self) -> TransactionHooks:
        self.hooks._active = True
        self.token = _current.set(self.hooks)
        return self.hooks

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.token is not None
        _current.reset(self.token)
        self.hooks._active = False


def _run_callbacks(callbacks: list[Callback]) -> None:
    for cb in callbacks:
        try:
            result = cb()
            if inspect.isawaitable(result):
                _run_awaitable(result)
        except Exception:
            logger.exception("after-commit callback %r failed", cb)


def _run_rollbacks(callbacks: list[Callback]) -> None:
    for cb in callbacks:
        try:
            cb()
        except Exception:
            logger.exception("on-rollback callback %r failed", cb)


def _run_awaitable(aw: Awaitable[Any]) -> None:
    """Run an awaitable from sync code: to completion when no loop runs in this
    thread, else as a background task of the running loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None:

        async def _wrap() -> None:
            await aw

        asyncio.run(_wrap())
        return
    task = loop.create_task(_ensure_coro(aw))
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _ensure_coro(aw: Awaitable[Any]) -> Any:
    try:
        return await aw
    except Exception:
        logger.exception("after-commit awaitable failed")
        return None


def transaction_hooks(notifier: Notifier | None = None) -> TransactionHooks:
    """A hooks block for one transaction: ``with`` or ``async with``.

    ``notifier`` receives the buffered ``job_ready`` / ``chain_completed`` /
    ``job_lost`` notifications after commit (nothing is published without
    one; the PostgreSQL notifier needs none since the engine notifies itself).
    """
    return TransactionHooks(notifier)
