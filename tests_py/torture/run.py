"""The torture run: a real workload under crashes, lost connections and a
PostgreSQL restart, then a check in the database that nothing was lost,
nothing completed twice and every chain finished as its type says.

    python tests_py/torture/run.py                 # full: 20,000 chains, 6 workers
    python tests_py/torture/run.py --short         # ~1,500 chains (pytest runs this)
    python tests_py/torture/run.py --dsn URL       # on your server (restart only with --restart yes)

What it does:

1. starts its own PostgreSQL (``initdb`` into a temporary directory, a spare
   loopback port: ``tests_py/pgcluster.py``), or uses the server of
   ``--dsn``; creates a database ``queuert_torture_<pid>``, migrates queuert
   and creates the side tables the handlers write (see ``checks.py``,
   ``app.py``);
2. starts worker processes (``queuert worker app:worker``), half in staged
   mode (types ``s.*``), half in atomic mode (``a.*``), lease 2 s;
3. a producer creates the chains in batches of ``start_chains`` (each batch
   in one transaction with a row per chain in ``torture_chain`` saying what
   the chain must end as): single jobs, 3-step continuations (the middle step
   a sync handler), loops of 2-5 iterations, fan-in jobs blocked on 5-50
   chains of the same batch, scheduled jobs (0.5-8 s ahead), and a capped
   type (``max_attempts = 3``) whose "always fail" chains must end ``failed``
   after exactly 3 attempts. Every type except the capped one also fails at
   random (``--fail-rate``) and retries with a small backoff;
4. meanwhile the chaos loop SIGKILLs a random worker every ``--kill-every``
   seconds (and starts a replacement in the same mode), terminates random
   worker connections with ``pg_terminate_backend`` every
   ``--terminate-every`` seconds, and, once 30 % of the chains completed,
   restarts PostgreSQL (``--restart-mode immediate``, the default: a crash,
   every backend killed, WAL replayed at start; ``fast``: a clean shutdown).
   Its own cluster is restarted with ``pg_ctl``; a ``--dsn`` server only
   with ``--restart yes``, through ``pg_ctlcluster`` (a local Debian cluster);
5. when no job is pending, running or blocked (and the minimum numbers of
   kills / terminations / restarts happened), stops the workers with SIGTERM
   and checks the invariants (``checks.check``). One summary line; exit
   status 1 on any violation. Its own cluster is removed afterwards (kept,
   stopped, after a failure: the log says where).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

HERE = Path(__file__).resolve().parent
# checks.py beside this file; pgcluster.py in tests_py/
for _path in (str(HERE.parent), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from checks import CAPPED_MAX_ATTEMPTS, SIDE_TABLES, check  # noqa: E402
from pgcluster import TempCluster  # noqa: E402


def log(msg: str) -> None:
    print(f"[torture {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# database set-up


def dsn_for(base: str, dbname: str) -> str:
    params = conninfo_to_dict(base)
    params["dbname"] = dbname
    return make_conninfo(**params)  # type: ignore[arg-type]


KINDS = ("single", "step1", "step2", "step3", "loop", "sched", "capped", "join")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def setup_database(base: str, name: str, fail_backoff_ms: int) -> str:
    from queuert.migrate import migrate

    with psycopg.connect(base, autocommit=True) as admin:
        # databases of earlier runs that were killed (a failed run keeps its
        # database on purpose; its process is gone, so it goes now)
        for (old,) in admin.execute(
            "SELECT datname FROM pg_database WHERE datname ~ '^queuert_torture_[0-9]+$'"
        ).fetchall():
            if old != name and find_cluster(base) is not None and not _pid_alive(int(old.rsplit("_", 1)[1])):
                admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(old)))
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = dsn_for(base, name)
    migrate(dsn, schema="queuert")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SIDE_TABLES)
        for p in ("a", "s"):
            for kind in KINDS:
                conn.execute(
                    "SELECT queuert.set_job_type(type_name => %s, max_attempts => %s, "
                    "backoff_initial => %s::interval, backoff_multiplier => 2, "
                    "backoff_max => '500 milliseconds', lease => '2 seconds')",
                    (
                        f"{p}.{kind}",
                        CAPPED_MAX_ATTEMPTS if kind == "capped" else None,
                        f"{fail_backoff_ms} milliseconds",
                    ),
                )
    return dsn


def drop_database(base: str, name: str) -> None:
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ---------------------------------------------------------------------------
# workers


@dataclass
class WorkerProc:
    mode: str
    proc: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Counters:
    kills: int = 0
    terminations: int = 0
    restarts: int = 0
    started_workers: int = 0
    created_chains: int = 0
    producer_retries: int = 0
    notes: list[str] = field(default_factory=list)


class Workers:
    def __init__(self, dsn: str, log_dir: Path, concurrency: dict[str, int], fail_rate: float):
        self.dsn = dsn
        self.log_dir = log_dir
        self.concurrency = concurrency
        self.fail_rate = fail_rate
        self.procs: list[WorkerProc] = []
        self.seq = 0
        exe = Path(sys.executable).parent / "queuert"
        self.cmd = [str(exe), "worker", "app:worker"] if exe.exists() else [
            sys.executable, "-c", "from queuert.cli import main; main()", "worker", "app:worker"
        ]

    def start(self, mode: str) -> WorkerProc:
        self.seq += 1
        path = self.log_dir / f"worker-{self.seq:03d}-{mode}.log"
        env = dict(os.environ)
        env.update(
            TORTURE_DSN=self.dsn,
            TORTURE_MODE=mode,
            TORTURE_CONCURRENCY=str(self.concurrency[mode]),
            TORTURE_FAIL_RATE=str(self.fail_rate),
            PYTHONUNBUFFERED="1",
        )
        with open(path, "wb") as out:
            proc = subprocess.Popen(self.cmd, cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT)
        wp = WorkerProc(mode, proc, path)
        self.procs.append(wp)
        return wp

    def alive(self) -> list[WorkerProc]:
        return [w for w in self.procs if w.proc.poll() is None]

    def check_crashed(self, killed: set[int]) -> list[str]:
        """Workers that exited on their own (not killed by us): a defect."""
        out = []
        for w in self.procs:
            rc = w.proc.poll()
            if rc is not None and w.proc.pid not in killed:
                out.append(f"worker pid {w.proc.pid} ({w.mode}) exited with {rc}; log {w.log_path}")
        return out

    def stop_all(self, timeout: float = 20.0) -> None:
        for w in self.alive():
            w.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for w in self.procs:
            left = max(0.1, deadline - time.monotonic())
            try:
                w.proc.wait(left)
            except subprocess.TimeoutExpired:
                w.proc.send_signal(signal.SIGUSR1)  # app.py: stacks into the log
                time.sleep(1)
                w.proc.kill()
                w.proc.wait()


# ---------------------------------------------------------------------------
# workload


def make_batch(rng: random.Random, n: int, mode_of: Any) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """``n`` chains: start_chains items and torture_chain rows."""
    items: list[dict[str, Any]] = []
    rows: list[tuple[Any, ...]] = []
    joinable: list[str] = []
    n_join = max(1, n // 50)
    for _ in range(n - n_join):
        cid = str(uuid.uuid4())
        mode = mode_of()
        p = "a" if mode == "atomic" else "s"
        r = rng.random()
        loop_n = None
        always_fail = False
        item: dict[str, Any] = {"id": cid}
        if r < 0.45:
            kind = "single"
            item.update(type_name=f"{p}.single", input={"k": "single"})
        elif r < 0.62:
            kind = "step1"
            item.update(type_name=f"{p}.step1", input={"k": "steps"})
        elif r < 0.75:
            kind = "loop"
            loop_n = rng.randint(1, 4)
            item.update(type_name=f"{p}.loop", input={"n": loop_n, "i": 0})
        elif r < 0.90:
            kind = "sched"
            item.update(type_name=f"{p}.sched", input={"k": "sched"},
                        schedule_after_ms=rng.randint(500, 8000))
        else:
            kind = "capped"
            always_fail = rng.random() < 0.4
            item.update(type_name=f"{p}.capped", input={"always_fail": always_fail})
        if kind != "capped":
            joinable.append(cid)
        # a little priority noise: FIFO is not what is tested here
        if rng.random() < 0.1:
            item["priority"] = rng.randint(-2, 2)
        items.append(item)
        rows.append((cid, kind, mode, loop_n, always_fail))
    for _ in range(n_join):
        cid = str(uuid.uuid4())
        mode = mode_of()
        p = "a" if mode == "atomic" else "s"
        k = min(len(joinable), rng.randint(5, 50))
        blockers = rng.sample(joinable, k)
        items.append({"id": cid, "type_name": f"{p}.join", "input": {"n": k}, "blockers": blockers})
        rows.append((cid, "join", mode, k, False))
    return items, rows


class Producer(threading.Thread):
    """Creates the chains in batches; survives lost connections and restarts.
    A batch (``start_chains`` plus its ``torture_chain`` rows) is one
    transaction; after an error whose commit state is unknown it checks
    whether the batch's chains exist before creating it again."""

    def __init__(self, dsn: str, chains: int, batch: int, pause: float, seed: int, counters: Counters):
        super().__init__(daemon=True, name="producer")
        self.dsn = dsn
        self.chains = chains
        self.batch = batch
        self.pause = pause
        self.rng = random.Random(seed)
        self.counters = counters
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            self.done.set()

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        made = 0
        modes = ["staged", "atomic"]
        while made < self.chains:
            n = min(self.batch, self.chains - made)
            items, rows = make_batch(self.rng, n, lambda: self.rng.choice(modes))
            ids = [r[0] for r in rows]
            for attempt in range(200):
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self.dsn, autocommit=False, connect_timeout=5)
                    with conn.transaction():
                        found = conn.execute(
                            "SELECT count(*) FROM torture_chain WHERE chain_id = ANY(%s::uuid[])", (ids,)
                        ).fetchone()
                        if found and found[0] == len(ids):
                            break  # the lost commit did happen
                        conn.execute("SELECT count(*) FROM queuert.start_chains(%s::jsonb)", (json.dumps(items),))
                        with conn.cursor() as cur:
                            cur.executemany(
                                "INSERT INTO torture_chain (chain_id, kind, mode, n, always_fail) "
                                "VALUES (%s, %s, %s, %s, %s)",
                                rows,
                            )
                    break
                except psycopg.OperationalError as exc:
                    self.counters.producer_retries += 1
                    log(f"producer: {type(exc).__name__}: {str(exc).strip()[:120]}; retrying the batch")
                    if conn is not None:
                        conn.close()
                    conn = None
                    time.sleep(0.2)
            else:
                raise RuntimeError("producer: could not create a batch after 200 attempts")
            made += n
            self.counters.created_chains = made
            time.sleep(self.pause)
        if conn is not None:
            conn.close()


