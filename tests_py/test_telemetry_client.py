"""Client telemetry with a real SDK (in-memory exporter and metric reader):
creation spans and their parents, what the row stores, deduplicated starts,
commit and rollback through transaction_hooks, workerless completion, the
metrics; and without an SDK, or switched off, nothing at all."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry.trace import SpanKind, StatusCode

import queuert
from queuert import aio, telemetry
from queuert._sqlite.migrate import migrate as sqlite_migrate
from queuert.telemetry import switch
from otel_support import Sdk, installed_sdk, traceparent_of


@pytest.fixture
def sdk() -> Iterator[Sdk]:
    with installed_sdk() as s:
        yield s


@pytest.fixture(params=["postgres", "sqlite"])
def either(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A client connection of each backend: the tests taking it assert the
    same spans on PostgreSQL and SQLite."""
    if request.param == "postgres":
        yield request.getfixturevalue("conn")
        return
    path = str(tmp_path / "app.db")
    sqlite_migrate(path)
    lite = sqlite3.connect(path)
    try:
        yield lite
    finally:
        lite.close()


@contextmanager
def _transaction(conn: Any) -> Iterator[None]:
    """One transaction of the caller's, on either backend."""
    if isinstance(conn, sqlite3.Connection):
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        return
    with conn.transaction():
        yield


def _select(conn: Any, statement: str, *params: Any) -> Any:
    """``statement`` (``{t}`` for the table prefix, ``?`` placeholders) on either backend."""
    if isinstance(conn, sqlite3.Connection):
        return conn.execute(statement.format(t="queuert_"), [str(p) for p in params]).fetchone()
    return conn.execute(statement.format(t="queuert.").replace("?", "%s"), params).fetchone()


def _row(conn: Any, job_id: Any) -> tuple[Any, ...]:
    """The job's stored traceparent and its chain's (SQLite keeps the
    chain's on the root only)."""
    if isinstance(conn, sqlite3.Connection):
        statement = (
            "SELECT j.trace_context, r.trace_context FROM {t}job AS j JOIN {t}job AS r ON r.id = j.chain_id"
            " WHERE j.id = ?"
        )
    else:
        statement = "SELECT trace_context, chain_trace_context FROM {t}job WHERE id = ?"
    row = _select(conn, statement, job_id)
    assert row is not None
    return tuple(row)


def test_start_chain_is_a_producer_span_under_the_callers_span_reported_at_commit(
    conn: psycopg.Connection[Any], sdk: Sdk
) -> None:
    tracer = sdk.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("request") as request:
        with queuert.transaction_hooks():
            with conn.transaction():
                started = queuert.start_chain(conn, "welcome", {"user": 7})
                # not reported before the commit
                assert sdk.named("create welcome") == []
    (span,) = sdk.named("create welcome")
    assert span.kind == SpanKind.PRODUCER
    assert span.parent is not None and span.parent.span_id == request.get_span_context().span_id
    assert span.context.trace_id == request.get_span_context().trace_id
    assert span.attributes is not None
    assert span.attributes["messaging.system"] == "queuert"
    assert span.attributes["messaging.operation.type"] == "create"
    assert span.attributes["messaging.destination.name"] == "welcome"
    assert span.attributes["messaging.message.id"] == str(started.id)
    assert span.attributes["queuert.chain.id"] == str(started.chain_id)
    assert span.attributes["queuert.deduplicated"] is False
    # the row stores the span's traceparent, as the chain's too
    assert _row(conn, started.id) == (traceparent_of(span), traceparent_of(span))
    assert sdk.counter("queuert.jobs.created", **{"messaging.destination.name": "welcome"}) == 1
    assert sdk.counter("queuert.chains.created") == 1


def test_a_given_trace_context_is_the_parent(conn: psycopg.Connection[Any], sdk: Sdk) -> None:
    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    started = queuert.start_chain(conn, "t", trace_context=given)
    conn.commit()
    (span,) = sdk.named("create t")
    assert f"{span.context.trace_id:032x}" == "0af7651916cd43dd8448eb211c80319c"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "b7ad6b7169203331"
    assert _row(conn, started.id)[0] == traceparent_of(span)


