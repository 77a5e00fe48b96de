"""A throwaway PostgreSQL cluster for tests that must stop, crash or restart
the server: never the shared one.

``TempCluster`` runs ``initdb`` into a temporary directory and serves it on
a spare loopback port (TCP only; its socket directory is the temporary
directory, so it never touches ``/var/run/postgresql``). ``restart`` and
``crash`` (an immediate stop: no checkpoint, WAL recovery at the next start)
act on that cluster alone; ``remove`` stops it and deletes the directory.

PostgreSQL refuses to run as root, so as root the binaries run as the
``postgres`` OS user (``runuser``), which owns the directory. The binaries:
``QUEUERT_PG_BINDIR``, else the newest ``/usr/lib/postgresql/*/bin`` (Debian),
else ``pg_config --bindir``, else ``initdb`` on PATH.

    with TempCluster() as pg:          # initdb + start
        psycopg.connect(pg.dsn)        # database "postgres", user "postgres", trust
        pg.restart()
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg

__all__ = ["ClusterError", "TempCluster", "find_bindir"]

# Headroom for torture runs: replaced workers leave backends behind until
# the server notices their sockets closed.
DEFAULT_SETTINGS = {
    "max_connections": "200",
    "listen_addresses": "127.0.0.1",
    "fsync": "on",
    "synchronous_commit": "on",
}


class ClusterError(RuntimeError):
    """The temporary cluster could not be created, started or stopped."""


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", path.parent.name))


def find_bindir() -> Path:
    """Directory holding ``initdb``, ``pg_ctl`` and ``postgres``."""
    env = os.environ.get("QUEUERT_PG_BINDIR")
    candidates: list[Path] = [Path(env)] if env else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise ClusterError(
        "no PostgreSQL server binaries (initdb, pg_ctl): install the postgresql package "
        "(scripts/ensure-postgres-binaries.sh does) or set QUEUERT_PG_BINDIR"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def spare_port() -> int:
    """A loopback port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TempCluster:
    """initdb'd PostgreSQL on a spare loopback port; see the module docs."""

    def __init__(self, settings: dict[str, str] | None = None, prefix: str = "queuert-pg-") -> None:
        self.bindir = find_bindir()
        self.settings = {**DEFAULT_SETTINGS, **(settings or {})}
        self.prefix = prefix
        self.root: Path | None = None
        self.port = 0
        self.restarts = 0
        self._as_postgres = os.geteuid() == 0

    # -- paths and commands ------------------------------------------------

    @property
    def datadir(self) -> Path:
        assert self.root is not None, "cluster not created"
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        assert self.root is not None, "cluster not created"
        return self.root / "server.log"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        # postgres may not be allowed into the caller's working directory
        cwd = str(self.root) if self.root is not None and self.root.exists() else "/"
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=timeout, cwd=cwd)
        if check and out.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout}{out.stderr}{self.log_tail()}")
        return out

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.logfile.read_text(errors="replace")
        except (OSError, AssertionError):
            return ""
        return "\n--- server log\n" + "\n".join(text.splitlines()[-lines:])

    # -- life cycle --------------------------------------------------------

    def create(self) -> None:
        """initdb (trust authentication, UTF8) into a new temporary directory.

        Clusters of this prefix left by processes that are gone (killed before
        they could remove theirs, or a failed run kept for inspection) are
        stopped and removed first."""
        self.sweep_orphans()
        self.root = Path(tempfile.mkdtemp(prefix=self.prefix))
        (self.root / "owner.pid").write_text(str(os.getpid()))
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.datadir), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--locale=C", "--no-sync")

    def start(self) -> None:
        """Start on a spare port (the first start picks it, restarts keep it)."""
        assert self.root is not None, "create() first"
        tries = 1 if self.port else 5
        for attempt in range(tries):
            port = self.port or spare_port()
            opts = [f"-p {port}", f"-c unix_socket_directories={self.root}"]
            opts += [f"-c {k}={v}" for k, v in self.settings.items()]
            out = self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-o", " ".join(opts),
                            "-w", "-t", "120", "start", check=False)
            if out.returncode == 0:
                self.port = port
                self._wait_ready()
                return
            # another process took the port between our probe and the start
            if attempt + 1 == tries:
                raise ClusterError(f"pg_ctl start failed ({out.returncode}):\n{out.stdout}{out.stderr}{self.log_tail()}")

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=3) as c:
                    c.execute("SELECT 1")
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def sweep_orphans(self) -> None:
        for root in Path(tempfile.gettempdir()).glob(f"{self.prefix}*"):
            try:
                owner = int((root / "owner.pid").read_text())
            except (OSError, ValueError):
                continue
            if _pid_alive(owner):
                continue
            orphan = copy.copy(self)
            orphan.root = root
            try:
                orphan.stop("immediate")
            except ClusterError:
                pass
            shutil.rmtree(root, ignore_errors=True)

    def running(self) -> bool:
        if self.root is None or not self.datadir.exists():
            return False
        return self._run("pg_ctl", "-D", str(self.datadir), "status", check=False).returncode == 0

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (clean shutdown, sessions terminated) or ``immediate`` (a
        crash as far as the data is concerned: recovery on the next start)."""
        if self.running():
            self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "-t", "120", "stop")

    def restart(self, mode: str = "fast") -> float:
        """Stop (``fast`` or ``immediate``) and start again on the same port;
        returns the seconds the server was unreachable for new connections."""
        t0 = time.monotonic()
        self.stop(mode)
        self.start()
        self.restarts += 1
        return time.monotonic() - t0

    def crash(self) -> float:
        """An immediate stop and a start: every backend dies at once, nothing
        is checkpointed, the next start replays the WAL."""
        return self.restart("immediate")

    def remove(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop()
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None

    def __enter__(self) -> TempCluster:
        self.create()
        try:
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()
