"""The torture run on SQLite: worker processes on one database file under
kill -9, then a check that nothing was lost, nothing completed twice and
every chain finished as its type says.

    python tests_py/torture/sqlite_run.py            # 6,000 chains, 4 workers
    python tests_py/torture/sqlite_run.py --short    # 600 chains (pytest runs this)

What it does (``run.py`` for SQLite; the same workload and checks):

1. creates a WAL database file in a temporary directory, migrates queuert
   into it and creates the side tables of ``sqlite_checks.py``;
2. starts worker processes (``queuert worker sqlite_app:worker --dsn
   sqlite:///FILE``), half in staged mode (types ``s.*``), half in atomic
   mode (``a.*``), lease 2 s, all on the one file;
3. a producer thread creates the chains (``run.make_batch``: singles,
   3-step continuations, loops, fan-in, scheduled and capped chains), each
   batch in one transaction with its ``torture_chain`` rows;
4. meanwhile SIGKILLs a random worker every ``--kill-every`` seconds and
   starts a replacement in the same mode: the killed worker's running jobs
   are finished by another worker once their leases expire (staged), or
   were never committed (atomic);
5. when no job is pending, running or blocked, stops the workers with
   SIGTERM and runs ``sqlite_checks.check``. One summary line; exit status
   1 on any violation (a worker that exited on its own, a bare sqlite3
   error or a traceback in its log, or a failed check). The engine's typed
   "locked for longer than the busy timeout" warning is no violation: the
   worker says so and goes on.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _path in (str(HERE.parent), str(HERE)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import queuert._sqlite as qs  # noqa: E402
from checks import CAPPED_MAX_ATTEMPTS  # noqa: E402
from run import KINDS, make_batch  # noqa: E402
from sqlite_checks import SIDE_TABLES, check  # noqa: E402


def log(msg: str) -> None:
    print(f"[torture-sqlite {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def setup_database(path: str, fail_backoff: timedelta) -> None:
    qs.migrate(path)
    conn = qs.connect(path)
    conn.executescript(SIDE_TABLES)
    for p in ("a", "s"):
        for kind in KINDS:
            qs.set_job_type(
                conn,
                f"{p}.{kind}",
                max_attempts=CAPPED_MAX_ATTEMPTS if kind == "capped" else None,
                backoff_initial=fail_backoff,
                backoff_multiplier=2,
                backoff_max=timedelta(milliseconds=500),
                lease=timedelta(seconds=2),
            )
    conn.close()


class Workers:
    """The worker processes, their logs, and who exited on their own."""

    def __init__(self, path: str, log_dir: Path, concurrency: dict[str, int], fail_rate: float) -> None:
        self.path = path
        self.log_dir = log_dir
        self.concurrency = concurrency
        self.fail_rate = fail_rate
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.killed: set[int] = set()
        exe = Path(sys.executable).parent / "queuert"
        self.cmd = [str(exe)] if exe.exists() else [sys.executable, "-c", "from queuert.cli import main; main()"]
        self.cmd += ["worker", "sqlite_app:worker", "--dsn", f"sqlite:///{path}"]

    def start(self, mode: str) -> None:
        log_path = self.log_dir / f"worker-{len(self.procs) + 1:03d}-{mode}.log"
        env = {
            **os.environ,
            "TORTURE_DB": self.path,
            "TORTURE_MODE": mode,
            "TORTURE_CONCURRENCY": str(self.concurrency[mode]),
            "TORTURE_FAIL_RATE": str(self.fail_rate),
            "PYTHONUNBUFFERED": "1",
        }
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(self.cmd, cwd=HERE, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((mode, proc, log_path))

    def alive(self) -> list[tuple[str, subprocess.Popen[bytes], Path]]:
        return [w for w in self.procs if w[1].poll() is None]

    def kill_one(self, rng: random.Random) -> None:
        mode, proc, _ = rng.choice(self.alive())
        proc.send_signal(signal.SIGKILL)
        self.killed.add(proc.pid)
        proc.wait()
        self.start(mode)

    def defects(self) -> list[str]:
        """Workers that exited on their own, and any bare sqlite3 error (a
        ``database is locked`` that escaped the engine's typed errors) or
        traceback in a worker's log."""
        out = []
        for mode, proc, log_path in self.procs:
            rc = proc.poll()
            if rc is not None and proc.pid not in self.killed and rc not in (0, -signal.SIGTERM):
                out.append(f"worker pid {proc.pid} ({mode}) exited with {rc}; log {log_path}")
            text = log_path.read_text(errors="replace")
            for bare in ("OperationalError", "Traceback"):
                if bare in text:
                    out.append(f"{bare!r} in the log of worker pid {proc.pid} ({log_path})")
        return out

    def stop_all(self, timeout: float = 20.0) -> None:
        for _mode, proc, _ in self.alive():
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _mode, proc, _ in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGUSR1)  # sqlite_app.py: stacks into the log
                time.sleep(1)
                proc.kill()
                proc.wait()