def test_rolled_back_start_reports_no_successful_creation(conn: psycopg.Connection[Any], sdk: Sdk) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        with queuert.transaction_hooks():
            with conn.transaction():
                queuert.start_chain(conn, "gone", {"x": 1})
                queuert.start_chains(conn, [queuert.ChainSpec("gone", 2)])
                raise Abort
    spans = sdk.named("create gone")
    assert len(spans) == 2
    for span in spans:
        assert span.status.status_code == StatusCode.ERROR
        assert span.attributes is not None and span.attributes["queuert.rolled_back"] is True
    assert conn.execute("SELECT count(*) FROM queuert.job").fetchone() == (0,)
    assert sdk.counter("queuert.jobs.created") == 0


def test_a_statement_that_fails_reports_nothing(conn: psycopg.Connection[Any], sdk: Sdk) -> None:
    missing = "00000000-0000-7000-8000-000000000001"
    with pytest.raises(queuert.ChainNotFoundError):
        queuert.start_chain(conn, "waits", blockers=[missing])
    conn.rollback()
    assert sdk.named("create waits") == []


def test_deduplicated_start_is_marked_and_links_to_the_existing_chain(
    either: Any, sdk: Sdk
) -> None:
    first = queuert.start_chain(either, "once", dedup_key="k")
    again = queuert.start_chain(either, "once", dedup_key="k")
    either.commit()
    assert again.deduplicated and again.id == first.id
    original, dup = sdk.named("create once")
    assert dup.attributes is not None and dup.attributes["queuert.deduplicated"] is True
    (link,) = dup.links
    assert link.context.span_id == original.context.span_id
    assert link.attributes is not None and link.attributes["queuert.link.kind"] == "deduplicated_to"
    assert sdk.counter("queuert.jobs.created") == 1  # not new work


def test_start_chains_deduplicated_items_are_marked_and_link_to_the_chain_they_resolved_to(
    either: Any, sdk: Sdk
) -> None:
    existing = queuert.start_chain(either, "once", dedup_key="k1")
    either.commit()
    started = queuert.start_chains(
        either,
        [
            queuert.ChainSpec("once", 1, dedup_key="k1"),  # an existing chain
            queuert.ChainSpec("once", 2, dedup_key="k2"),  # new
            queuert.ChainSpec("once", 3, dedup_key="k2"),  # the item before it
        ],
    )
    either.commit()
    assert [c.deduplicated for c in started] == [True, False, True]
    assert started[0].id == existing.id and started[2].id == started[1].id
    original, dup_existing, fresh, dup_batch = sdk.named("create once")
    for span, deduplicated in ((dup_existing, True), (fresh, False), (dup_batch, True)):
        assert span.attributes is not None
        assert span.attributes["queuert.deduplicated"] is deduplicated
    # each duplicate links to the creation of the chain it resolved to
    for dup, target, chain in ((dup_existing, original, existing), (dup_batch, fresh, started[1])):
        (link,) = dup.links
        assert link.context.span_id == target.context.span_id
        assert link.attributes is not None
        assert link.attributes["queuert.link.kind"] == "deduplicated_to"
        assert link.attributes["queuert.chain.id"] == str(chain.id)
    assert list(fresh.links) == []
    assert _row(either, started[1].id) == (traceparent_of(fresh), traceparent_of(fresh))  # a duplicate's own is stored nowhere
    assert sdk.counter("queuert.jobs.created") == 2  # the first start and the new item


