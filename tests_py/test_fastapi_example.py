"""examples/fastapi_app.py with its worker beside it (queuert.contrib.starlette),
through Starlette's TestClient, which runs the app's lifespan: a signup commits
its member and job together and the worker in the app's loop runs the job; a
declined signup leaves neither; a worker that cannot start fails the startup;
shutdown stops the worker."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import queuert
from queuert.contrib.starlette import running_worker, worker_lifespan
from queuert.testing import assert_chain_started, assert_no_chain_started

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fastapi_app.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("queuert_fastapi_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = load_example()


def test_signup_commits_its_job_and_the_worker_beside_the_app_runs_it(dsn: str) -> None:
    with TestClient(example.create_app(dsn)) as client:
        created = client.post("/signups", json={"email": "ada@example.com"})
        assert created.status_code == 201, created.text
        member_id = created.json()["member_id"]

        declined = client.post("/signups", json={"email": "bob@declined.example"})
        assert declined.status_code == 402

        deadline = time.monotonic() + 30
        while not client.get(f"/signups/{member_id}").json()["welcomed"]:
            assert time.monotonic() < deadline, "the worker beside the app never ran the job"
            time.sleep(0.05)

    with psycopg.connect(dsn, autocommit=True) as conn:
        job = assert_chain_started(conn, "send-welcome-email", {"member_id": member_id}, count=1)
        assert_no_chain_started(conn, "send-welcome-email", input_contains={"member_id": member_id + 1})
        assert conn.execute("SELECT email FROM member").fetchall() == [("ada@example.com",)]
        chain = queuert.get_chain(conn, job.chain_id)
        assert chain.status == "completed" and chain.output == "welcomed ada@example.com"


def test_the_example_mounts_a_read_only_dashboard_on_its_pool(dsn: str) -> None:
    with TestClient(example.create_app(dsn)) as client:
        chain_id = client.post("/signups", json={"email": "eve@example.com"}).json()["chain_id"]
        page = client.get(f"/queuert/chains/{chain_id}")
        assert page.status_code == 200 and "send-welcome-email" in page.text
        assert "read-only" in page.text


def test_worker_lifespan_starts_and_stops_the_worker(dsn: str) -> None:
    worker = queuert.Worker(dsn, poll_interval=0.2)
    seen: list[str] = []

    @worker.handler("ping")
    async def ping(job: queuert.JobContext[str]) -> None:
        seen.append(job.input)

    app = FastAPI(lifespan=worker_lifespan(worker))

    @app.post("/ping/{word}")
    async def post_ping(word: str) -> dict[str, str]:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await queuert.aio.start_chain(conn, "ping", word)
        return {"ok": word}

    with TestClient(app) as client:
        assert worker.running and worker.worker_id is not None
        assert client.post("/ping/hello").status_code == 200
        deadline = time.monotonic() + 30
        while not seen:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert seen == ["hello"]
    assert not worker.running  # stopped with the app


def test_a_worker_that_cannot_start_fails_the_startup() -> None:
    worker = queuert.Worker("postgresql://postgres@127.0.0.1:5432/postgres", poll_interval=0.2)
    # no handlers registered: run_async refuses at once, and so does the app
    app = FastAPI(lifespan=worker_lifespan(worker))
    with pytest.raises(ValueError, match="no handlers registered"):
        with TestClient(app):
            pass


async def test_running_worker_inside_a_lifespan_of_ones_own(dsn: str) -> None:
    worker = queuert.Worker(dsn, poll_interval=0.2)

    @worker.handler("noop")
    async def noop(job: queuert.JobContext[None]) -> None:
        return None

    async with running_worker(worker) as running:
        assert running is worker and worker.running
    assert not worker.running


def test_worker_lifespan_mounts_the_dashboard_and_closes_its_pool(dsn: str) -> None:
    worker = queuert.Worker(dsn, poll_interval=0.2)
    done: list[str] = []

    @worker.handler("ping")
    async def ping(job: queuert.JobContext[str]) -> str:
        done.append(job.input)
        return f"pong {job.input}"

    lifespan = worker_lifespan(worker, dashboard_path="/ops/queuert", dashboard_options={"read_only": True})
    app = FastAPI(lifespan=lifespan)

    @app.get("/")
    async def home() -> dict[str, str]:
        return {"app": "own"}

    with psycopg.connect(dsn, autocommit=True) as conn:
        chain = queuert.start_chain(conn, "ping", "dashboard")
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while not done:
            assert time.monotonic() < deadline, "the worker beside the app never ran the job"
            time.sleep(0.05)
        assert client.get("/").json() == {"app": "own"}  # the app's own routes are untouched
        page = client.get(f"/ops/queuert/chains/{chain.chain_id}")
        assert page.status_code == 200, page.text
        assert "ping" in page.text and 'href="/ops/queuert/' in page.text
        # dashboard_options reached create_dashboard: the page is read-only
        assert "read-only" in page.text and "data-action=" not in page.text
        mounts = [r for r in app.router.routes if getattr(r, "name", None) == "queuert-dashboard"]
        board = mounts[0].app
        assert board._pool is not None  # opened by the first request
    assert board._pool is None  # closed with the app: a mounted app gets no lifespan of its own
    assert not worker.running
    with TestClient(app) as client:  # a second start mounts it once, not twice
        assert client.get("/ops/queuert/").status_code == 200
    assert len([r for r in app.router.routes if getattr(r, "name", None) == "queuert-dashboard"]) == 1


def test_worker_lifespan_refuses_dashboard_settings_without_a_path(dsn: str) -> None:
    worker = queuert.Worker(dsn)
    with pytest.raises(ValueError, match="need dashboard_path"):
        worker_lifespan(worker, dashboard_options={"read_only": True})
    app = FastAPI(lifespan=worker_lifespan(worker, dashboard_path="/queuert/"))

    @worker.handler("noop")
    async def noop(job: queuert.JobContext[None]) -> None:
        return None

    with pytest.raises(ValueError, match="leading slash, no trailing one"):
        with TestClient(app):
            pass
    assert not worker.running
