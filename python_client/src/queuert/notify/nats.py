"""NATS notifier: core NATS subjects for the events, a JetStream key-value
bucket for wake budgets when JetStream is there.

::

    notifier = NatsNotifier("nats://127.0.0.1:4222")

Wire format (``<p>`` is the prefix, default ``queuert``, one per schema):

* subjects ``<p>.job_ready`` (type name), ``<p>.chain_completed`` (chain
  id), ``<p>.job_lost`` (job id), core NATS publish / subscribe (no stream:
  events are hints, kept nowhere);
* wake budgets: KV bucket ``<p>-wake-hints`` (memory storage, history 1,
  ``max_age`` = ``hint_ttl``, so a budget expires ``hint_ttl`` after its last
  change), one key per type (the type name in URL-safe base64, since type
  names may hold characters KV keys may not). Topping up and taking are
  compare-and-set loops (``update(..., last=revision)``; ``create`` for a
  missing key): concurrent publishers and workers never lose or double a
  unit. The top-up is acknowledged by JetStream before the event is
  published, so a woken worker finds its unit.

Without JetStream (``nats-server`` without ``-js``) the events still flow and
:meth:`~queuert.notify.base.Notifier.take_wake_hint` answers True (every
woken worker claims, as with LISTEN/NOTIFY).

One connection on the notifier's I/O loop publishes, takes budget units
and counts listeners; each event loop with subscribers has a connection of
its own for its subscriptions, read on that loop
(:mod:`queuert.notify._loop_listeners`: an event needs no hand-over from
the I/O thread). nats-py's own
reconnection is off: a lost connection closes, publishing drops its hints
until a publish reconnects, and the subscriber reconnects with the notifier's
backoff and sends ``resync`` (nats-py would resubscribe silently, and the
events lost during the gap would go unnoticed); the subscriber watches the
client's state as well as nats-py's closed callback, which a close that fails
half-way (unsent publishes on a lost socket) never calls. nats-py's PINGs
(``health_interval``, two unanswered close the connection) catch a half-open
connection.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Collection
from typing import Any

import nats
from nats.errors import NoServersError
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from queuert.notify._later_top_ups import LaterTopUps
from queuert.notify._nats_budgets import Written, add, cas, take
from queuert.notify.broker import BrokerNotifier, ListenSession

__all__ = ["NatsNotifier"]

logger = logging.getLogger("queuert.notify")

_KINDS = ("job_ready", "chain_completed", "job_lost")
_ROLL_CALL = "roll call"  # the session's subscription answering listener counts
_NO_RESPONDERS = "503"  # the status of the server's reply to a request nobody subscribes to
#: how long a roll call collects answers (a background count, see _alone)
_ROLL_CALL_WINDOW = 0.25
#: how often a session checks the client's state besides the closed callback
_CLOSED_CHECK = 0.5
#: seconds a top-up waits after its event went first (_later_top_ups); well
#: under lone_take_delay, so a lone listener's owed unit finds it
_TOP_UP_AFTER = 0.01


def kv_key(type_name: str) -> str:
    """The KV key of a type's wake budget (URL-safe base64: valid KV key
    characters whatever the type name holds)."""
    return base64.urlsafe_b64encode(type_name.encode()).decode().rstrip("=")


class NatsNotifier(BrokerNotifier):
    """Events over core NATS, wake budgets in a JetStream KV bucket.

    ``servers``: a URL or a list of URLs (``nats://``, ``tls://``).
    ``connect_options``: more keyword arguments for ``nats.connect`` (TLS,
    credentials, ...). ``health_interval``: seconds between nats-py PINGs.
    Other options: :class:`~queuert.notify.broker.BrokerNotifier`.
    """

    broker_name = "NATS"

    def __init__(
        self,
        servers: str | list[str] = "nats://127.0.0.1:4222",
        *,
        prefix: str = "queuert",
        connect_options: dict[str, Any] | None = None,
        health_interval: float = 10.0,
        **options: Any,
    ) -> None:
        super().__init__(prefix=prefix, **options)
        self.servers = servers
        self.connect_options = dict(connect_options or {})
        self.health_interval = health_interval
        self.subjects = {kind: f"{self.prefix}.{kind}" for kind in _KINDS}
        self.bucket = f"{self.prefix}-wake-hints"
        #: every job_ready subscription answers a message here (its count)
        self.roll_call = f"{self.prefix}.listeners"
        self._nc: Client | None = None
        self._kv: KeyValue | None = None
        self._connecting: asyncio.Lock | None = None
        #: the revisions this notifier last wrote (_cas)
        self._written = Written()
        #: batches whose job_ready went out before the budget top-up (a
        #: count of at most one listener; for observability and tests)
        self.events_first = 0

    def _init_loop_state(self) -> None:
        super()._init_loop_state()
        #: top-ups of batches whose event went first
        self._later = LaterTopUps(lambda ready: self._top_up_later(ready), _TOP_UP_AFTER, lambda: self.send_timeout)

    # -- the connection (on the I/O loop) ----------------------------------------

    async def _connection(self) -> Client:
        nc = self._nc
        if nc is not None and nc.is_connected:
            return nc
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            nc = self._nc
            if nc is not None and nc.is_connected:
                return nc
            if nc is not None:
                self._nc = self._kv = None
                await _close(nc)
            nc, _ = await self._open_client()
            # the bucket before the connection is published: a concurrent
            # caller that found _nc connected and _kv still None took its
            # wake hint as "no budgets kept" (True), one unit too many
            try:
                kv = await self._hint_bucket(nc)
            except BaseException:
                await _close(nc)
                raise
            self._written = Written()
            self._nc, self._kv = nc, kv
            return nc

    async def _open_client(self) -> tuple[Client, asyncio.Event]:
        """A new connection on the running loop, and an event set when it
        closes (nats-py's own reconnection off: see the module docs)."""
        closed = asyncio.Event()
        errors: list[Exception] = []

        async def quiet_error(exc: Exception) -> None:
            errors.append(exc)
            logger.debug("NATS notifier: %s", exc)

        async def on_closed() -> None:
            closed.set()

        options: dict[str, Any] = {
            "connect_timeout": 2,
            "ping_interval": self.health_interval,
            "max_outstanding_pings": 2,
            "name": f"queuert-{self.prefix}",
            **self.connect_options,
        }
        try:
            # one round over the servers (nats-py's default retries a
            # down server forever, even with allow_reconnect off)
            nc = await nats.connect(
                self.servers,
                allow_reconnect=False,
                max_reconnect_attempts=1,
                reconnect_time_wait=0,
                error_cb=quiet_error,
                disconnected_cb=on_closed,
                closed_cb=on_closed,
                **options,
            )
        except NoServersError:
            raise ConnectionError(f"no NATS server reachable ({errors[-1] if errors else 'no server'})") from None
        return nc, closed

    async def _hint_bucket(self, nc: Client) -> KeyValue | None:
        # the bucket's requests serve top-ups and takes: their timeout must
        # not cut either short (each has its own bound: the sender's timer,
        # hint_timeout)
        js = nc.jetstream(timeout=max(2.0, self.send_timeout, self.hint_timeout))
        try:
            return await js.create_key_value(
                KeyValueConfig(
                    bucket=self.bucket, history=1, ttl=self.hint_ttl, storage=StorageType.MEMORY, direct=True
                )
            )
        except Exception as exc:
            try:  # it exists with another configuration: use it as it is
                return await js.key_value(self.bucket)
            except Exception:
                pass
            if self.wake_budgets:
                logger.info("NATS notifier: no JetStream KV (%s); wake budgets off, every woken worker claims", exc)
            self.wake_budgets = False
            return None

    async def _close_clients(self) -> None:
        nc, self._nc, self._kv = self._nc, None, None
        self._connecting = None
        if nc is not None:
            await _close(nc)

    def _forget_clients(self) -> None:
        self._nc = self._kv = None
        self._written = Written()
        self._connecting = None

    # -- publishing and hints --------------------------------------------------

    async def _send(self, ready: dict[str, int], chains: list[str], lost: list[str]) -> None:
        nc = await self._connection()
        kv = self._kv
        # The budget goes up before the event goes out, so a woken worker
        # finds its unit: one JetStream round trip ahead of the event when
        # this notifier wrote the key last (_cas), else two. When a count
        # says one subscription listens, that listener claims
        # without asking (queuert.notify._alone): the event goes first and
        # the budget follows. The count is trusted as long as the listener
        # trusts its own (trust_for; renewed in the background every
        # refresh_after while hints flow): with refresh_after as the limit,
        # every renewal left a quarter second (the roll call's window) of
        # events behind their budgets.
        # Exactly one: a count of none is stale by the time a hint goes out
        # (queuert.notify._audience sends held hints when a listener came,
        # one without a count of its own yet, which asks for its unit).
        listeners = self._listeners.recent(self._listeners.trust_for) if kv is not None and ready else None
        budget_first = listeners != 1
        if kv is not None and budget_first:
            await self._top_up(kv, ready)
        for kind, payloads in (("job_ready", list(ready)), ("chain_completed", chains), ("job_lost", lost)):
            subject = self.subjects[kind]
            for payload in payloads:
                await nc.publish(subject, payload.encode())
        # no flush (a PING / PONG round trip per batch): nats-py's flusher
        # writes the buffer at once, and closing the connection writes what
        # is left; a connection lost meanwhile loses these hints, as a hint may
        if kv is not None and not budget_first:
            self.events_first += 1
            # later, not while the woken listener claims (_later_top_ups)
            self._later.add(ready)

    async def _top_up_later(self, ready: dict[str, int]) -> None:
        await self._connection()
        if self._kv is not None:
            await self._top_up(self._kv, ready)

    async def _send_deferred(self) -> None:
        await self._later.settle_now()

    async def _drop_deferred(self) -> None:
        await self._later.cancel()

    async def _top_up(self, kv: KeyValue, ready: dict[str, int]) -> None:
        for name, n in ready.items():
            await cas(kv, kv_key(name), add(n), self._written)

    async def _take_up_to(self, type_names: list[str], n: int) -> int:
        await self._connection()
        kv = self._kv
        if kv is None:
            return n  # no budgets kept: every take succeeds
        taken = 0
        for name in type_names:
            wanted = n - taken
            if wanted <= 0:
                break
            took: list[int] = []
            if await cas(kv, kv_key(name), take(wanted, took), self._written):
                taken += took[-1]
        return taken

    async def _count_listeners(self) -> int | None:
        """A roll call: every session subscribed to job_ready answers; the
        answers within a quarter second, up to 2 (all that matters is
        whether there is more than one)."""
        nc = await self._connection()
        inbox = nc.new_inbox()
        answers = 0
        two = asyncio.get_running_loop().create_future()

        async def answered(msg: Msg) -> None:
            nonlocal answers
            if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
                return  # the server's own "nobody listens" (503), not an answer
            answers += 1
            if answers >= 2 and not two.done():
                two.set_result(None)

        sub = await nc.subscribe(inbox, cb=answered)
        try:
            await nc.publish(self.roll_call, b"", reply=inbox)
            try:
                await asyncio.wait_for(two, _ROLL_CALL_WINDOW)
            except asyncio.TimeoutError:
                pass
        finally:
            await sub.unsubscribe()
        return answers

    async def _count_audience(self) -> int | None:
        """A roll call that ends at its first answer: the server's own "no
        responders" (nobody subscribes to the roll call, so no job_ready
        subscription exists: 0), a subscription's answer (1: at least
        one), or nothing within the audience's timeout (unknown)."""
        nc = await self._connection()
        inbox = nc.new_inbox()
        first: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def answered(msg: Msg) -> None:
            if not first.done():
                nobody = msg.headers is not None and msg.headers.get("Status") == _NO_RESPONDERS
                first.set_result(0 if nobody else 1)

        sub = await nc.subscribe(inbox, cb=answered)
        try:
            await nc.publish(self.roll_call, b"", reply=inbox)
            return await first
        finally:
            await sub.unsubscribe()

    # -- subscribing -------------------------------------------------------------

    async def _listen(self, kinds: frozenset[str], deliver: Callable[[str, str], None]) -> ListenSession:
        # the publishing connection (and the KV bucket, which decides
        # wake_budgets) first, on the I/O loop, as when subscriptions shared
        # it; then a connection of the subscribers' loop, which reads it
        await self._on_io(self._connection())
        nc, closed = await self._open_client()
        session = _NatsSession(self, nc, closed, deliver)
        try:
            await session.add(kinds)
        except BaseException:
            await session.close()
            raise
        return session


class _NatsSession(ListenSession):
    def __init__(
        self, notifier: NatsNotifier, nc: Client, closed: asyncio.Event, deliver: Callable[[str, str], None]
    ) -> None:
        self.n = notifier
        self.nc = nc
        self.closed = closed
        self.deliver = deliver
        self.subs: dict[str, NatsSubscription] = {}

    async def add(self, kinds: Collection[str]) -> None:
        for kind in kinds:
            if kind not in self.subs:

                async def on_msg(msg: Msg, kind: str = kind) -> None:
                    self.deliver(kind, msg.data.decode("utf-8", "replace"))

                self.subs[kind] = await self.nc.subscribe(self.n.subjects[kind], cb=on_msg)
                if kind == "job_ready":  # answer roll calls (NatsNotifier._count_listeners)
                    self.subs[_ROLL_CALL] = await self.nc.subscribe(self.n.roll_call, cb=self._present)
        # live once the server has the interest (a PING / PONG behind the SUBs)
        await self.nc.flush(timeout=max(1, int(self.n.send_timeout)))

    async def remove(self, kinds: Collection[str]) -> None:
        for kind in [*kinds, *([_ROLL_CALL] if "job_ready" in kinds else [])]:
            sub = self.subs.pop(kind, None)
            if sub is not None:
                await sub.unsubscribe()

    async def _present(self, msg: Msg) -> None:
        if msg.reply:
            await self.nc.publish(msg.reply, b"")

    async def run(self) -> None:
        # nats-py reads on its own tasks; we only wait for the end. Its
        # closed callback is not enough: when the connection drops while
        # publishes sit in its buffer (unflushed: _send does not flush),
        # nats-py's close writes them and drain() raises on the lost socket,
        # which ends the close before the callbacks, the client CLOSED but
        # silent. So the client's own state is checked too.
        while not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.closed.wait(), _CLOSED_CHECK)
                break
            except asyncio.TimeoutError:
                pass
        raise ConnectionError("NATS connection closed")

    async def close(self) -> None:
        self.subs = {}
        await _close(self.nc)  # the session's own connection (its subscriptions with it)


async def _close(nc: Client) -> None:
    try:
        await nc.close()
    except Exception:
        pass
