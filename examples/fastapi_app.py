"""A FastAPI app with a queuert worker beside it (tests_py/test_fastapi_example.py runs it).

    export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres
    queuert migrate
    uvicorn examples.fastapi_app:app

POST /signups {"email": ...} inserts the member and starts its welcome chain
in one transaction on a pooled connection; the worker, running in the app's
own event loop, sends the mail and marks the member. An email that ends in
"@declined.example" fails after the chain was started: the rollback leaves
neither a member nor a job. The dashboard is mounted at /queuert on the same
pool, read-only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator
from typing import Any

import psycopg_pool
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import queuert
from queuert import JobContext, JobType, aio
from queuert.contrib.starlette import mounted_dashboard, running_worker
from queuert.dashboard import create_dashboard


@dataclasses.dataclass
class Welcome:
    member_id: int


welcome = JobType("send-welcome-email", input=Welcome, output=str)


class SignupIn(BaseModel):
    email: str


def create_app(dsn: str) -> FastAPI:
    pool = psycopg_pool.AsyncConnectionPool(dsn, min_size=1, max_size=4, open=False)
    worker = queuert.Worker(dsn, concurrency=4, poll_interval=1.0)

    @worker.handler(welcome)
    async def send_welcome(job: JobContext[Welcome]) -> str:
        async with pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE member SET welcomed = true WHERE id = %s RETURNING email", (job.input.member_id,)
            )
            row = await cur.fetchone()
        return f"welcomed {row[0] if row else '?'}"

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pool.open()
        async with pool.connection() as conn:  # the app's own table (a real app migrates it)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS member ("
                " id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " email text NOT NULL UNIQUE, welcomed boolean NOT NULL DEFAULT false)"
            )
        try:
            dashboard = create_dashboard(pool, read_only=True)  # the app's pool: the app closes it
            async with mounted_dashboard(app, "/queuert", dashboard, close=False), running_worker(worker):
                yield
        finally:
            await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/signups", status_code=201)
    async def signup(body: SignupIn) -> dict[str, Any]:
        try:
            async with pool.connection() as conn, conn.transaction():
                cur = await conn.execute("INSERT INTO member (email) VALUES (%s) RETURNING id", (body.email,))
                row = await cur.fetchone()
                assert row is not None
                chain = await aio.start_chain(conn, welcome, Welcome(member_id=row[0]))
                if body.email.endswith("@declined.example"):
                    raise HTTPException(402, "payment declined")  # rolls back member and job
        except psycopg_pool.PoolTimeout as exc:
            raise HTTPException(503, "database busy") from exc
        return {"member_id": row[0], "chain_id": str(chain.chain_id)}

    @app.get("/signups/{member_id}")
    async def status(member_id: int) -> dict[str, Any]:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT email, welcomed FROM member WHERE id = %s", (member_id,))
            row = await cur.fetchone()
        if row is None:
            raise HTTPException(404, "no such member")
        return {"email": row[0], "welcomed": row[1]}

    return app


app = create_app(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
