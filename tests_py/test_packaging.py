"""The wheel ships the engine SQL, and an installed copy migrates from anywhere.

Builds the wheel offline (hatchling from the dev environment, no build
isolation), checks its contents, installs it into a scratch directory and
runs ``queuert migrate`` from another working directory with only that copy
of ``queuert`` importable.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "python_client"
SQL_FILES = sorted(p.name for p in (REPO / "sql").glob("*.sql"))
MIGRATION_FILES = sorted(p.name for p in (REPO / "migrations").glob("*.sql"))


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
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
