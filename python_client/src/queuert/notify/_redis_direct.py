"""The Redis notifier's direct publish: the caller's thread writes the batch
straight to Redis, on a connection in ``CLIENT REPLY OFF`` mode, and waits
for nothing.

Handing a hint to the notifier's I/O thread costs that thread a wake-up, an
event loop turn and redis-py's asyncio machinery per commit (about 200 us of
CPU, and the thread's scheduling delay before the hint leaves). Here the
caller packs the command (redis-py's packer) and makes one non-blocking
``send``: a few microseconds, and the hint is on the wire before the caller
goes on. The server sends no replies, so nobody reads them.

The connection is made (handshake by redis-py: AUTH, SELECT, ...) by the I/O
thread, through a worker thread, never by a caller. A caller that finds no
connection, a connection that the server closed, or a socket whose buffer is
full (a stalled server) gives the batch to the I/O thread's path instead
(which drops it with a warning while Redis is down); a half-written command
closes the connection, so Redis never runs it, and the whole batch goes the
other way. Standalone Redis over TCP or a Unix socket only: TLS connections
and Redis Cluster keep the I/O thread's path.

:meth:`DirectPublisher.barrier` (for ``flush``) turns replies back on for
one ``CLIENT REPLY ON``: its ``+OK`` comes back once Redis ran every command
written before it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis

__all__ = ["DirectPublisher"]

logger = logging.getLogger("queuert.notify")


class DirectPublisher:
    """One reply-less connection, written by any thread under a lock."""

    def __init__(self, url: str, connect_timeout: float, name: str) -> None:
        self.url = url
        self.name = name  # CLIENT SETNAME: an operator sees who it is
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._conn: Any = None  # a redis.Connection, handshaken, replies off
        self._sock: socket.socket | None = None
        self._pid = os.getpid()
        self._connecting = False
        self._retry_at = 0.0  # monotonic: no new connection attempt before
        #: batches written since the last barrier (a flush has to wait for them)
        self.unconfirmed = False
        #: hints written (counted under the lock: callers on many threads)
        self.sent = 0

    @staticmethod
    def usable_for(url: str) -> bool:
        return url.startswith(("redis://", "unix://"))

    @property
    def connected(self) -> bool:
        return self._sock is not None and self._pid == os.getpid()

    def wants_connection(self) -> bool:
        """True once per missing connection (the caller then runs connect())."""
        with self._lock:
            if self.connected or self._connecting or time.monotonic() < self._retry_at:
                return False
            self._connecting = True
            return True

    def connect(self) -> None:
        """Blocking (a worker thread's job): open, handshake, replies off."""
        conn: Any = None
        try:
            pool = redis.ConnectionPool.from_url(
                self.url,
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
            with self._lock:
                self._connecting = False
                self._retry_at = time.monotonic() + 1.0
            return
        with self._lock:
            self._connecting = False
            if self._pid != os.getpid():  # forked meanwhile
                return
            self._conn, self._sock = conn, sock

    def send(self, args: Sequence[Any], hints: int) -> bool:
        """Write one command carrying ``hints`` hints; False (nothing sent)
        when the caller must take the other path. Never blocks, never raises."""
        with self._lock:
            sock = self._sock
            if sock is None or self._pid != os.getpid():
                return False
            try:
                data = b"".join(self._conn.pack_command(*args))
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
                self._close_locked()
                return False
            if sent == len(data):
                self.unconfirmed = True
                self.sent += hints
                return True
            if sent:  # half a command: closing the connection discards it
                self._close_locked()
            return False

    def barrier(self) -> bool:
        """Blocking: wait until Redis ran every command written so far (a
        worker thread's job). False when the connection broke meanwhile."""
        with self._lock:
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
                self._close_locked()
                return False

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def forget(self) -> None:
        """In a forked child: the parent's socket is not ours to write."""
        self._lock = threading.Lock()
        self._conn = self._sock = None
        self._connecting = False
        self._pid = os.getpid()

    def _close_locked(self) -> None:
        conn, self._conn, self._sock = self._conn, None, None
        self.unconfirmed = False
        if conn is not None:
            _quiet_disconnect(conn)


def _quiet_disconnect(conn: Any) -> None:
    try:
        conn.disconnect()
    except Exception:
        pass