# ---------------------------------------------------------------------------
# chaos


def find_cluster(base: str) -> tuple[str, str] | None:
    """(version, name) of the local cluster serving ``base``'s port."""
    params = conninfo_to_dict(base)
    host = str(params.get("host") or "")
    if host not in ("", "127.0.0.1", "localhost", "::1") and not host.startswith("/"):
        return None
    port = str(params.get("port") or "5432")
    if shutil.which("pg_lsclusters") is None:
        return None
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == port:
            return parts[0], parts[1]
    return None


def wait_for_server(base: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(base, connect_timeout=3) as c:
                c.execute("SELECT 1")
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def restart_debian_cluster(base: str, cluster: tuple[str, str], mode: str) -> float:
    """Restart the local Debian cluster serving ``base`` (``--dsn`` runs)."""
    t0 = time.monotonic()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", cluster[0], cluster[1], "restart", "-m", mode],
        check=True,
        capture_output=True,
    )
    wait_for_server(base)
    return time.monotonic() - t0


def terminate_connections(base: str, dbname: str, rng: random.Random) -> int:
    with psycopg.connect(base, autocommit=True, connect_timeout=5) as c:
        rows = c.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name LIKE 'queuert-%%' AND pid <> pg_backend_pid() "
            "ORDER BY random() LIMIT %s",
            (dbname, rng.randint(1, 3)),
        ).fetchall()
    return sum(1 for r in rows if r[0])