class Producer(threading.Thread):
    """Creates the chains in batches; a batch (start_chains plus its
    torture_chain rows) is one transaction."""

    def __init__(self, path: str, chains: int, batch: int, pause: float, seed: int) -> None:
        super().__init__(daemon=True, name="producer")
        self.path = path
        self.chains = chains
        self.batch = batch
        self.pause = pause
        self.rng = random.Random(seed)
        self.made = 0
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = qs.connect(self.path, timeout=30)
            modes = ["staged", "atomic"]
            while self.made < self.chains:
                n = min(self.batch, self.chains - self.made)
                items, rows = make_batch(self.rng, n, lambda: self.rng.choice(modes))
                with qs.transaction(conn):
                    qs.start_chains(conn, items)
                    conn.executemany(
                        "INSERT INTO torture_chain (chain_id, kind, mode, n, always_fail) VALUES (?, ?, ?, ?, ?)",
                        rows,
                    )
                self.made += n
                time.sleep(self.pause)
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            self.done.set()


def progress(path: str) -> tuple[int, int]:
    """(active jobs, completed chains)."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM queuert_job WHERE status IN ('pending', 'running', 'blocked')),"
            " (SELECT count(*) FROM queuert_job WHERE chain_index = 0 AND chain_completed_at IS NOT NULL)"
        ).fetchone()
        return int(row[0]), int(row[1])
    finally:
        conn.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", action="store_true", help="the shortened form run by `make test`")
    ap.add_argument("--chains", type=int)
    ap.add_argument("--workers", type=int, help="worker processes (half staged, half atomic)")
    ap.add_argument("--kill-every", type=float, help="seconds between SIGKILLs")
    ap.add_argument("--min-kills", type=int)
    ap.add_argument("--fail-rate", type=float, default=0.1)
    ap.add_argument("--timeout", type=float, help="seconds before giving up on convergence")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the database file and the worker logs")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwinds: workers stopped
    short = args.short
    chains = args.chains or (600 if short else 6000)
    n_workers = args.workers or 4
    kill_every = args.kill_every or (2.0 if short else 3.0)
    min_kills = args.min_kills if args.min_kills is not None else (3 if short else 6)
    timeout = args.timeout or (150.0 if short else 900.0)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)

    work = Path(tempfile.mkdtemp(prefix="queuert-torture-sqlite-"))
    path = str(work / "torture.db")
    log(f"seed {seed}; {chains} chains, {n_workers} workers; {path}")
    setup_database(path, timedelta(milliseconds=20))
    # atomic jobs of one file run one at a time (each transaction holds the
    # write lock through its handler): two slots are enough to overlap them
    workers = Workers(path, work, {"staged": 8, "atomic": 2}, args.fail_rate)
    violations: list[str] = []
    kills = 0
    t0 = time.monotonic()
    try:
        for i in range(n_workers):
            workers.start("staged" if i % 2 == 0 else "atomic")
        producer = Producer(path, chains, batch=100 if short else 250, pause=0.2, seed=rng.randrange(1 << 30))
        producer.start()
        next_kill = time.monotonic() + kill_every * rng.uniform(0.5, 1.5)
        next_report = time.monotonic() + 5
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if producer.error is not None:
                raise RuntimeError(f"producer failed: {producer.error!r}")
            defects = workers.defects()
            if defects:
                violations.extend(defects)
                break
            if now >= next_kill:
                workers.kill_one(rng)
                kills += 1
                next_kill = now + kill_every * rng.uniform(0.5, 1.5)
            active, completed = progress(path)
            if now >= next_report:
                log(f"active jobs {active}, completed chains {completed}/{producer.made}, kills {kills}")
                next_report = now + 5
            if producer.done.is_set() and active == 0 and kills >= min_kills:
                break
            if now > deadline:
                violations.append(f"no convergence within {timeout:.0f}s (active jobs {active})")
                break
            time.sleep(0.25)
        producer.join(timeout=30)
    finally:
        workers.stop_all()
    duration = time.monotonic() - t0
    violations.extend(v for v in workers.defects() if v not in violations)
    figures, found = check(path)
    violations.extend(found)
    ok = not violations
    print(
        f"torture-sqlite {'OK' if ok else 'FAILED'}: chains={figures['chains']} jobs={figures['jobs']} "
        f"atomic_jobs={figures['atomic_jobs']} staged_jobs={figures['staged_jobs']} "
        f"workers={len(workers.procs)} kills={kills} retries={figures['retries']} "
        f"failed_as_expected={figures['failed_as_expected']} failed_after_crashes={figures['failed_after_crashes']} "
        f"staged_reruns={figures['staged_reruns']} lost={figures['lost']} duplicates={figures['duplicates']} "
        f"violations={len(violations)} duration={duration:.0f}s seed={seed}",
        flush=True,
    )
    for line in violations:
        log(f"VIOLATION {line}")
    if ok and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        log(f"kept the database and the worker logs in {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
