"""Runs docs/dashboard.md: each python block in a fresh namespace with DSN
set, then the requests of the text block after it against the `app` it
built; the sh block (`queuert dashboard`) as a real server on a free port."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

import pytest
from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "dashboard.md"


def blocks(kind: str) -> list[tuple[str, list[str]]]:
    """(block of `kind`, lines of the text block that follows it)."""
    found = re.findall(r"```(python|text|sh)\n(.*?)```", DOC.read_text(), flags=re.S)
    out: list[tuple[str, list[str]]] = []
    for i, (k, body) in enumerate(found):
        if k != kind:
            continue
        expect: list[str] = []
        if i + 1 < len(found) and found[i + 1][0] == "text":
            expect = [line.strip() for line in found[i + 1][1].splitlines() if line.strip()]
        out.append((body, expect))
    return out


def _django_settings() -> None:
    """What a Django project's settings module would hold (the docs' asgi.py
    names it; the test configures Django directly, once per process)."""
    from django_support import configure

    configure()


PY_BLOCKS = blocks("python")


@pytest.mark.parametrize("index", range(len(PY_BLOCKS)))
def test_python_block(index: int, dsn: str) -> None:
    code, requests = PY_BLOCKS[index]
    assert requests, f"python block {index} has no text block of requests after it"
    if "django" in code:
        _django_settings()
    namespace: dict[str, object] = {"DSN": dsn, "__name__": f"docs_block_{index}"}
    environ = dict(os.environ)  # a block may set DJANGO_SETTINGS_MODULE, as a project's asgi.py does
    try:
        exec(compile(code, f"{DOC}:python block {index}", "exec"), namespace)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    with TestClient(namespace["app"]) as client:  # type: ignore[arg-type]
        for line in requests:
            method, path, *rest = line.split()
            status = int(rest[-1])
            headers = dict(h.split("=", 1) for h in rest[:-1])
            if method == "POST":  # with the CSRF token, so only the permission decides
                token = client.get(path.split("/api/")[0] + "/api/csrf", headers=headers)
                if token.status_code == 200:
                    headers["X-CSRF-Token"] = token.json()["csrf_token"]
                got = client.post(path, json={"chain_ids": []}, headers=headers)
            else:
                got = client.get(path, headers=headers)
            assert got.status_code == status, f"{line}: {got.status_code} {got.text[:300]}"


def test_sh_block_serves_the_dashboard(dsn: str) -> None:
    [(script, _)] = blocks("sh")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = script.split("#")[0].strip().replace("8787", str(port))
    env = {**os.environ, "DSN": dsn, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    proc = subprocess.Popen(["bash", "-c", "exec " + command], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/chains", timeout=5) as r:
                    assert r.status == 200 and b"Chains" in r.read()
                    break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "queuert dashboard did not answer"
                time.sleep(0.1)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in out
