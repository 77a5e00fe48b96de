"""The Redis notifier's direct publish: a plain writer thread sends the
hints on a connection in ``CLIENT REPLY OFF`` mode, and callers only hand
them over.

A caller (a producer's ``transaction_hooks`` after its commit, a worker
after its acknowledgement) adds its hints to a buffer under a lock (job
counts summed per type, ids deduplicated) and wakes the writer if it sleeps:
a few microseconds, no system call when the writer is busy, and none of the
socket's cost (a loopback ``send`` runs the receiving side's TCP work too,
charged to the sender: about 100 us of the caller's CPU per commit when the
caller wrote the hint itself). The writer packs everything buffered into
one ``EVAL`` of the send script and makes one non-blocking ``send``, then
waits out the gap (:mod:`queuert.notify._spacing`: ``batch_gap``, growing
to ``max_batch_gap`` under a stream) before it looks at the buffer again:
hints buffered meanwhile go out together at the gap's end, and their callers
wake nobody (the writer is not idle), so under a steady stream of commits
the cost per commit shrinks to a lock and a dict update; a gap that ends
with nothing buffered leaves the writer idle, and the next hint goes out at
once (no added latency). It waits for no reply: the server sends none.
Unlike the notifier's asyncio I/O thread, it runs no event loop and no
redis-py asyncio machinery per batch.

The connection is made (handshake by redis-py: AUTH, SELECT, ...) by the I/O
thread, through a worker thread, never by a caller; the writer thread starts
with it. No connection yet: the caller's batch goes the I/O thread's way
(which drops it with a warning while Redis is down). A connection that the
server closed, or a socket whose buffer is full (a stalled server): the
writer hands the batch (and whatever is buffered) to that path, closes the
connection and asks the I/O thread for a new one; a half-written command closes the connection, so Redis
never runs it. Redis over TCP or a Unix socket; TLS connections keep the I/O
thread's path. A Redis Cluster's writer connects to the node of the prefix's
slot, where every send script runs; the notifier watches that the slot stays
there (a MOVED reply would go unseen) and drops the connection when it moved
(:meth:`DirectPublisher.drop`).

:meth:`DirectPublisher.barrier` (for ``flush``) waits until the writer has
written what was handed over before it, then turns replies back on for one
``CLIENT REPLY ON``: its ``+OK`` comes back once Redis ran every command
written before it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from queuert.notify._spacing import BatchSpacing

__all__ = ["DirectPublisher"]

logger = logging.getLogger("queuert.notify")

#: (job counts per type, chain ids, job ids)
Batch = tuple[dict[str, int], list[str], list[str]]


class DirectPublisher:
    """One reply-less connection and the thread that writes it.

    ``pack(ready, chains, lost)`` gives the command's arguments for a batch;
    ``fallback(ready, chains, lost)`` takes a batch the writer could not
    send (the I/O thread's path); ``reconnect()`` asks for a new connection
    after the writer closed a broken one. ``max_buffered``: ids held while the writer
    is busy; beyond, callers take the other path. ``batch_gap`` /
    ``max_batch_gap``: the gap between the starts of two batches, at first
    and at most under a stream of hints (seconds; :mod:`queuert.notify._spacing`).
    """

    def __init__(
        self,
        url: str,
        connect_timeout: float,
        name: str,
        pack: Callable[[dict[str, int], list[str], list[str]], Sequence[Any]],
        fallback: Callable[[dict[str, int], list[str], list[str]], None],
        reconnect: Callable[[], object],
        max_buffered: int = 100_000,
        batch_gap: float = 0.0,
        max_batch_gap: float = 0.0,
    ) -> None:
        self.url = url
        self.batch_gap = batch_gap
        self.max_batch_gap = max_batch_gap
        self.name = name  # CLIENT SETNAME: an operator sees who it is
        self.connect_timeout = connect_timeout
        self._pack = pack
        self._fallback = fallback
        self._reconnect = reconnect
        self.max_buffered = max_buffered
        self._init_state()
        #: hints written (a job type with its count, a chain id, a job id)
        self.sent = 0

    def _init_state(self) -> None:
        self._lock = threading.Lock()  # connection state and buffer
        self._wake = threading.Condition(self._lock)  # the writer waits here
        self._drained = threading.Condition(self._lock)  # barrier() waits here
        self._sock_lock = threading.Lock()  # writing the socket: writer, barrier
        self._conn: Any = None  # a redis.Connection, handshaken, replies off
        self._sock: socket.socket | None = None
        self._pid = os.getpid()
        self._connecting = False
        self._retry_at = 0.0  # monotonic: no new connection attempt before
        self._writer: threading.Thread | None = None
        self._idle = False  # the writer waits for work
        self._spacing = BatchSpacing(self.batch_gap, self.max_batch_gap)
        self._stopping = False
        self._ready: dict[str, int] = {}
        self._chains: dict[str, None] = {}
        self._lost: dict[str, None] = {}
        self._offered = 0  # batches handed over
        self._written = 0  # of those, written (or handed to the fallback)
        #: batches written since the last barrier (a flush has to wait for them)
        self.unconfirmed = False

    @staticmethod
    def usable_for(url: str) -> bool:
        return url.startswith(("redis://", "unix://"))

    @property
    def connected(self) -> bool:
        # a forked child's notifier calls forget() at once (register_at_fork)
        return self._sock is not None

    def wants_connection(self) -> bool:
        """True once per missing connection (the caller then runs connect())."""
        with self._lock:
            if self.connected or self._connecting or time.monotonic() < self._retry_at:
                return False
            self._connecting = True
            return True

    def connect(self, url: str | None = None) -> None:
        """Blocking (a worker thread's job): open, handshake, replies off,
        and start the writer. ``url``: another server than ``self.url`` (a
        Redis Cluster's node of the prefix's slot)."""
        conn: Any = None
        try:
            pool = redis.ConnectionPool.from_url(
                url or self.url,
                socket_connect_timeout=self.connect_timeout,
                socket_timeout=self.connect_timeout,
                client_name=self.name,
            )
            conn = pool.make_connection()
            conn.connect()
            conn.send_command("CLIENT", "REPLY", "OFF")  # no reply, by definition
            sock = conn._sock  # redis-py keeps the socket here; we only write it
            sock.setblocking(False)
        except Exception as exc:
            logger.debug("Redis notifier: direct publishing unavailable: %s", exc)
            if conn is not None:
                _quiet_disconnect(conn)
            self.not_now()
            return
        with self._lock:
            self._connecting = False
            if self._pid != os.getpid():  # forked meanwhile
                _quiet_disconnect(conn)
                return
            self._conn, self._sock = conn, sock
            self._stopping = False
            if self._writer is None:  # else the writer of the last connection goes on with this one
                self._writer = threading.Thread(target=self._run, name=f"{self.name}-writer", daemon=True)
                self._writer.start()

    def not_now(self) -> None:
        """A connection that could not be made: another in a second at the earliest."""
        with self._lock:
            self._connecting = False
            self._retry_at = time.monotonic() + 1.0

    def drop(self) -> None:
        """Close the connection (its server no longer runs our commands, a
        Cluster slot moved): what comes next goes the other way and asks for
        a new one."""
        with self._sock_lock:
            self._close()

    # -- callers (any thread) ------------------------------------------------------

    def offer(self, ready: dict[str, int], chains: list[str], lost: list[str]) -> bool:
        """Hand a batch to the writer; False (nothing taken) when the caller
        must take the other path. Never blocks on I/O, never raises."""
        # no pid check: a forked child's notifier calls forget() first
        with self._lock:
            if self._sock is None or self._stopping:
                return False
            buffered = self._ready
            for name, n in ready.items():
                buffered[name] = buffered.get(name, 0) + n
            if chains or lost:
                if len(self._chains) + len(chains) > self.max_buffered or (
                    len(self._lost) + len(lost) > self.max_buffered
                ):
                    return False
                self._chains.update(dict.fromkeys(chains))
                self._lost.update(dict.fromkeys(lost))
            self._offered += 1
            if self._idle:
                self._idle = False
                self._wake.notify()
        return True

    # -- the writer thread ---------------------------------------------------------

    def _run(self) -> None:
        after_idle = True
        while True:
            with self._lock:
                while not (self._ready or self._chains or self._lost):
                    if self._stopping or self._sock is None:
                        self._end_locked()
                        return
                    self._idle = after_idle = True
                    self._spacing.idle()
                    self._wake.wait()
                self._idle = False
                gap = self._spacing.batch(after_idle)
                after_idle = False
                next_batch = time.monotonic() + gap
                batch: Batch = (self._ready, list(self._chains), list(self._lost))
                self._ready, self._chains, self._lost = {}, {}, {}
                seq = self._offered
            if not self._write(batch):
                with self._lock:  # the connection is closed: no offer is taken any more
                    rest: Batch = (self._ready, list(self._chains), list(self._lost))
                    self._ready, self._chains, self._lost = {}, {}, {}
                    seq = self._offered
                    stopping = self._stopping
                if stopping:  # the notifier is closing: its other path too
                    logger.debug("Redis notifier: hints dropped at close (the connection broke)")
                else:
                    for failed in (batch, rest):
                        if failed[0] or failed[1] or failed[2]:
                            self._hand_over(failed)
                    self._hand_over(None)  # and a new connection, without waiting for a caller
            with self._lock:
                self._written = seq
                self._drained.notify_all()
                # the gap (batch_spacing): offers meanwhile wake nobody (the
                # writer is not idle) and go out together at its end
                while not self._stopping and self._sock is not None:
                    left = next_batch - time.monotonic()
                    if left <= 0:
                        break
                    self._wake.wait(left)

    def _hand_over(self, batch: Batch | None) -> None:
        try:
            if batch is None:
                self._reconnect()
            else:
                self._fallback(*batch)
        except Exception:  # a hint: never the writer's end
            logger.exception("Redis notifier: handing hints over failed")

    def _write(self, batch: Batch) -> bool:
        """Write one command for ``batch``; False when nothing was sent and
        the connection is closed."""
        ready, chains, lost = batch
        with self._sock_lock:
            sock, conn = self._sock, self._conn
            if sock is None:
                return False
            try:
                data = b"".join(conn.pack_command(*self._pack(ready, chains, lost)))
                try:
                    # replies are off: anything readable means the server closed
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        raise ConnectionError("closed by the server")
                except BlockingIOError:
                    pass
                sent = sock.send(data)
            except BlockingIOError:  # the buffer is full: Redis is not reading
                sent = 0
            except Exception as exc:
                logger.debug("Redis notifier: direct publish failed: %s", exc)
                sent = -1
            if sent == len(data):
                self.unconfirmed = True
                self.sent += len(ready) + len(chains) + len(lost)
                return True
            self._close()  # half a command or none: closing discards it
            return False

    def _end_locked(self) -> None:
        self._writer = None
        self._idle = False
        self._drained.notify_all()

    def _close(self) -> None:
        """Close the connection (holding _sock_lock)."""
        with self._lock:
            conn, self._conn, self._sock = self._conn, None, None
            self.unconfirmed = False
            self._wake.notify()
        if conn is not None:
            _quiet_disconnect(conn)

    # -- flush and close (blocking: a worker thread's or the I/O loop's job) -------

    def barrier(self, timeout: float = 5.0) -> bool:
        """Wait until the writer wrote what was handed over before, and Redis
        ran every command written so far. False when the connection broke
        meanwhile (what was not written went the other path)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._offered
            while self._written < target and self._writer is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._drained.wait(left)
        with self._sock_lock:
            sock, conn = self._sock, self._conn
            if sock is None or not self.unconfirmed:
                return True
            try:
                sock.setblocking(True)
                sock.settimeout(self.connect_timeout)
                conn.send_command("CLIENT", "REPLY", "ON")
                reply = conn.read_response()
                conn.send_command("CLIENT", "REPLY", "OFF")
                sock.setblocking(False)
                self.unconfirmed = False
                return bool(reply)
            except Exception as exc:
                logger.debug("Redis notifier: direct publish barrier failed: %s", exc)
                self._close()
                return False

    def close(self, timeout: float = 1.0) -> None:
        """Write what is buffered (up to ``timeout`` seconds), then close."""
        with self._lock:
            self._stopping = True
            self._wake.notify()
            writer = self._writer
        if writer is not None and writer is not threading.current_thread() and self._pid == os.getpid():
            writer.join(timeout)
        with self._sock_lock:
            self._close()

    def forget(self) -> None:
        """In a forked child: the parent's socket and thread are not ours."""
        self._init_state()


def _quiet_disconnect(conn: Any) -> None:
    try:
        conn.disconnect()
    except Exception:
        pass
