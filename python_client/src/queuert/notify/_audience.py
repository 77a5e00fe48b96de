"""Whether anyone listens for ``job_ready``: a publisher that the broker
told "nobody" holds its ``job_ready`` hints instead of sending them, and
drops them once a later count confirms that still nobody listens.

Why: a producer with no worker subscribed (one producer, workers not
started, a batch import) paid a send per batch for nothing: a script run or
a JetStream budget update, a thread wake-up, the broker's CPU, all on the
producer's machine. Held, a hint costs its caller a ``deque.append`` and
nothing else; the notifier counts the broker's ``job_ready`` subscriptions
once per ``every`` seconds (Redis ``PUBSUB NUMSUB``, NATS a request on the
roll-call subject that the server itself answers with "no responders").

Hints stay hints. A hint is only dropped when a count *started after it was
held* says nobody listens: a listener that subscribed before that count is
counted (and then everything held is sent, budgets included); one that
subscribed after it was not there when the job committed, and its
subscription's ``resync`` makes it poll once, which finds the job. So a
listener that appears while a publisher holds hears of jobs committed after
its subscription within ``every`` seconds plus one count (the next round),
and of those committed before through its own poll: no job depends on the
dropped hints. A count that fails or does not answer within ``timeout`` means
"someone may listen": everything held is sent the usual way. Only
``job_ready`` is held (``chain_completed`` and ``job_lost`` have other
listeners, and go as before). A subscriber of this notifier itself ends
holding at once (:meth:`Audience.wake`).

Callers never lock: ``hold`` appends to a deque (atomic under the GIL) and
reads two flags; the I/O loop takes what is held at the start of a round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from queuert.notify._alone import COUNT_AFTER

__all__ = ["Audience"]

logger = logging.getLogger("queuert.notify")


class Audience:
    """The publish side's view of the broker's ``job_ready`` listeners.

    ``count()`` (on the I/O loop) returns the number of subscriptions, 0
    only when the broker says there are none, or None (unknown). ``loop()``
    gives the I/O loop; ``send(ready)`` sends held hints the usual way (any
    thread). ``every``: seconds between counts while hints flow.
    ``present()``: this notifier has a job_ready subscriber itself (a
    worker's): someone listens, no count needed.
    """

    def __init__(
        self,
        count: Callable[[], Awaitable[int | None]],
        loop: Callable[[], asyncio.AbstractEventLoop],
        send: Callable[[dict[str, int]], None],
        every: float = 1.0,
        timeout: float = 1.0,
        present: Callable[[], bool] = lambda: False,
    ) -> None:
        self._count = count
        self._present = present
        self._loop = loop
        self._send = send
        self.every = every
        self.timeout = timeout
        #: job types (with their counts) dropped because nobody listened
        self.skipped = 0
        #: counts made (for tests and observability)
        self.rounds = 0
        self._held: deque[dict[str, int]] = deque()
        self.reset()

    def reset(self) -> None:
        """A new I/O loop (or a forked child): start by sending."""
        #: the last count said nobody listens: job_ready hints are held
        self.quiet = False
        self._due = float("-inf")  # monotonic: the next count may start
        self._armed = False  # a round is scheduled (or running)
        self._lock: asyncio.Lock | None = None  # rounds one at a time (I/O loop)
        self._timer: asyncio.TimerHandle | None = None

    def after_fork(self) -> None:
        """In a forked child: what the parent held is the parent's."""
        self._held = deque()
        self.reset()

    # -- callers (any thread) ------------------------------------------------

    def hold(self, ready: dict[str, int]) -> bool:
        """Take ``ready`` (the caller hands it over) when nobody listens;
        False: send it the usual way."""
        if not self.quiet:
            if not self._armed and time.monotonic() >= self._due:
                self._arm()  # a count while hints flow (at most one per `every`)
            return False
        self._held.append(ready)
        if not self.quiet:  # holding ended meanwhile: nobody else takes it
            self._release()
        elif not self._armed:
            self._arm()
        return True

    def wake(self) -> None:
        """A subscriber of this notifier came: send what is held, now."""
        self.quiet = False
        self._release()

    @property
    def held(self) -> int:
        return len(self._held)

    @property
    def idle(self) -> bool:
        """Nothing held and no count scheduled or running (for tests)."""
        return not self._held and not self._armed

    def _arm(self) -> None:
        self._armed = True
        try:
            self._loop().call_soon_threadsafe(self._schedule)
        except RuntimeError:  # the loop is closing: the next hint tries again
            self._armed = False

    def _release(self, taken: dict[str, int] | None = None) -> None:
        ready = taken if taken is not None else {}
        self._drain_into(ready)
        if ready:
            self._send(ready)

    def _drain_into(self, ready: dict[str, int]) -> None:
        held = self._held
        while held:
            try:
                batch = held.popleft()
            except IndexError:  # another thread took the last one
                break
            for name, n in batch.items():
                ready[name] = ready.get(name, 0) + n

    # -- the I/O loop ----------------------------------------------------------

    def _schedule(self) -> None:
        if self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        delay = max(COUNT_AFTER, self._due - time.monotonic())
        self._timer = loop.call_later(delay, self._start)

    def _start(self) -> None:
        self._timer = None
        asyncio.get_running_loop().create_task(self._round(), name="queuert-notify-audience")

    async def _round(self) -> None:
        try:
            await self._judge()
        finally:
            self._armed = False
            if self.quiet and self._held:  # held during the count: the next round
                self._arm()

    async def settle(self) -> None:
        """For flush and close: send what is held now, listeners or not (a
        caller that flushes wants its hints out; a script that starts a
        chain and exits too), once a round in progress has decided about
        what it took."""
        if self._lock is not None:
            async with self._lock:
                pass
        self._release()

    async def _judge(self) -> None:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            taken: dict[str, int] = {}
            self._drain_into(taken)  # held before the count starts: it judges them
            self.rounds += 1
            try:
                if self._present():
                    listeners: int | None = 1
                else:
                    listeners = await asyncio.wait_for(self._count(), self.timeout)
            except asyncio.CancelledError:
                self._release(taken)
                raise
            except Exception as exc:
                logger.debug("notify: counting job_ready listeners failed: %s", exc)
                listeners = None
            self._due = time.monotonic() + self.every
            logger.debug("notify: %s job_ready listener(s); %d type(s) held", listeners, len(taken))
            if listeners == 0:
                self.skipped += len(taken)
                self.quiet = True
            else:
                self.quiet = False
                self._release(taken)