def progress(dsn: str) -> tuple[int, int, int] | None:
    """(active jobs, completed chains, chains) or None when unreachable."""
    try:
        with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as c:
            row = c.execute(
                "SELECT (SELECT count(*) FROM queuert.job WHERE status IN ('pending', 'running', 'blocked')),"
                " (SELECT count(*) FROM queuert.job WHERE chain_index = 0 AND chain_completed_at IS NOT NULL),"
                " (SELECT count(*) FROM torture_chain)"
            ).fetchone()
            assert row is not None
            return int(row[0]), int(row[1]), int(row[2])
    except psycopg.OperationalError:
        return None


# ---------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", default=None,
                    help="run on this server (any database) instead of a temporary cluster of its own")
    ap.add_argument("--short", action="store_true", help="the shortened form run by `make test`")
    ap.add_argument("--chains", type=int)
    ap.add_argument("--workers", type=int, help="worker processes (half staged, half atomic)")
    ap.add_argument("--kill-every", type=float, help="seconds between SIGKILLs")
    ap.add_argument("--terminate-every", type=float, help="seconds between pg_terminate_backend rounds")
    ap.add_argument("--min-kills", type=int)
    ap.add_argument("--min-terminations", type=int)
    ap.add_argument("--restart", choices=("yes", "no"), default=None,
                    help="restart PostgreSQL once (default: yes on the run's own cluster, no with --dsn)")
    ap.add_argument("--restart-mode", choices=("immediate", "fast"), default="immediate",
                    help="immediate: a crash (no checkpoint, WAL replay); fast: a clean shutdown")
    ap.add_argument("--fail-rate", type=float, default=0.1)
    ap.add_argument("--timeout", type=float, help="seconds before giving up on convergence")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the database, its cluster and the worker logs")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (a test runner giving up) unwinds like an error: workers
    # stopped, the run's own cluster stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    restart = args.restart == "yes" if args.restart is not None else args.dsn is None
    if args.dsn is not None:
        restarter: Callable[[], float] | None = None
        if restart:
            debian = find_cluster(args.dsn)
            if debian is None:
                log("cannot restart PostgreSQL: no local pg_ctlcluster cluster serves this DSN")
                return 2
            restarter = lambda: restart_debian_cluster(args.dsn, debian, args.restart_mode)  # noqa: E731
        return run(args, args.dsn, restarter)

    own = TempCluster(prefix="queuert-torture-pg-")
    ok = False
    try:
        own.create()
        own.start()
        log(f"own PostgreSQL cluster in {own.root}, port {own.port}")
        ok = run(args, own.dsn, (lambda: own.restart(args.restart_mode)) if restart else None) == 0
    finally:
        if ok and not args.keep:
            own.remove()
        else:
            own.stop()
            if own.root is not None:
                log(f"kept the stopped cluster in {own.root} (start: pg_ctl -D {own.datadir} "
                    f"-o '-p {own.port} -c unix_socket_directories={own.root}' start, as postgres)")
    return 0 if ok else 1


