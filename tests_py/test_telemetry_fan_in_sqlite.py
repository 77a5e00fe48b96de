"""Both sides of a fan-in on the SQLite worker (migration 0004), staged and
atomic: the attempt that completes a blocker chain emits a resolve span per
waiting job, linked to that job's creation, and the engine keeps its
traceparent on the edge; the waiting job's attempt links to the blocker
chain's creation and to that completion. (PostgreSQL: the cross-process
test in test_telemetry_worker.py and test_telemetry_client.py.)"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import queuert
from queuert._sqlite.migrate import migrate as sqlite_migrate
from queuert.job import JobContext
from otel_support import Sdk, installed_sdk, traceparent_of
from worker_helpers import eventually, running


@pytest.fixture
def sdk() -> Iterator[Sdk]:
    with installed_sdk() as s:
        yield s


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_a_blocker_completed_by_the_sqlite_worker_resolves_the_waiting_job_in_both_traces(
    tmp_path: Path, sdk: Sdk, mode: str
) -> None:
    path = tmp_path / "app.db"
    sqlite_migrate(str(path))
    tracer = sdk.tracer_provider.get_tracer("app")
    conn = sqlite3.connect(path)
    try:
        with tracer.start_as_current_span("import"):
            blocker = queuert.start_chain(conn, "fetch")
        with tracer.start_as_current_span("request"):
            waiting = queuert.start_chain(conn, "report", blockers=[blocker.id])
        conn.commit()
    finally:
        conn.close()
    worker = queuert.Worker(f"sqlite:///{path}", mode=mode, poll_interval=0.1, reap_interval=0.2)

    @worker.handler("fetch")
    async def fetch(job: JobContext[Any]) -> Any:
        return {"fetched": 1}

    @worker.handler("report")
    async def report(job: JobContext[Any]) -> Any:
        return {"parts": [b.output for b in job.blockers]}

    async with running(worker):
        await eventually(lambda: len(sdk.named("process report")) == 1, timeout=30)

    (create_fetch,) = sdk.named("create fetch")
    (create_report,) = sdk.named("create report")
    (process_fetch,) = sdk.named("process fetch")
    (process_report,) = sdk.named("process report")
    (resolve,) = sdk.named("resolve report")
    assert create_fetch.context.trace_id != create_report.context.trace_id  # two requests, two traces
    # the blocker's side: a child of the attempt that completed its chain ...
    assert resolve.parent is not None and resolve.parent.span_id == process_fetch.context.span_id
    assert resolve.context.trace_id == create_fetch.context.trace_id
    # ... linked to the waiting job's creation, in the waiting chain's trace
    (link,) = resolve.links
    assert (link.context.trace_id, link.context.span_id) == (
        create_report.context.trace_id,
        create_report.context.span_id,
    )
    assert link.attributes is not None and link.attributes["queuert.link.kind"] == "waiting"
    assert resolve.attributes is not None
    assert resolve.attributes["messaging.message.id"] == str(waiting.id)
    assert resolve.attributes["queuert.blocker.chain_id"] == str(blocker.id)
    assert resolve.attributes["queuert.dependent.ready"] is True
    # the waiting job's side: its creation and the completion, and when
    assert [
        (link.context.span_id, (link.attributes or {})["queuert.link.kind"]) for link in process_report.links
    ] == [
        (create_fetch.context.span_id, "blocker"),
        (process_fetch.context.span_id, "blocker_completion"),
    ]
    assert [e.name for e in process_report.events] == ["queuert.blocker.resolved"]
    # the edge keeps both ends
    conn = sqlite3.connect(path)
    try:
        edge = conn.execute(
            "SELECT trace_context, resolved_trace_context FROM queuert_job_blocker WHERE job_id = ?",
            (str(waiting.id),),
        ).fetchone()
    finally:
        conn.close()
    assert edge == (traceparent_of(create_report), traceparent_of(process_fetch))
