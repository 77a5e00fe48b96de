"""Real faults for tests: a TCP proxy in front of PostgreSQL that loses,
stalls or cuts what it carries, and helpers that end a backend at the moment
it is doing something. No flags written into the engine's rows: the network
or the server really misbehaves, and the code under test finds out the way it
would in production. (A server restart or crash: ``pgcluster.TempCluster``.)

FaultProxy runs on its own thread and event loop, so sync code, async code
and worker subprocesses can all be sent through it::

    with FaultProxy(dsn) as proxy:
        worker_dsn = proxy.dsn(dsn)               # same server, through the proxy
        fault = proxy.lose_commit_reply(b"queuert.claim(")
        ...                                       # start the worker on worker_dsn
        assert fault.wait(30)                     # the claim committed, its reply never arrived

Faults armed on the proxy fire once, on the first connection whose client
bytes contain the pattern (SQL text travels verbatim in Query and Parse
messages). The proxy reads PostgreSQL's message framing on the way back, so
it can tell when the server has finished the transaction (ReadyForQuery).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = [
    "Fault",
    "FaultProxy",
    "backends_of_process",
    "terminate_backend",
    "terminate_when",
    "wait_for_backend",
]

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104


class Fault:
    """One armed fault; ``fired`` is set when it struck (``wait`` for it)."""

    def __init__(self, action: str, pattern: bytes) -> None:
        self.action = action
        self.pattern = pattern
        self.fired = threading.Event()
        self.released = threading.Event()
        self.connection: _Link | None = None

    def wait(self, timeout: float) -> bool:
        """True once the fault struck; False if it did not within ``timeout``."""
        return self.fired.wait(timeout)

    def release(self) -> None:
        """stall_replies: deliver what was held and forward again."""
        link = self.connection
        if link is None:
            self.released.set()
            return

        def on_loop() -> None:  # both on the proxy's loop: nothing overtakes the held replies
            self.released.set()
            link.flush_held()

        link.proxy._call(on_loop)


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, proxy: FaultProxy, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client = client
        self.server = server
        self.fault: Fault | None = None
        self.frozen = False
        self.closed = False
        self.single_byte_replies = 0  # SSL/GSS negotiation answers: one byte, no framing
        self.startup_seen = False
        self.reply_buf = b""
        self.held: list[bytes] = []
        self.tail = b""  # end of the previous client chunk: a pattern may span two

    # -- client -> server ------------------------------------------------------

    def from_client(self, data: bytes) -> bool:
        """Forward ``data`` upstream unless a fault says otherwise; False ends the link."""
        if not self.startup_seen:
            self._startup(data)
        if self.fault is None:
            window = self.tail + data
            self.tail = data[-256:]
            fault = self.proxy._take_fault(window)
            if fault is not None:
                self.fault = fault
                fault.connection = self
                if fault.action == "cut_before":
                    fault.fired.set()
                    self.abort()
                    return False
        if self.frozen:
            self.proxy.dropped += len(data)
            return True
        self.server.write(data)
        return True

    def _startup(self, data: bytes) -> None:
        # SSLRequest / GSSENCRequest are answered with one unframed byte
        while len(data) >= 8:
            length, code = struct.unpack("!ii", data[:8])
            if length == 8 and code in (_SSL_REQUEST, _GSSENC_REQUEST):
                self.single_byte_replies += 1
                data = data[8:]
                continue
            self.startup_seen = True
            return
        self.startup_seen = bool(data)

    # -- server -> client ------------------------------------------------------

    def from_server(self, data: bytes) -> None:
        if self.frozen:
            self.proxy.dropped += len(data)
            return
        while self.single_byte_replies and data:
            self.client.write(data[:1])
            data = data[1:]
            self.single_byte_replies -= 1
        if self.fault is None or self.fault.action not in ("lose_commit_reply", "stall_replies"):
            self.client.write(data)
            return
        self.reply_buf += data
        for message in self._messages():
            self._route(message)

    def _messages(self) -> list[bytes]:
        out = []
        while len(self.reply_buf) >= 5:
            length = struct.unpack("!i", self.reply_buf[1:5])[0]
            if len(self.reply_buf) < 1 + length:
                break
            out.append(self.reply_buf[: 1 + length])
            self.reply_buf = self.reply_buf[1 + length:]
        return out

    def _route(self, message: bytes) -> None:
        fault = self.fault
        assert fault is not None
        if fault.action == "stall_replies":
            if fault.released.is_set():
                self.client.write(message)
            else:
                self.held.append(message)
                if message[:1] == b"Z":  # the server answered in full: the stall is on
                    fault.fired.set()
            return
        # lose_commit_reply: forward replies while the transaction is open;
        # drop the replies that end it and cut the connection
        self.held.append(message)
        if message[:1] == b"Z":
            status = message[5:6]
            if status in (b"T", b"E"):
                self.flush_held()
            else:
                self.held.clear()
                fault.fired.set()
                self.proxy.lost_replies += 1
                self.abort()

    def flush_held(self) -> None:
        for message in self.held:
            self.client.write(message)
        self.held.clear()

    def abort(self) -> None:
        """Close both sides at once with RST (no FIN, no goodbye)."""
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.server):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            writer.transport.abort()


class FaultProxy:
    """A TCP proxy to the server of ``upstream`` (a conninfo) on a spare
    loopback port, with faults to arm. See the module docs."""

    def __init__(self, upstream: str) -> None:
        params = conninfo_to_dict(upstream)
        self.upstream_host = str(params.get("host") or "127.0.0.1")
        self.upstream_port = int(params.get("port") or 5432)
        self.port = 0
        self.accepted = 0
        self.dropped = 0
        self.lost_replies = 0
        self._links: list[_Link] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ------------------------------------------------------------

    def start(self) -> FaultProxy:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="fault-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        assert self.port, "fault proxy did not start"
        return self

    def close(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for link in list(self._links):
                link.abort()
            self._loop.stop()  # type: ignore[union-attr]

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def dsn(self, dsn: str) -> str:
        """``dsn`` through the proxy (no TLS or GSS encryption, so the proxy
        can read the message framing)."""
        params: dict[str, Any] = dict(conninfo_to_dict(dsn))
        params.update(host="127.0.0.1", port=str(self.port), sslmode="disable", gssencmode="disable")
        return make_conninfo(**params)

    # -- faults ------------------------------------------------------------------

    def lose_commit_reply(self, pattern: bytes) -> Fault:
        """On the connection that sends ``pattern``: forward replies while
        its transaction is open, then drop the server's answer to the
        statement that ends it (COMMIT, or the autocommit statement itself)
        and cut the connection. The transaction committed; the client cannot
        know."""
        return self._arm("lose_commit_reply", pattern)

    def cut_before(self, pattern: bytes) -> Fault:
        """Cut the connection that is about to send ``pattern``, before the
        server sees it: the statement never runs."""
        return self._arm("cut_before", pattern)

    def stall_replies(self, pattern: bytes) -> Fault:
        """Hold every reply on the connection that sent ``pattern`` (fired
        once the server has answered in full) until ``fault.release()``."""
        return self._arm("stall_replies", pattern)

    def freeze(self) -> None:
        """Every current connection goes half-open: bytes both ways are read
        and dropped, no FIN, no RST. New connections are forwarded."""
        def freeze_all() -> None:
            for link in self._links:
                link.frozen = True

        self._call(freeze_all)

    def cut_all(self) -> None:
        """Abort every current connection (RST both ways)."""
        def abort_all() -> None:
            for link in list(self._links):
                link.abort()

        self._call(abort_all)

    def _arm(self, action: str, pattern: bytes) -> Fault:
        fault = Fault(action, pattern)
        with self._lock:
            self._faults.append(fault)
        return fault

    def _take_fault(self, window: bytes) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.pattern in window:
                    self._faults.remove(fault)
                    return fault
        return None

    def _call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the proxy's loop and wait for it."""
        assert self._loop is not None, "proxy not started"
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    # -- plumbing ----------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        link = _Link(self, writer, up_writer)
        self._links.append(link)

        async def client_to_server() -> None:
            while not link.closed:
                data = await reader.read(65536)
                if not data or not link.from_client(data):
                    break
                await up_writer.drain()

        async def server_to_client() -> None:
            while not link.closed:
                data = await up_reader.read(65536)
                if not data:
                    break
                link.from_server(data)
                await writer.drain()

        try:
            await asyncio.gather(client_to_server(), server_to_client())
        except (ConnectionError, OSError):
            pass
        finally:
            # a frozen link stays half-open (and listed, for cut_all/close)
            if not link.frozen:
                if not link.closed:
                    link.closed = True
                    writer.close()
                    up_writer.close()
                self._links.remove(link)