def test_complete_chain_of_a_blocker_resolves_the_waiting_job_in_its_trace(
    either: Any, sdk: Sdk
) -> None:
    blocker = queuert.start_chain(either, "fetch")
    either.commit()
    tracer = sdk.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("POST /report"):
        waiting = queuert.start_chain(either, "report", blockers=[blocker.id])
    either.commit()
    with tracer.start_as_current_span("webhook"):
        with queuert.transaction_hooks():
            with _transaction(either):
                queuert.complete_chain(either, blocker.id, {"fetched": 1})
                assert sdk.named("resolve report") == []  # not before the commit
    (create_fetch,) = sdk.named("create fetch")
    (create_report,) = sdk.named("create report")
    (settle,) = sdk.named("settle fetch")
    (resolve,) = sdk.named("resolve report")
    # in the blocker's trace, under the span that completed it ...
    assert resolve.parent is not None and resolve.parent.span_id == settle.context.span_id
    assert resolve.context.trace_id == create_fetch.context.trace_id != create_report.context.trace_id
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
    # the edge stores both ends: the waiting job's creation and the completion
    edge = _select(
        either, "SELECT trace_context, resolved_trace_context FROM {t}job_blocker WHERE job_id = ?", waiting.id
    )
    assert edge == (traceparent_of(create_report), traceparent_of(settle))


def test_start_chains_one_span_per_item_with_blockers(conn: psycopg.Connection[Any], sdk: Sdk) -> None:
    root = queuert.start_chain(conn, "first")
    started = queuert.start_chains(
        conn, [queuert.ChainSpec("item", 1), queuert.ChainSpec("item", 2, blockers=[root.id])]
    )
    conn.commit()
    spans = sdk.named("create item")
    assert [s.attributes["messaging.message.id"] for s in spans if s.attributes] == [
        str(c.id) for c in started
    ]
    assert spans[1].attributes is not None
    assert spans[1].attributes["queuert.job.status"] == "blocked"
    assert list(spans[1].attributes["queuert.blockers"]) == [str(root.id)]
    for chain, span in zip(started, spans):
        assert _row(conn, chain.id) == (traceparent_of(span), traceparent_of(span))


def test_workerless_continue_and_complete_stay_in_the_chains_trace(either: Any, sdk: Sdk) -> None:
    started = queuert.start_chain(either, "order")
    either.commit()
    tracer = sdk.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("api handler"):
        with queuert.transaction_hooks():
            with _transaction(either):
                done = queuert.complete_chain(
                    either, started.id, continue_with=queuert.continue_with("ship", {"to": "x"})
                )
                assert sdk.named("create ship") == sdk.named("settle order") == []  # not before the commit
        with queuert.transaction_hooks():
            with _transaction(either):
                final = queuert.complete_chain(either, started.id, {"shipped": True})
    (create_order,) = sdk.named("create order")
    (settle_order,) = sdk.named("settle order")
    (create_ship,) = sdk.named("create ship")
    (settle_ship,) = sdk.named("settle ship")
    assert settle_order.kind == SpanKind.CLIENT
    assert settle_order.parent is not None and settle_order.parent.span_id == create_order.context.span_id
    assert create_ship.parent is not None and create_ship.parent.span_id == settle_order.context.span_id
    assert [link.context.span_id for link in create_ship.links] == [create_order.context.span_id]
    assert settle_ship.parent is not None and settle_ship.parent.span_id == create_ship.context.span_id
    trace_ids = {s.context.trace_id for s in (create_order, settle_order, create_ship, settle_ship)}
    assert len(trace_ids) == 1
    assert settle_ship.attributes is not None
    assert settle_ship.attributes["queuert.chain.completed"] is True
    assert [e.name for e in settle_ship.events] == ["queuert.chain.completed"]
    assert done.continued_to is not None
    assert create_ship.attributes is not None and settle_order.attributes is not None
    assert create_ship.attributes["messaging.message.id"] == str(done.continued_to.id)
    assert settle_order.attributes["messaging.message.id"] == str(done.job_id) == str(started.id)
    assert settle_order.attributes["queuert.outcome"] == "continued"
    assert _row(either, done.continued_to.id) == (traceparent_of(create_ship), traceparent_of(create_order))
    assert final.chain_completed
    assert sdk.counter("queuert.chains.completed", **{"messaging.destination.name": "order"}) == 1
    assert sdk.counter("queuert.continuations") == 1
    assert sdk.histogram_count("queuert.chain.duration") == 1


def test_switched_off_emits_nothing(conn: psycopg.Connection[Any], sdk: Sdk) -> None:
    telemetry.set_enabled(False)
    try:
        started = queuert.start_chain(conn, "quiet", trace_context="tc-app")
        queuert.complete_chain(conn, started.id, {"ok": 1})
        conn.commit()
    finally:
        telemetry.set_enabled(True)
    assert sdk.finished() == []
    assert sdk.metric_points() == {}
    assert _row(conn, started.id) == ("tc-app", "tc-app")


