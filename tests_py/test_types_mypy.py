"""mypy rejects a wrong input for start_chain, continue_with, ChainSpec and
complete_chain, and accepts the right ones.

Runs the venv's mypy (``sys.executable -m mypy``) once over two generated
files: ``good.py`` must type-check cleanly; every line of ``bad.py`` marked
``# E`` must get an error, and no other line may.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

PRELUDE = '''
from __future__ import annotations

import dataclasses

import psycopg
import pydantic
from typing_extensions import TypedDict

import queuert
from queuert import ChainSpec, JobType, aio, continue_with


@dataclasses.dataclass
class WelcomeInput:
    user_id: int


class EmailSent(pydantic.BaseModel):
    message_id: str


class ReportInput(TypedDict):
    period: str


welcome = JobType("send-welcome-email", input=WelcomeInput, output=EmailSent)
report = JobType("report", input=ReportInput, output=int)
tick = JobType("tick", input=int)
ping = JobType("ping")
'''

GOOD = '''
def enqueue(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    queuert.start_chain(conn, welcome, WelcomeInput(user_id=7))
    queuert.start_chain(conn, report, ReportInput(period="2024-01"))
    queuert.start_chain(conn, tick, 3, priority=2)
    queuert.start_chain(conn, ping)
    queuert.start_chain(conn, "untyped-by-name", {"anything": [1, 2]})
    queuert.start_chains(conn, [ChainSpec(welcome, WelcomeInput(1)), ChainSpec(tick, 4)])
    queuert.complete_chain(conn, "c", EmailSent(message_id="m"), job_type=welcome)
    queuert.complete_chain(conn, "c", continue_with=continue_with(tick, 5))


async def enqueue_async(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    await aio.start_chain(conn, welcome, WelcomeInput(user_id=7))


def handler(data: WelcomeInput) -> queuert.Continuation:
    sent: EmailSent = welcome.parse_output({"message_id": "m"})
    typed_in: WelcomeInput = welcome.parse_input({"user_id": 1})
    assert sent and typed_in
    return continue_with(report, ReportInput(period="now"))
'''

BAD = '''
def enqueue(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    queuert.start_chain(conn, welcome, ReportInput(period="x"))  # E
    queuert.start_chain(conn, welcome, 7)  # E
    queuert.start_chain(conn, tick, "3")  # E
    queuert.start_chain(conn, welcome)  # E
    queuert.start_chains(conn, [ChainSpec(welcome, 5)])  # E
    queuert.complete_chain(conn, "c", 5, job_type=welcome)  # E


async def enqueue_async(conn: psycopg.AsyncConnection[tuple[object, ...]]) -> None:
    await aio.start_chain(conn, welcome, "seven")  # E


def handler(data: WelcomeInput) -> queuert.Continuation:
    return continue_with(report, WelcomeInput(user_id=1))  # E


def other_handler() -> queuert.Continuation:
    return continue_with(tick, "not an int")  # E


def wrong_output() -> int:
    return welcome.parse_output({})  # E
'''


def _write(path: Path, body: str) -> None:
    path.write_text(textwrap.dedent(PRELUDE) + textwrap.dedent(body))


def test_mypy_checks_job_inputs(tmp_path: Path) -> None:
    good, bad, exports = tmp_path / "good.py", tmp_path / "bad.py", tmp_path / "exports.py"
    _write(good, GOOD)
    _write(bad, BAD)
    # every public name of the package is an explicit export for a strict
    # user (a name mypy cannot see in __all__ reads "does not explicitly
    # export" in the user's code)
    import queuert

    exports.write_text("".join(f"from queuert import {name}\n" for name in queuert.__all__))
    (tmp_path / "mypy.ini").write_text("[mypy]\nstrict = True\nwarn_unused_ignores = True\n")
    proc = subprocess.run(
        [
            sys.executable, "-m", "mypy",
            "--config-file", str(tmp_path / "mypy.ini"),
            "--cache-dir", str(tmp_path / ".mypy_cache"),
            "--no-error-summary", "--hide-error-context", "--show-error-codes",
            str(good), str(bad), str(exports),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    errors: dict[str, set[int]] = {"good.py": set(), "bad.py": set(), "exports.py": set()}
    for line in output.splitlines():
        m = re.match(r".*?(good|bad|exports)\.py:(\d+): error:", line)
        if m:
            errors[m.group(1) + ".py"].add(int(m.group(2)))
    assert errors["good.py"] == set(), output
    assert errors["exports.py"] == set(), output

    source = bad.read_text().splitlines()
    expected = {i for i, text in enumerate(source, start=1) if text.rstrip().endswith("# E")}
    assert len(expected) == 10
    assert errors["bad.py"] == expected, output
    assert proc.returncode == 1, output


def test_the_package_itself_passes_mypy_strict(tmp_path: Path) -> None:
    """queuert ships py.typed: its own code must type-check under --strict
    (this caught a str-vs-bytes comparison that was always true)."""
    package = Path(__file__).resolve().parents[1] / "python_client" / "src" / "queuert"
    proc = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--strict",
            "--cache-dir", str(tmp_path / ".mypy_cache"),
            "--no-error-summary", "--show-error-codes",
            str(package),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_benchmarks_pass_mypy_strict(tmp_path: Path) -> None:
    """benchmarks/ is code we read numbers from: it type-checks under
    --strict too (it did not when checked alone: a str-or-int database name,
    an invariant dict of workloads)."""
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--strict",
            "--cache-dir", str(tmp_path / ".mypy_cache"),
            "--no-error-summary", "--show-error-codes",
            "benchmarks",
        ],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
