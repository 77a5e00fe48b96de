"""The publish side of a broker notifier: a buffer any thread fills without
waiting, and a pump on the notifier's I/O loop that sends what is buffered.

A publish call costs its caller a lock, a few dict updates and, when the
buffer was empty, one ``call_soon_threadsafe``. On the I/O loop the pump
takes everything buffered (job counts summed per type, ids deduplicated) and
hands it to the adapter's send, one batch at a time: hints buffered while a
batch is on the wire go out together in the next one, so a burst of commits
costs one round trip per batch, not one per commit. Batches are also spaced
a gap apart (start to start; :mod:`queuert.notify._spacing`: ``batch_gap``,
growing to ``max_batch_gap`` under a stream): after each batch the pump
waits out the gap on a timer, a hint published meanwhile goes out with
whatever came at the gap's end, so a steady stream of commits (a producer
creating thousands of chains a second) costs one send per gap instead of
one per commit, and its callers do not wake the loop (the pump is already
scheduled); a gap that ends with nothing buffered leaves the pump idle, and
the next hint goes out at once. There is no sender task
waiting on an event, no condition variable and no ``wait_for`` task per
batch: one task per batch, and a timer that cancels it after
``send_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable

from queuert.notify._spacing import BatchSpacing

__all__ = ["HintSender"]

logger = logging.getLogger("queuert.notify")

#: the adapter's send: (job counts per type, chain ids, job ids); raises on failure
Send = Callable[[dict[str, int], list[str], list[str]], Awaitable[None]]


class HintSender:
    """The buffer and the pump of one notifier (see the module docs).

    ``loop()`` returns the I/O loop (starting its thread if needed);
    ``send`` runs on it. ``published`` / ``dropped`` count hints (job types
    with their counts, chain ids, job ids) sent and dropped.
    """

    def __init__(
        self,
        name: str,
        loop: Callable[[], asyncio.AbstractEventLoop],
        send: Send,
        send_timeout: float,
        max_buffered: int,
        batch_gap: float = 0.0,
        max_batch_gap: float = 0.0,
    ) -> None:
        self.name = name
        self.batch_gap = batch_gap
        self.max_batch_gap = max_batch_gap
        self._loop = loop
        self._send = send
        self.send_timeout = send_timeout
        self.max_buffered = max_buffered
        self.published = 0
        self.dropped = 0
        self._lock = threading.Lock()  # the buffer, from any thread
        self._ready: dict[str, int] = {}
        self._chains: dict[str, None] = {}
        self._lost: dict[str, None] = {}
        self._enqueued = 0  # publish calls buffered so far
        self._kicked = False  # a pump is scheduled (or a batch in flight will pump)
        self._down = False  # the last send failed (one warning per outage)
        self.reset_loop_state()

    def reset_loop_state(self) -> None:
        """State that lives on the I/O loop (a new loop starts afresh)."""
        self._sent_seq = 0  # publish calls sent (or dropped) so far
        self._in_flight: asyncio.Task[None] | None = None
        self._deferred: asyncio.TimerHandle | None = None  # a pump at the gap's end
        self._next_start = float("-inf")  # loop time: no batch starts before
        self._idle = True  # the last pump found nothing to send
        self._spacing = BatchSpacing(self.batch_gap, self.max_batch_gap)
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        with self._lock:
            self._kicked = False

    def after_fork(self) -> None:
        self._lock = threading.Lock()
        self._ready, self._chains, self._lost = {}, {}, {}
        self._enqueued = 0
        self.reset_loop_state()

    # -- any thread ----------------------------------------------------------------

    def add(self, ready: dict[str, int], chains: Iterable[str], lost: Iterable[str]) -> None:
        overflow = 0
        with self._lock:
            buffered = self._ready
            for name, n in ready.items():
                buffered[name] = buffered.get(name, 0) + n
            for target, ids in ((self._chains, chains), (self._lost, lost)):
                for i in ids:
                    if len(target) < self.max_buffered:
                        target[i] = None
                    elif i not in target:
                        overflow += 1
            self._enqueued += 1
            kick = not self._kicked
            self._kicked = True
        if overflow:
            self.dropped += overflow
            logger.warning("%s notifier: %d hint(s) dropped, the send buffer is full", self.name, overflow)
        if kick:
            try:
                self._loop().call_soon_threadsafe(self.pump)
            except RuntimeError:  # the loop closed under us (close() racing): drop
                with self._lock:
                    self._kicked = False

    @property
    def enqueued(self) -> int:
        with self._lock:
            return self._enqueued

    # -- the I/O loop ------------------------------------------------------------

    def pump(self) -> None:
        """Send what is buffered, unless a batch is in flight (its end pumps)
        or the last one started less than a gap ago (then at the gap's end,
        whether anything is buffered yet or not: callers meanwhile only fill
        the buffer). Nothing buffered after the gap: idle, and the next
        hint kicks."""
        if self._in_flight is not None or self._deferred is not None:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        with self._lock:
            if now < self._next_start:
                # _kicked stays set: callers meanwhile only fill the buffer
                self._kicked = True
                self._deferred = loop.call_at(self._next_start, self._pump_deferred)
                return
            pending = bool(self._ready or self._chains or self._lost)
            ready, self._ready = self._ready, {}
            chains, self._chains = list(self._chains), {}
            lost, self._lost = list(self._lost), {}
            seq = self._enqueued
            # a batch keeps _kicked set (its end pumps); idle clears it
            self._kicked = pending
        if pending:
            self._next_start = now + self._spacing.batch(self._idle)
            self._idle = False
            task = loop.create_task(self._batch(ready, chains, lost, seq), name="queuert-notify-send")
            self._in_flight = task
        else:
            self._idle = True
            self._spacing.idle()
            self._settle(seq)

    def _pump_deferred(self) -> None:
        self._deferred = None
        self.pump()

    async def _batch(self, ready: dict[str, int], chains: list[str], lost: list[str], seq: int) -> None:
        n = len(ready) + len(chains) + len(lost)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        timed_out: list[bool] = []

        def expire() -> None:
            timed_out.append(True)
            task.cancel()

        timer = loop.call_later(self.send_timeout, expire)
        try:
            await self._send(ready, chains, lost)
        except asyncio.CancelledError:
            if not timed_out:  # shutting down
                raise
            self._failed(n, asyncio.TimeoutError(f"no answer within {self.send_timeout}s"))
        except Exception as exc:
            self._failed(n, exc)
        else:
            self.published += n
            if self._down:
                self._down = False
                logger.info("%s notifier: publishing works again", self.name)
        finally:
            timer.cancel()
        self._in_flight = None
        self._settle(seq)
        self.pump()  # the gap, then what was published meanwhile (or idle)

    def _failed(self, n: int, exc: BaseException) -> None:
        self.dropped += n
        if not self._down:
            self._down = True
            logger.warning(
                "%s notifier: publishing failed (%s: %s); hints are dropped until it works "
                "again (workers poll meanwhile)",
                self.name,
                type(exc).__name__,
                exc,
            )
        else:
            logger.debug("%s notifier: publishing failed again: %s", self.name, exc)

    def _settle(self, seq: int) -> None:
        if seq > self._sent_seq:
            self._sent_seq = seq
        if self._waiters:
            keep = []
            for wanted, fut in self._waiters:
                if wanted <= self._sent_seq:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((wanted, fut))
            self._waiters = keep

    async def wait_sent(self, seq: int) -> None:
        """Until every publish call up to number ``seq`` was sent or dropped."""
        if self._sent_seq >= seq:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, fut))
        self.pump()  # nothing scheduled (a kick lost to a closing loop): send now
        await fut

    async def stop(self) -> None:
        """Cancel a batch in flight (the loop is shutting down)."""
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            deferred.cancel()
        task, self._in_flight = self._in_flight, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