def test_no_sdk_configured_the_paths_run_and_emit_nothing(conn: psycopg.Connection[Any]) -> None:
    assert switch.tracer() is None and switch.meter() is None
    started = queuert.start_chain(conn, "plain", trace_context="tc-app")
    many = queuert.start_chains(conn, [queuert.ChainSpec("plain", 1, trace_context="tc-2")])
    queuert.complete_chain(conn, started.id, continue_with=queuert.continue_with("next"))
    queuert.complete_chain(conn, started.id, None)
    conn.commit()
    # what the caller gave is stored as given: no span replaced it
    assert _row(conn, started.id) == ("tc-app", "tc-app")
    assert _row(conn, many[0].id) == ("tc-2", "tc-2")
    assert switch.tracer() is None and switch.meter() is None


async def test_async_client_rollback_and_commit(aconn: psycopg.AsyncConnection[Any], sdk: Sdk) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with queuert.transaction_hooks():
            async with aconn.transaction():
                await aio.start_chain(aconn, "async-gone")
                raise Abort
    async with queuert.transaction_hooks():
        async with aconn.transaction():
            kept = await aio.start_chain(aconn, "async-kept")
    (gone,) = sdk.named("create async-gone")
    (span,) = sdk.named("create async-kept")
    assert gone.status.status_code == StatusCode.ERROR
    assert span.status.status_code == StatusCode.UNSET
    cur = await aconn.execute("SELECT trace_context FROM queuert.job WHERE id = %s", (kept.id,))
    assert await cur.fetchone() == (traceparent_of(span),)
    assert sdk.counter("queuert.chains.created") == 1


def test_sqlite_client_calls_are_traced_too(tmp_path: Path, sdk: Sdk) -> None:
    path = str(tmp_path / "app.db")
    sqlite_migrate(path)
    conn = sqlite3.connect(path)
    try:
        started = queuert.start_chain(conn, "lite", {"n": 1})
        many = queuert.start_chains(conn, [queuert.ChainSpec("lite", 2)])
        conn.commit()
        stored = [row[0] for row in conn.execute("SELECT trace_context FROM queuert_job ORDER BY seq")]
    finally:
        conn.close()
    spans = sdk.named("create lite")
    assert [s.attributes["messaging.message.id"] for s in spans if s.attributes] == [
        str(started.id),
        str(many[0].id),
    ]
    assert stored == [traceparent_of(s) for s in spans]


NO_OTEL = """
import sys
sys.modules["opentelemetry"] = None  # as if opentelemetry-api were not installed
import psycopg, queuert
from queuert.telemetry import switch
with psycopg.connect(sys.argv[1]) as conn:
    started = queuert.start_chain(conn, "bare", trace_context="tc")
    queuert.complete_chain(conn, started.id, {"ok": True})
    conn.commit()
    stored = conn.execute("SELECT trace_context FROM queuert.job WHERE id = %s", (started.id,)).fetchone()
assert stored == ("tc",), stored
assert switch.tracer() is None and switch.meter() is None
print("ok")
"""


def test_without_opentelemetry_installed_the_client_works(dsn: str) -> None:
    out = subprocess.run([sys.executable, "-c", NO_OTEL, dsn], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_traces_and_metrics_switch_apart(conn: psycopg.Connection[Any], sdk: Sdk) -> None:
    telemetry.set_enabled(traces=False)
    try:
        queuert.start_chain(conn, "counted")
        conn.commit()
    finally:
        telemetry.set_enabled(True)
    assert sdk.finished() == []
    assert sdk.counter("queuert.chains.created") == 1
    telemetry.set_enabled(metrics=False)
    try:
        queuert.start_chain(conn, "traced")
        conn.commit()
    finally:
        telemetry.set_enabled(True)
    assert [s.name for s in sdk.finished()] == ["create traced"]
    assert sdk.counter("queuert.chains.created") == 1  # still the first one only