def run(args: argparse.Namespace, base: str, restarter: Callable[[], float] | None) -> int:
    """One torture run on the server of ``base``; 0 when every check passed."""
    short = args.short
    chains = args.chains or (1500 if short else 20000)
    n_workers = args.workers or (4 if short else 6)
    kill_every = args.kill_every or (2.5 if short else 3.0)
    terminate_every = args.terminate_every or (4.0 if short else 5.0)
    min_kills = args.min_kills if args.min_kills is not None else (3 if short else 5)
    min_terms = args.min_terminations if args.min_terminations is not None else 1
    timeout = args.timeout or (150.0 if short else 1200.0)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)

    name = f"queuert_torture_{os.getpid()}"
    restart = restarter is not None
    log(f"seed {seed}; {chains} chains, {n_workers} workers, "
        f"restart={args.restart_mode if restart else 'no'}; database {name}")
    dsn = setup_database(base, name, fail_backoff_ms=20)
    log_dir = Path(tempfile.mkdtemp(prefix="queuert-torture-"))
    counters = Counters()
    workers = Workers(dsn, log_dir, {"staged": 8, "atomic": 4}, args.fail_rate)
    killed: set[int] = set()
    violations: list[str] = []
    t0 = time.monotonic()
    try:
        for i in range(n_workers):
            workers.start("staged" if i % 2 == 0 else "atomic")
        producer = Producer(dsn, chains, batch=500 if not short else 250, pause=0.3, seed=rng.randrange(1 << 30),
                            counters=counters)
        producer.start()

        next_kill = time.monotonic() + kill_every * rng.uniform(0.5, 1.5)
        next_term = time.monotonic() + terminate_every * rng.uniform(0.5, 1.5)
        next_report = time.monotonic() + 5
        restart_done = not restart
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if producer.error is not None:
                raise RuntimeError(f"producer failed: {producer.error!r}")
            crashed = workers.check_crashed(killed)
            if crashed:
                violations.extend(crashed)
                break
            if now >= next_kill:
                alive = workers.alive()
                if alive:
                    victim = rng.choice(alive)
                    victim.proc.send_signal(signal.SIGKILL)
                    killed.add(victim.proc.pid)
                    victim.proc.wait()
                    counters.kills += 1
                    workers.start(victim.mode)
                next_kill = now + kill_every * rng.uniform(0.5, 1.5)
            if now >= next_term:
                try:
                    counters.terminations += terminate_connections(base, name, rng)
                except psycopg.OperationalError as exc:
                    log(f"terminate: {exc}")
                next_term = now + terminate_every * rng.uniform(0.5, 1.5)
            p = progress(dsn)
            if restarter is not None and not restart_done and p is not None and producer.done.is_set() \
                    and p[1] >= 0.3 * chains:
                log(f"restarting PostgreSQL ({args.restart_mode}; completed chains {p[1]}/{chains})")
                took = restarter()
                counters.restarts += 1
                restart_done = True
                log(f"PostgreSQL back after {took:.1f}s")
                continue
            if now >= next_report and p is not None:
                log(f"active jobs {p[0]}, completed chains {p[1]}/{p[2]} (created {counters.created_chains}), "
                    f"kills {counters.kills}, terminations {counters.terminations}, restarts {counters.restarts}")
                next_report = now + 5
            if (
                p is not None
                and producer.done.is_set()
                and p[0] == 0
                and p[2] == chains
                and restart_done
                and counters.kills >= min_kills
                and counters.terminations >= min_terms
            ):
                break
            if now > deadline:
                violations.append(f"no convergence within {timeout:.0f}s (last progress {p})")
                break
            time.sleep(0.25)
        producer.join(timeout=30)
    finally:
        workers.stop_all()
    duration = time.monotonic() - t0
    violations.extend(workers.check_crashed(killed | {w.proc.pid for w in workers.procs if w.proc.returncode in (0, -15)}))
    wait_for_server(base)
    figures, found = check(dsn)
    violations.extend(found)
    ok = not violations
    summary = (
        f"torture {'OK' if ok else 'FAILED'}: chains={figures['chains']} jobs={figures['jobs']} "
        f"atomic_jobs={figures['atomic_jobs']} staged_jobs={figures['staged_jobs']} "
        f"workers={workers.seq} kills={counters.kills} conn_terminations={counters.terminations} "
        f"restarts={counters.restarts} retries={figures['retries']} "
        f"failed_as_expected={figures['failed_as_expected']} failed_after_crashes={figures['failed_after_crashes']} "
        f"staged_reruns={figures['staged_reruns']} lost={figures['lost']} duplicates={figures['duplicates']} "
        f"violations={len(violations)} duration={duration:.0f}s seed={seed}"
    )
    for line in violations:
        log(f"VIOLATION {line}")
    print(summary, flush=True)
    if ok and not args.keep:
        drop_database(base, name)
        shutil.rmtree(log_dir, ignore_errors=True)
    else:
        log(f"kept database {name} and worker logs in {log_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