# -- backends --------------------------------------------------------------------


def wait_for_backend(admin_dsn: str, query_like: str, *, state: str | None = "active",
                     timeout: float = 60.0) -> int:
    """Pid of a backend whose current query matches ``query_like`` (SQL
    LIKE) in ``state``, once there is one. ``timeout`` only bounds a test
    that went wrong; the wait ends at the event."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        while True:
            row = c.execute(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid() "
                "AND (%s::text IS NULL OR state = %s) ORDER BY backend_start LIMIT 1",
                (query_like, state, state),
            ).fetchone()
            if row is not None:
                return int(row[0])
            if time.monotonic() > deadline:
                raise TimeoutError(f"no backend running {query_like!r} ({state}) within {timeout}s")
            time.sleep(0.02)


def terminate_backend(admin_dsn: str, pid: int) -> bool:
    """pg_terminate_backend, and wait until the backend is gone."""
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        row = c.execute("SELECT pg_terminate_backend(%s, 60000)", (pid,)).fetchone()
    return bool(row and row[0])


def terminate_when(admin_dsn: str, query_like: str, *, state: str | None = "active",
                   timeout: float = 60.0) -> int:
    """Wait for a backend running ``query_like``, terminate it, return its pid:
    e.g. the connection of a handler inside ``pg_sleep``, or of a statement
    blocked on a lock a test holds."""
    pid = wait_for_backend(admin_dsn, query_like, state=state, timeout=timeout)
    terminate_backend(admin_dsn, pid)
    return pid


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _local_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets process ``pid`` holds (Linux /proc)."""
    inodes = _socket_inodes(pid)
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def backends_of_process(admin_dsn: str, pid: int, application_name: str | None = None) -> list[int]:
    """Pids of the backends serving the connections of local process ``pid``
    (matched by client port), optionally only those of one application_name:
    to end one worker process's connections among several."""
    ports = sorted(_local_ports(pid))
    with psycopg.connect(admin_dsn, autocommit=True) as c:
        rows = c.execute(
            "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s) "
            "AND client_addr IS NOT NULL AND (%s::text IS NULL OR application_name = %s) ORDER BY pid",
            (ports, application_name, application_name),
        ).fetchall()
    return [int(r[0]) for r in rows]
