"""Worker telemetry with a real SDK: the cross-process chain trace (two
worker processes, one staged and one atomic, each writing its finished spans
and metric points to a file at exit), failures, lost leases, reaped jobs,
metric values; and the worker without an SDK."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

import queuert
from queuert import aio
from queuert.job import JobContext
import queuert._sqlite as qs
from queuert._sqlite.migrate import migrate as sqlite_migrate
from queuert.telemetry import switch
from otel_support import Sdk, installed_sdk
from worker_helpers import eventually, running

HERE = Path(__file__).resolve().parent


@pytest.fixture
def sdk() -> Iterator[Sdk]:
    with installed_sdk() as s:
        yield s


def fast(dsn: str, **kw: Any) -> queuert.Worker:
    kw.setdefault("poll_interval", 0.2)
    kw.setdefault("reap_interval", 0.2)
    kw.setdefault("grace_period", 5.0)
    return queuert.Worker(dsn, **kw)


# ------------------------------------------------- one trace across processes


class WorkerProcess:
    def __init__(self, dsn: str, mode: str, out: Path, types: list[str]) -> None:
        env = {**os.environ, "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.out = out
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "otel_worker_proc.py"), dsn, mode, str(out), *types],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready "):
            self.proc.kill()
            raise RuntimeError(f"worker process did not start: {line!r}")
        self.worker_id = line.split()[1]

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=60) == 0
        data: dict[str, Any] = json.loads(self.out.read_text())
        return data

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _hex(span: Any) -> tuple[str, str]:
    c = span.get_span_context()
    return f"{c.trace_id:032x}", f"{c.span_id:016x}"


def test_a_chain_with_a_continuation_and_a_fan_in_is_one_trace_across_two_worker_processes(
    dsn: str, conn: psycopg.Connection[Any], sdk: Sdk, tmp_path: Path
) -> None:
    # A (staged) runs order, ship and fetch_a; B (atomic) runs pack and fetch_b
    a = WorkerProcess(dsn, "staged", tmp_path / "a.json", ["order", "ship", "fetch_a"])
    try:
        b = WorkerProcess(dsn, "atomic", tmp_path / "b.json", ["pack", "fetch_b"])
    except BaseException:
        a.kill()
        raise
    try:
        tracer = sdk.tracer_provider.get_tracer("app")
        # the blocker chains are held back (due in an hour) until pack waits
        # on them, so that their completion resolves its edges; fetch_b comes
        # from another request: its trace is another one
        later = timedelta(hours=1)
        with tracer.start_as_current_span("POST /imports") as other_request:
            fb = queuert.start_chain(conn, "fetch_b", {"part": "b"}, schedule_after=later)
        conn.commit()
        with tracer.start_as_current_span("POST /orders") as request:
            with queuert.transaction_hooks():
                with conn.transaction():
                    fa = queuert.start_chain(conn, "fetch_a", {"part": "a"}, schedule_after=later)
                    order = queuert.start_chain(
                        conn, "order", {"order": 1, "blockers": [str(fa.id), str(fb.id)]}
                    )
        conn.commit()
        autocommit = psycopg.connect(dsn, autocommit=True)
        with autocommit:

            def pack_waits() -> bool:
                chain = queuert.get_chain(autocommit, order.id)
                return chain is not None and chain.current_type_name == "pack"

            asyncio.run(eventually(pack_waits, timeout=60))
            queuert.trigger_jobs(autocommit, [fa.id, fb.id])
            done = queuert.wait_for_chain(autocommit, order.id, 60, poll_interval=0.1)
        assert done.output == {"shipped": ["fetch_a", "fetch_b"]}
        # the last acknowledgements are committed: stop and collect
        data_a, data_b = a.stop(), b.stop()
    finally:
        a.kill()
        b.kill()

    spans: dict[str, dict[str, Any]] = {}
    for proc_name, data in (("A", data_a), ("B", data_b)):
        for s in data["spans"]:
            s["process"] = proc_name
            spans[s["span_id"]] = s
    for s in sdk.finished():
        trace_id, span_id = _hex(s)
        spans[span_id] = {
            "name": s.name,
            "span_id": span_id,
            "trace_id": trace_id,
            "parent_span_id": f"{s.parent.span_id:016x}" if s.parent else None,
            "attributes": dict(s.attributes or {}),
            "links": [
                {"trace_id": f"{link.context.trace_id:032x}", "span_id": f"{link.context.span_id:016x}"}
                for link in s.links
            ],
            "events": [],
            "process": "client",
        }

    def one(name: str) -> dict[str, Any]:
        found = [s for s in spans.values() if s["name"] == name]
        assert len(found) == 1, (name, [s["name"] for s in spans.values()])
        return found[0]

    req_trace, req_id = _hex(request)
    other_trace, other_id = _hex(other_request)
    create_order, create_fa, create_fb = one("create order"), one("create fetch_a"), one("create fetch_b")
    process_order, process_fa, process_fb = one("process order"), one("process fetch_a"), one("process fetch_b")
    create_pack, process_pack = one("create pack"), one("process pack")
    create_ship, process_ship = one("create ship"), one("process ship")
    resolves = [s for s in spans.values() if s["name"] == "resolve pack"]
    assert len(resolves) == 2
    resolve_a = next(s for s in resolves if s["parent_span_id"] == process_fa["span_id"])
    resolve_b = next(s for s in resolves if s["parent_span_id"] == process_fb["span_id"])

    # one trace from the request to the last step; fetch_b's chain is in
    # the other request's
    fetch_b_side = {create_fb["span_id"], process_fb["span_id"], resolve_b["span_id"], other_id}
    assert {s["trace_id"] for s in spans.values() if s["span_id"] not in fetch_b_side} == {req_trace}
    assert {s["trace_id"] for s in spans.values() if s["span_id"] in fetch_b_side} == {other_trace}
    # edge by edge: child -> parent
    edges = {
        "create order": req_id,
        "create fetch_a": req_id,
        "create fetch_b": other_id,
        "process order": create_order["span_id"],
        "process fetch_a": create_fa["span_id"],
        "process fetch_b": create_fb["span_id"],
        "create pack": process_order["span_id"],
        "process pack": create_pack["span_id"],
        "create ship": process_pack["span_id"],
        "process ship": create_ship["span_id"],
    }
    for name, parent in edges.items():
        assert one(name)["parent_span_id"] == parent, name
    # which process ran what, in which mode, under which worker id
    assert {s["process"] for s in (process_order, process_ship, process_fa)} == {"A"}
    assert {s["process"] for s in (process_pack, process_fb)} == {"B"}
    for s in (process_order, process_ship, process_fa):
        assert s["attributes"]["queuert.worker.id"] == a.worker_id
        assert s["attributes"]["queuert.worker.mode"] == "staged"
    for s in (process_pack, process_fb):
        assert s["attributes"]["queuert.worker.id"] == b.worker_id
        assert s["attributes"]["queuert.worker.mode"] == "atomic"
    # continuations link to the job they continue
    assert [link["span_id"] for link in create_pack["links"]] == [create_order["span_id"]]
    assert [link["span_id"] for link in create_ship["links"]] == [create_pack["span_id"]]
    assert create_pack["attributes"]["messaging.operation.name"] == "continue_with"
    # the fan-in, from the blockers' side: each blocker chain's completion
    # (in A for fetch_a, in B for fetch_b) emits a resolve span, a child of
    # the attempt that completed the chain, linked to the waiting job's
    # creation in the order's trace; the last one made pack due
    assert resolve_a["process"] == "A" and resolve_b["process"] == "B"
    for resolve, blocker in ((resolve_a, fa), (resolve_b, fb)):
        assert [(link["trace_id"], link["span_id"], link["attributes"]["queuert.link.kind"]) for link in resolve["links"]] == [
            (req_trace, create_pack["span_id"], "waiting")
        ]
        assert resolve["attributes"]["queuert.blocker.chain_id"] == str(blocker.id)
        assert resolve["attributes"]["messaging.destination.name"] == "pack"
        assert resolve["attributes"]["messaging.message.id"] == process_pack["attributes"]["messaging.message.id"]
    assert sorted([resolve_a["attributes"]["queuert.dependent.ready"], resolve_b["attributes"]["queuert.dependent.ready"]]) == [False, True]
    # and from the dependent's side: its attempt links to each blocker chain
    # (its creation, in that chain's trace) and to the attempt that completed
    # it, in the process that ran it, and shows when each completed
    assert [
        (link["trace_id"], link["span_id"], link["attributes"]["queuert.link.kind"], link["attributes"]["queuert.blocker.chain_id"])
        for link in process_pack["links"]
    ] == [
        (req_trace, create_fa["span_id"], "blocker", str(fa.id)),
        (req_trace, process_fa["span_id"], "blocker_completion", str(fa.id)),
        (other_trace, create_fb["span_id"], "blocker", str(fb.id)),
        (other_trace, process_fb["span_id"], "blocker_completion", str(fb.id)),
    ]
    resolved = [e for e in process_pack["events"] if e["name"] == "queuert.blocker.resolved"]
    assert [e["attributes"]["queuert.blocker.chain_id"] for e in resolved] == [str(fa.id), str(fb.id)]
    # attributes and outcomes
    for s, outcome in (
        (process_order, "continued"),
        (process_pack, "continued"),
        (process_ship, "completed"),
        (process_fa, "completed"),
        (process_fb, "completed"),
    ):
        attrs = s["attributes"]
        assert s["kind"] == "CONSUMER"
        assert attrs["messaging.system"] == "queuert"
        assert attrs["messaging.operation.type"] == "process"
        assert attrs["queuert.outcome"] == outcome
        assert attrs["queuert.attempt"] == 1
        assert attrs["queuert.chain.id"] in {str(order.id), str(fa.id), str(fb.id)}
    assert process_ship["attributes"]["queuert.chain.id"] == str(order.id)
    assert process_ship["attributes"]["queuert.chain.completed"] is True
    assert "queuert.chain.completed" not in process_order["attributes"]  # continued, not the end

    # metrics, summed over both processes, equal what happened
    def total(name: str, **attrs: Any) -> int:
        return sum(
            p["value"]
            for data in (data_a, data_b)
            for p in data["metrics"]
            if p["name"] == name and all(p["attributes"].get(k) == v for k, v in attrs.items())
        )

    assert total("queuert.attempts.started") == 5
    assert total("queuert.attempts.completed") == 5
    assert total("queuert.attempts.completed", **{"queuert.outcome": "continued"}) == 2
    assert total("queuert.attempts.failed") == 0
    assert total("queuert.continuations") == 2
    assert total("queuert.jobs.created") == 2  # the continuations; the client made the roots
    assert total("queuert.chains.completed") == 3
    assert total("queuert.job.duration") == 5
    assert total("queuert.chain.duration") == 3
    assert sdk.counter("queuert.chains.created") == 3

    # the rendering docs/observability.md shows
    (tmp_path / "tree.txt").write_text(render_tree(spans))


def render_tree(spans: dict[str, dict[str, Any]]) -> str:
    children: dict[str | None, list[dict[str, Any]]] = {}
    for s in spans.values():
        parent = s["parent_span_id"] if s["parent_span_id"] in spans else None
        children.setdefault(parent, []).append(s)
    lines: list[str] = []

    def walk(s: dict[str, Any], depth: int) -> None:
        where = s.get("process", "")
        outcome = s["attributes"].get("queuert.outcome", "")
        links = ", ".join(spans[x["span_id"]]["name"] for x in s["links"] if x["span_id"] in spans)
        events = ", ".join(e["name"].removeprefix("queuert.") for e in s["events"])
        lines.append(
            "  " * depth
            + s["name"]
            + (f"  [{where}]" if where else "")
            + (f" outcome={outcome}" if outcome else "")
            + (" chain.completed" if s["attributes"].get("queuert.chain.completed") else "")
            + (f"  links: {links}" if links else "")
            + (f"  events: {events}" if events else "")
        )
        for c in children.get(s["span_id"], []):
            walk(c, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------- in-process worker


async def test_failing_attempt_records_the_exception_error_type_and_retry_time(
    dsn: str, aconn: psycopg.AsyncConnection[Any], sdk: Sdk
) -> None:
    await aconn.set_autocommit(True)
    worker = fast(dsn, mode="staged")

    class PaymentDeclined(Exception):
        pass

    @worker.handler("charge")
    async def charge(job: JobContext[Any]) -> Any:
        if job.attempt == 1:
            raise PaymentDeclined("card declined")
        return {"charged": True}

    # the retry is due at once (the SQL API sets policies; the client has no wrapper)
    await aconn.execute("SELECT queuert.set_job_type('charge', backoff_initial => '0 seconds')")
    started = await aio.start_chain(aconn, "charge")
    async with running(worker):
        await aio.wait_for_chain(aconn, started.id, 30, poll_interval=0.05)
    failed, ok = sorted(sdk.named("process charge"), key=lambda s: s.attributes["queuert.attempt"])  # type: ignore[index]
    assert failed.attributes is not None and ok.attributes is not None
    assert failed.attributes["queuert.outcome"] == "failed"
    assert failed.attributes["error.type"].endswith("PaymentDeclined")
    assert "queuert.retry_at" in failed.attributes
    assert failed.status.status_code.name == "ERROR"
    (exc_event,) = [e for e in failed.events if e.name == "exception"]
    assert exc_event.attributes is not None
    assert exc_event.attributes["exception.message"] == "card declined"
    assert ok.attributes["queuert.outcome"] == "completed" and ok.attributes["queuert.attempt"] == 2
    assert sdk.counter("queuert.attempts.failed", **{"messaging.destination.name": "charge"}) == 1
    assert sdk.counter("queuert.attempts.completed", **{"messaging.destination.name": "charge"}) == 1
    assert sdk.counter("queuert.attempts.started") == 2


async def test_lost_lease_and_reaped_job_show_up(
    dsn: str, aconn: psycopg.AsyncConnection[Any], sdk: Sdk
) -> None:
    await aconn.set_autocommit(True)
    worker = fast(dsn, lease=timedelta(seconds=2), renew_interval=0.1)
    inside = asyncio.Event()

    @worker.handler("slow")
    async def slow(job: JobContext[Any]) -> Any:
        inside.set()
        await asyncio.sleep(30)

    @worker.handler("orphan")
    async def orphan(job: JobContext[Any]) -> Any:
        return job.attempt

    lost = await aio.start_chain(aconn, "slow")
    reaped = await aio.start_chain(aconn, "orphan")
    # a worker that died holding the orphan: its lease expires, reap takes it back
    await aconn.execute("SELECT count(*) FROM queuert.claim('dead-worker', ARRAY['orphan'], 1, '10 ms')")
    async with running(worker):
        await asyncio.wait_for(inside.wait(), 10)
        # its lease is renewed while it runs ...
        await eventually(lambda: sdk.counter("queuert.leases.renewed") >= 1)
        # ... until it is finished from outside: the worker loses it
        await aio.complete_chain(aconn, lost.id, {"by": "api"})
        await aio.wait_for_chain(aconn, reaped.id, 30, poll_interval=0.05)
        await eventually(lambda: any(s.attributes.get("queuert.outcome") == "lost" for s in sdk.named("process slow")))  # type: ignore[union-attr]
    (slow_span,) = sdk.named("process slow")
    assert slow_span.attributes is not None
    assert slow_span.attributes["queuert.outcome"] == "lost"
    assert slow_span.attributes["error.type"] == "queuert.LeaseLost"
    assert "finished" in str(slow_span.attributes["queuert.lost.reason"])
    assert sdk.counter("queuert.leases.expired", **{"messaging.destination.name": "slow"}) == 1
    (orphan_span,) = sdk.named("process orphan")
    assert orphan_span.attributes is not None
    assert orphan_span.attributes["queuert.attempt"] == 2
    assert "lease" in str(orphan_span.attributes["queuert.last_attempt_error"])
    assert sdk.counter("queuert.jobs.reaped") == 1
    # the settle span of the outside completion is in the slow job's trace
    (settle,) = sdk.named("settle slow")
    (create,) = sdk.named("create slow")
    assert settle.parent is not None and settle.parent.span_id == create.context.span_id


async def test_queue_gauges_report_the_stats_view(
    dsn: str, aconn: psycopg.AsyncConnection[Any], sdk: Sdk
) -> None:
    await aconn.set_autocommit(True)
    for _ in range(3):
        await aio.start_chain(aconn, "later", schedule_after=timedelta(hours=1))
    await aio.start_chain(aconn, "due-elsewhere")
    worker = fast(dsn, stats_interval=0.1)

    @worker.handler("other")
    async def other(job: JobContext[Any]) -> None:
        return None

    async with running(worker):
        await eventually(
            lambda: any(
                p.attributes.get("messaging.destination.name") == "later"
                for p in sdk.metric_points().get("queuert.queue.jobs", [])
            )
        )
    points = sdk.metric_points()
    jobs = {
        (p.attributes["messaging.destination.name"], p.attributes["queuert.job.status"]): p.value
        for p in points["queuert.queue.jobs"]
    }
    assert jobs == {("later", "pending"): 3, ("due-elsewhere", "pending"): 1}
    ages = {p.attributes["messaging.destination.name"]: p.value for p in points["queuert.queue.oldest_due_age"]}
    assert set(ages) == {"due-elsewhere"} and ages["due-elsewhere"] >= 0


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_worker_without_sdk_runs_and_emits_nothing(dsn: str, aconn: psycopg.AsyncConnection[Any], mode: str) -> None:
    assert switch.tracer() is None and switch.meter() is None
    await aconn.set_autocommit(True)
    worker = fast(dsn, mode=mode)

    @worker.handler("step")
    async def step(job: JobContext[Any]) -> Any:
        return job.continue_with("last", trace_context="tc-handler")

    @worker.handler("last")
    async def last(job: JobContext[Any]) -> Any:
        return {"ok": True}

    started = await aio.start_chain(aconn, "step", trace_context="tc-app")
    async with running(worker):
        await aio.wait_for_chain(aconn, started.id, 30, poll_interval=0.05)
    cur = await aconn.execute(
        "SELECT trace_context, chain_trace_context FROM queuert.job WHERE chain_id = %s ORDER BY chain_index",
        (started.id,),
    )
    # what the application gave is stored as given
    assert await cur.fetchall() == [("tc-app", "tc-app"), ("tc-handler", "tc-app")]


@pytest.mark.parametrize("mode", ["staged", "atomic"])
async def test_the_sqlite_worker_traces_and_counts_too(tmp_path: Path, sdk: Sdk, mode: str) -> None:
    path = tmp_path / "app.db"
    sqlite_migrate(str(path))
    worker = queuert.Worker(f"sqlite:///{path}", mode=mode, poll_interval=0.1, reap_interval=0.2, stats_interval=0.1)

    @worker.handler("first")
    async def first(job: JobContext[Any]) -> Any:
        return job.continue_with("second", {"n": 1})

    @worker.handler("second")
    async def second(job: JobContext[Any]) -> Any:
        if job.attempt == 1:
            raise ValueError("first attempt fails")
        return None

    conn = sqlite3.connect(path)
    try:
        queuert.start_chain(conn, "first")
        qs.set_job_type(conn, "second", backoff_initial=timedelta(0))  # the retry is due at once
        conn.commit()
    finally:
        conn.close()
    async with running(worker):
        await eventually(lambda: sdk.counter("queuert.chains.completed") == 1, timeout=30)
    names = sorted(s.name for s in sdk.finished())
    assert names == ["create first", "create second", "process first", "process second", "process second"]
    assert len({s.context.trace_id for s in sdk.finished()}) == 1
    (create_second,) = sdk.named("create second")
    assert create_second.attributes is not None and create_second.attributes["queuert.job.status"] == "pending"
    failed = [s for s in sdk.named("process second") if s.attributes and s.attributes["queuert.outcome"] == "failed"]
    assert len(failed) == 1 and failed[0].attributes is not None and "queuert.retry_at" in failed[0].attributes
    assert sdk.counter("queuert.attempts.failed", **{"queuert.will_retry": True}) == 1
    jobs = {
        p.attributes["messaging.destination.name"]
        for p in sdk.metric_points().get("queuert.queue.jobs", [])
    }
    assert jobs <= {"first", "second"}
