"""Redis notifier: pub/sub for the events, a Lua-kept budget for wake hints.

Standalone Redis or Redis Cluster (``cluster=True``, or a
``redis.asyncio.cluster.RedisCluster`` client)::

    notifier = RedisNotifier("redis://127.0.0.1:6379/0")           # standalone
    notifier = RedisNotifier("redis://10.0.0.5:7000", cluster=True)  # any node

Wire format (``<p>`` is the prefix, default ``queuert``, one per schema):

* channels ``<p>:job_ready`` (type name), ``<p>:chain_completed`` (chain
  id), ``<p>:job_lost`` (job id): classic PUBLISH / SUBSCRIBE;
* wake budgets: keys ``{<p>}:hint:<type>`` (one hash tag, so one cluster
  slot, so one script may touch several), topped up and published by one Lua
  script (budget first, then the PUBLISH, atomically: a woken worker always
  finds its unit) and taken by another (GET, DECR or DEL), with an expiry of
  ``hint_ttl`` refreshed on every top-up.

Publishing from a ``redis://`` or ``unix://`` URL: callers hand their hints
to a plain writer thread, which writes the send script's ``EVAL`` on a
connection with replies off, one batch per write
(:mod:`queuert.notify._redis_direct`; a Cluster's writer connects to the
node of the prefix's slot, and a check once a second while it writes drops
that connection when the slot moved); else, and until that connection is
made, the I/O thread sends it (``EVALSHA`` on a connection of its own;
Cluster: the client's script).

Cluster: classic pub/sub, not sharded. A PUBLISH reaches subscribers on any
node (the cluster bus forwards it), so the subscriber holds one connection to
one node and needs no resubscription when slots move. That node is the one
serving the prefix's slot (``{<p>}``), where every send script runs (a batch
without budget keys is sent there too): a message then reaches the
subscriber without crossing the bus. Redis 7.0 writes its outgoing cluster
bus links without ``TCP_NODELAY``, so a message sent while the link's last
one is still unacknowledged waits for the receiver's delayed ACK (up to
40 ms; measured: p99 24 ms over the bus against 0.5 ms on the node itself, at
one message per 20 ms). After a failure or a slot move the subscriber takes
any node (the bus still delivers) and returns to the prefix's node at its
next reconnection. Sharded pub/sub (SSUBSCRIBE) would keep messages off the
bus as well, but changes the channel names (a hash tag) for every publisher.

The subscriber runs on its own connection (not from the client's pool, with
no socket timeout and no silent reconnect), one per event loop that has
subscribers, read on that loop (:mod:`queuert.notify._loop_listeners`): a
lost connection surfaces at
once, is reopened with backoff, and every reopening sends ``resync``. An idle
connection is PINGed every ``health_interval`` seconds and dropped when no
answer comes within ``health_timeout`` (a half-open connection otherwise
stays silent forever).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
import random
from collections.abc import Callable
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from queuert.notify._redis_direct import DirectPublisher
from queuert.notify._redis_session import RedisSession, disconnect as _disconnect, text as _text
from queuert.notify._redis_scripts import SEND as _SEND, SEND_SHA as _SEND_SHA, TAKE as _TAKE, TAKE_SHA as _TAKE_SHA
from queuert.notify.broker import BrokerNotifier, ListenSession

__all__ = ["RedisNotifier"]

logger = logging.getLogger("queuert.notify")

_KINDS = ("job_ready", "chain_completed", "job_lost")
#: seconds between checks that a Cluster writer's node still serves the prefix's slot
_HOME_CHECK = 1.0


def _numsub(reply: Any, channel: str) -> int:
    """The count out of a PUBSUB NUMSUB reply (a flat list or pairs, by client)."""
    if isinstance(reply, dict):
        items = list(reply.items())
    elif reply and isinstance(reply[0], (list, tuple)):
        items = [tuple(pair) for pair in reply]
    else:
        items = list(zip(reply[::2], reply[1::2]))
    return sum(int(n) for ch, n in items if _text(ch) == channel)


def _connection(pool: Any) -> Any:
    """A connection of its own with the pool's settings (not from the pool),
    with no read timeout of its own (redis-py would wrap every read in a
    timeout task; the sender's timer bounds the whole batch instead)."""
    kwargs = dict(pool.connection_kwargs)
    kwargs["socket_timeout"] = None
    for key in ("maint_notifications_config", "maint_notifications_pool_handler"):
        kwargs.pop(key, None)  # redis-py 7+ for RESP3 pools only
    return pool.connection_class(**kwargs)


def _node_url(url: str, host: str, port: int) -> str:
    """``url`` with its host and port replaced (credentials and options kept)."""
    parts = urllib.parse.urlsplit(url)
    auth, at, _ = parts.netloc.rpartition("@")
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{auth}{at}{address}"))


class RedisNotifier(BrokerNotifier):
    """Events over Redis pub/sub, wake budgets in Redis keys.

    ``client``: a URL (``redis://``, ``rediss://``, ``unix://``) or a
    ``redis.asyncio.Redis`` / ``RedisCluster`` client. A client is used from
    the notifier's own I/O thread (see :mod:`queuert.notify.broker`): give it
    one that nothing else uses. ``cluster``: treat a URL as one node of a Redis
    Cluster. ``health_interval`` / ``health_timeout``: the subscriber's
    PING watch. Other options: :class:`~queuert.notify.broker.BrokerNotifier`.
    """

    broker_name = "Redis"

    def __init__(
        self,
        client: str | aioredis.Redis | RedisCluster = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "queuert",
        cluster: bool = False,
        health_interval: float = 15.0,
        health_timeout: float = 5.0,
        **options: Any,
    ) -> None:
        super().__init__(prefix=prefix, **options)
        if isinstance(client, str):
            self.url: str | None = client
            self._client: aioredis.Redis | RedisCluster | None = None
            self.cluster = cluster
        elif isinstance(client, RedisCluster):
            self.url, self._client, self.cluster = None, client, True
        elif isinstance(client, aioredis.Redis):
            self.url, self._client, self.cluster = None, client, False
        else:
            raise TypeError(f"RedisNotifier needs a URL or a redis.asyncio client, not {client!r}")
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.channels = {kind: f"{self.prefix}:{kind}" for kind in _KINDS}
        self._scripts: tuple[Any, Any] | None = None  # (send, take), per client
        self._pub_conn: Any = None  # standalone: the sender's own connection
        #: from a redis:// or unix:// URL: callers hand their hints to a
        #: writer thread (queuert.notify._redis_direct)
        self._direct = (
            DirectPublisher(
                self.url,
                2.0,
                f"queuert-publish-{self.prefix}",
                self._direct_args,
                self._sender.add,
                self._reconnect_direct,
                self.max_buffered,
                self.batch_gap,
                self.max_batch_gap,
            )
            if self.url is not None and DirectPublisher.usable_for(self.url)
            else None
        )
        #: a Cluster writer's node (host, port), and its watch (_watch_home)
        self._direct_home: tuple[str, int] | None = None
        self._home_watch: asyncio.Task[None] | None = None

    def budget_key(self, type_name: str) -> str:
        """The Redis key holding ``type_name``'s wake budget."""
        return f"{{{self.prefix}}}:hint:{type_name}"

    # -- clients (on the I/O loop) ---------------------------------------------

    def _redis(self) -> aioredis.Redis | RedisCluster:
        if self._client is None:
            assert self.url is not None
            # the client serves sends and takes: its socket timeout must not
            # cut either short (each has its own bound: the sender's timer,
            # hint_timeout); a client passed in keeps its own
            timeout = max(self.send_timeout, self.hint_timeout)
            if self.cluster:  # a take is never retried (_take_once)
                self._client = RedisCluster.from_url(self.url, socket_connect_timeout=2.0, socket_timeout=timeout)
            else:
                self._client = aioredis.Redis.from_url(self.url, socket_connect_timeout=2.0, socket_timeout=timeout)
        return self._client

    def _script(self, which: int) -> Any:
        if self._scripts is None:
            client = self._redis()
            self._scripts = (client.register_script(_SEND), client.register_script(_TAKE))
        return self._scripts[which]

    async def _close_clients(self) -> None:
        if self._direct is not None:
            self._direct.close()
        watch, self._home_watch, self._direct_home = self._home_watch, None, None
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        client, self._scripts = self._client, None
        conn, self._pub_conn = self._pub_conn, None
        if conn is not None:
            await _disconnect(conn)
        if client is None:
            return
        if self.url is not None:  # ours: closed, and made again on next use
            self._client = None
            await client.aclose()
        elif isinstance(client, RedisCluster):
            await client.aclose()
        else:  # the caller's: only its connections, made on our loop
            await client.connection_pool.disconnect()

    def _forget_clients(self) -> None:
        if self._direct is not None:
            self._direct.forget()
        self._home_watch = self._direct_home = None
        self._scripts = None
        self._pub_conn = None
        if self.url is not None:
            self._client = None

    # -- publishing and hints --------------------------------------------------

    def _script_args(self, ready: dict[str, int], chains: list[str], lost: list[str]) -> tuple[list[str], list[Any]]:
        """The send script's KEYS and ARGV for a batch."""
        keys = [self.budget_key(name) for name in ready]
        args: list[Any] = [int(self.hint_ttl * 1000), self.channels["job_ready"]]
        for name, n in ready.items():
            args += [n, name]
        for kind, ids in (("chain_completed", chains), ("job_lost", lost)):
            channel = self.channels[kind]
            for payload in ids:
                args += [channel, payload]
        return keys, args

    def _direct_args(self, ready: dict[str, int], chains: list[str], lost: list[str]) -> list[Any]:
        keys, args = self._script_args(ready, chains, lost)
        # EVAL, not EVALSHA: with replies off a NOSCRIPT would go unseen
        # (Redis caches the compiled script by its hash either way)
        return ["EVAL", _SEND, len(keys), *keys, *args]

    def _publish_direct(self, ready: dict[str, int], chains: list[str], lost: list[str]) -> bool:
        direct = self._direct
        if direct is None:
            return False
        if not direct.connected and self._reconnect_direct():
            return False
        return direct.offer(ready, chains, lost)

    def _reconnect_direct(self) -> bool:
        """Have the direct connection made if it is missing (by a worker
        thread of the I/O loop); True when it was missing."""
        direct = self._direct
        if direct is None or not direct.wants_connection():
            return False
        try:
            self._io_thread().loop.call_soon_threadsafe(self._connect_direct)
        except RuntimeError:
            pass
        return True

    @property
    def published(self) -> int:
        return super().published + (self._direct.sent if self._direct is not None else 0)

    def _connect_direct(self) -> None:
        assert self._direct is not None
        if self.cluster:
            if self._home_watch is not None:  # the last connection's, ended or ending
                self._home_watch.cancel()
            self._home_watch = asyncio.get_running_loop().create_task(self._connect_direct_home())
        else:
            asyncio.get_running_loop().run_in_executor(None, self._direct.connect)

    async def _connect_direct_home(self) -> None:
        """Cluster: the writer's connection goes to the node of the
        prefix's slot, where every send script runs; then it is watched."""
        direct, url = self._direct, self.url
        assert direct is not None and url is not None
        try:
            client = self._redis()
            await client.initialize()  # the slot map (at once when it is known)
            node = self._home_node(cast(RedisCluster, client))
            if node is None:
                raise ConnectionError("no node serves the prefix's slot")
            home = (str(node.host), int(node.port))
        except Exception as exc:
            logger.debug("Redis notifier: direct publishing unavailable: %s", exc)
            direct.not_now()
            return
        self._direct_home = home
        await asyncio.get_running_loop().run_in_executor(None, direct.connect, _node_url(url, *home))
        await self._watch_home(home)

    async def _watch_home(self, home: tuple[str, int]) -> None:
        """The writer gets no replies, so a MOVED (the slot went to another
        node) would go unseen and its hints be lost: once a second while it
        writes, a routed ``EXISTS`` of a budget key (redis-py follows a MOVED
        and updates its slot map) says where the slot is; elsewhere, the
        writer's connection is dropped and the next one goes there."""
        direct = self._direct
        assert direct is not None
        written = direct.sent
        while direct.connected and self._direct_home == home:
            await asyncio.sleep(_HOME_CHECK)
            if direct.sent == written:
                continue
            written = direct.sent
            try:
                client = cast(RedisCluster, self._redis())
                await client.execute_command("EXISTS", self.budget_key(""))
                node = self._home_node(client)
                moved = node is None or (str(node.host), int(node.port)) != home
            except Exception as exc:  # the slot's node unreachable: the writer's is suspect too
                logger.debug("Redis notifier: checking the prefix's node failed: %s", exc)
                moved = True
            if moved:
                self._direct_home = None
                direct.drop()

    async def _confirm_direct(self) -> None:
        if self._direct is not None and self._direct.connected:
            await asyncio.to_thread(self._direct.barrier, self.send_timeout)

    async def _send(self, ready: dict[str, int], chains: list[str], lost: list[str]) -> None:
        keys, args = self._script_args(ready, chains, lost)
        client = self._redis()
        if isinstance(client, RedisCluster):
            if keys:
                await self._script(0)(keys=keys, args=args)
            else:  # no key to route by (ids only): the prefix's node all the same
                await self._send_keyless(client, args)
            return
        # standalone: EVALSHA on the sender's own connection (one batch at a
        # time), without the client's pool and per-call bookkeeping
        conn = self._pub_conn
        if conn is None:
            conn = self._pub_conn = _connection(client.connection_pool)
        try:
            await conn.send_command("EVALSHA", _SEND_SHA, len(keys), *keys, *args)
            try:
                await conn.read_response()
            except NoScriptError:  # a restarted or flushed server: load it
                await conn.send_command("EVAL", _SEND, len(keys), *keys, *args)
                await conn.read_response()
        except BaseException:
            # a timeout or cancellation mid-reply leaves the stream out of
            # step: start the next batch on a new connection
            self._pub_conn = None
            await _disconnect(conn)
            raise

    async def _send_keyless(self, client: RedisCluster, args: list[Any]) -> None:
        """The send script without budget keys on the node of the prefix's
        slot, where the subscribers are (redis-py would pick a random node,
        and its PUBLISH would cross the cluster bus)."""
        await client.initialize()  # the slot map (at once when it is known)
        node = self._home_node(client)
        command: Any = client.execute_command  # untyped in redis-py
        try:
            await command("EVALSHA", _SEND_SHA, 0, *args, target_nodes=node)
        except NoScriptError:  # a restarted node: load it
            await command("EVAL", _SEND, 0, *args, target_nodes=node)

    def _home_node(self, client: RedisCluster) -> Any:
        """The node serving the prefix's slot (every budget key's), from the
        client's slot map; None when the map does not cover it."""
        try:
            return client.get_node_from_key(self.budget_key(""))
        except Exception:  # SlotNotCoveredError: a cluster in trouble
            return None

    async def _take_up_to(self, type_names: list[str], n: int) -> int:
        keys = [self.budget_key(name) for name in type_names]
        client = self._redis()
        if isinstance(client, RedisCluster):
            taken = await self._take_once(client, keys, n)
        else:
            taken = await self._script(1)(keys=keys, args=[n])
        return int(taken)

    async def _take_once(self, client: RedisCluster, keys: list[str], n: int) -> Any:
        """The take script on the node of the budgets' slot, sent once.
        redis-py's cluster client sends a command again after a timeout or
        a connection error, and a take that timed out may still run (a
        stalled node runs what it had received when it resumes): its retry
        spent a second unit. With its node named, redis-py does not retry;
        a failure (a node down, a slot moved) answers True (fail open)."""
        await client.initialize()  # the slot map (at once when it is known)
        node = self._home_node(client)
        if node is None:
            raise ConnectionError("no node serves the wake budgets' slot")
        command: Any = client.execute_command  # untyped in redis-py
        try:
            return await command("EVALSHA", _TAKE_SHA, len(keys), *keys, n, target_nodes=node)
        except NoScriptError:  # a restarted node, or the first take: load it
            return await command("EVAL", _TAKE, len(keys), *keys, n, target_nodes=node)

    async def _count_listeners(self) -> int | None:
        channel = self.channels["job_ready"]
        client: Any = self._redis()  # execute_command is untyped in redis-py
        if isinstance(client, RedisCluster):
            # classic pub/sub: each node counts the subscribers connected to
            # it (the slot map first: a client that sent nothing yet knows no
            # node, and would count 0)
            await client.initialize()
            total = 0
            for node in client.get_nodes():
                reply = await client.execute_command("PUBSUB NUMSUB", channel, target_nodes=node)
                total += _numsub(reply, channel)
            return total
        return _numsub(await client.execute_command("PUBSUB NUMSUB", channel), channel)

    _count_audience = _count_listeners  # PUBSUB NUMSUB: the server's own count

    # -- subscribing ---------------------------------------------------------------

    async def _connection_specs(self) -> list[tuple[type[Any], dict[str, Any]]]:
        """How to open a subscriber connection: (class, kwargs) per candidate
        node, in the order to try them."""
        client = self._redis()
        if isinstance(client, RedisCluster):
            await client.initialize()
            nodes = client.get_nodes()
            random.shuffle(nodes)
            # the prefix's node first: messages published there reach us
            # without crossing the cluster bus (see the module docs)
            home = self._home_node(client)
            if home is not None:
                nodes.sort(key=lambda node: node.name != home.name)
            return [(node.connection_class, dict(node.connection_kwargs)) for node in nodes]
        pool = client.connection_pool
        return [(pool.connection_class, dict(pool.connection_kwargs))]

    async def _listen(self, kinds: frozenset[str], deliver: Callable[[str, str], None]) -> ListenSession:
        errors: list[str] = []
        # the client (and a Cluster's slot map) lives on the I/O loop; the
        # connection is made here, on the subscribers' loop, which reads it
        for cls, kwargs in await self._on_io(self._connection_specs()):
            # no read timeout (a subscriber waits), RESP2 (messages as
            # replies, not pushes), and no retries hidden inside redis-py
            kwargs.update(socket_timeout=None, protocol=2, retry=None, retry_on_timeout=False)
            for key in ("retry_on_error", "maint_notifications_config", "maint_notifications_pool_handler"):
                kwargs.pop(key, None)  # the latter: redis-py 7+ for RESP3 pools only
            conn = cls(**kwargs)
            try:
                session = RedisSession(conn, deliver, self.channels, self.health_interval, self.health_timeout)
                await session.open(kinds)
                return session
            except Exception as exc:
                errors.append(f"{kwargs.get('host', kwargs.get('path'))}:{kwargs.get('port', '')}: {exc}")
                await _disconnect(conn)
        raise ConnectionError("; ".join(errors) or "no Redis node to subscribe on")
