"""`make demo` is the front door: it must keep working and keep telling the truth."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_the_signup_story(base_dsn: str) -> None:
    db = f"queuert_demo_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": base_dsn, "QUEUERT_DEMO_DB": db}
    try:
        out = subprocess.run(
            [sys.executable, str(ROOT / "demo" / "signup.py")],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "users: 1, jobs: 1" in out.stdout  # the rolled-back signup left nothing
        assert "report: 10 users across 3 regions" in out.stdout
        assert "send-welcome-email: completed, output {'message_id': 'msg-1'}" in out.stdout
        assert "signup-report: completed, output 10" in out.stdout
    finally:
        with psycopg.connect(base_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
