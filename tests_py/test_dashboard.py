"""The dashboard's pages and JSON API through Starlette's TestClient, against
a real PostgreSQL (a fresh database per test): filters, keyset pages,
unknown ids, refusals (QU005, CSRF, read-only, authorize), escaping."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from dashboard_seed import complete, continue_with, fail_for_good, snapshot, start, status_of
from starlette.testclient import TestClient

from queuert.dashboard import create_dashboard

Conn = psycopg.Connection[Any]


@pytest.fixture
def db(dsn: str) -> Iterator[Conn]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def client_for(dsn: str) -> Iterator[Callable[..., TestClient]]:
    opened: list[TestClient] = []

    def make(**settings: Any) -> TestClient:
        client = TestClient(create_dashboard(dsn, **settings))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def client(client_for: Callable[..., TestClient]) -> TestClient:
    return client_for()


def token(client: TestClient) -> str:
    got = client.get("/api/csrf")
    assert got.status_code == 200
    return str(got.json()["csrf_token"])


def post(client: TestClient, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, json=body, headers={"X-CSRF-Token": token(client)})


def form_token(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF field in the page"
    return m.group(1)


# -- reads ---------------------------------------------------------------------


def test_overview_counts_types_failures_and_workers(db: Conn, client: TestClient) -> None:
    start(db, "mail")
    start(db, "mail")
    complete(db, "mail", {"ok": True})
    start(db, "report")
    failed = fail_for_good(db, "report", "RuntimeError: printer on fire\nTraceback (most recent call last): ...")
    start(db, "resize")
    db.execute("SELECT id FROM queuert.claim('worker-a', ARRAY['resize'])")

    data = client.get("/api/overview").json()
    by_type = {t["type_name"]: t for t in data["types"]}
    assert by_type["mail"]["counts"]["pending"] == 1 and by_type["mail"]["counts"]["completed"] == 1
    assert by_type["mail"]["completed_recently"] == 1
    assert by_type["report"]["counts"]["failed"] == 1 and by_type["report"]["failed_recently"] == 1
    assert data["totals"] == {"blocked": 0, "pending": 1, "running": 1, "completed": 1, "failed": 1, "cancelled": 0}
    assert [f["job_id"] for f in data["recent_failures"]] == [str(failed)]
    assert [(w["worker_id"], w["running"], w["type_names"]) for w in data["workers"]] == [
        ("worker-a", 1, ["resize"])
    ]

    page = client.get("/")
    assert page.status_code == 200
    assert "printer on fire" in page.text and "worker-a" in page.text
    assert f'/chains/{failed}' in page.text


def test_chain_list_filters(db: Conn, client: TestClient) -> None:
    mail = [start(db, "mail", {"n": i}) for i in range(3)]
    report = start(db, "report")
    fail_for_good(db, "report")
    child = start(db, "child")
    parent = start(db, "parent", blockers=[child])
    two_steps = start(db, "signup")
    second = continue_with(db, "signup", "welcome")

    def ids(**query: Any) -> list[str]:
        got = client.get("/api/chains", params=query)
        assert got.status_code == 200, got.text
        return [c["chain_id"] for c in got.json()["chains"]]

    assert set(ids(type="mail")) == {str(i) for i in mail}
    assert ids(status="failed") == [str(report)]
    assert ids(status="blocked") == [str(parent)]
    assert set(ids(status=["blocked", "failed"])) == {str(parent), str(report)}
    assert ids(type="mail", status="failed") == []
    # by chain id, and by the id of any of its jobs
    assert ids(id=str(two_steps)) == [str(two_steps)]
    assert ids(id=str(second)) == [str(two_steps)]
    assert ids(id=str(uuid.uuid4())) == []
    # chains that exist only as someone's blocker can be hidden
    assert str(child) in ids() and str(child) not in ids(hide_blockers="1")
    listed = client.get("/api/chains", params={"id": str(two_steps)}).json()["chains"][0]
    assert (listed["status"], listed["current_type_name"], listed["job_count"]) == ("pending", "welcome", 2)

    # created time range: move one chain's creation back a day (tests may
    # shape rows; the dashboard never writes)
    db.execute("UPDATE queuert.job SET created_at = now() - interval '1 day' WHERE chain_id = %s", (report,))
    recent = ids(**{"from": _iso_ago(db, "2 hours")})
    assert str(report) not in recent and str(mail[0]) in recent
    old = ids(to=_iso_ago(db, "2 hours"))
    assert old == [str(report)]


def _iso_ago(db: Conn, interval: str) -> str:
    row = db.execute("SELECT (now() - %s::interval)::text", (interval,)).fetchone()
    assert row is not None
    return str(row[0]).replace(" ", "T")


def test_pages_cover_every_chain_once_newest_first(db: Conn, client: TestClient) -> None:
    # one transaction: 12 chains share created_at, so the id breaks the tie
    with db.transaction():
        for i in range(12):
            start(db, "tie", {"i": i})
    for i in range(9):
        start(db, "tie", {"i": 100 + i})
    expected = [
        str(r[0])
        for r in db.execute(
            "SELECT id FROM queuert.job WHERE chain_index = 0 ORDER BY created_at DESC, id DESC"
        ).fetchall()
    ]
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        params = {"limit": "4", **({"after": after} if after else {})}
        data = client.get("/api/chains", params=params).json()
        seen += [c["chain_id"] for c in data["chains"]]
        pages += 1
        after = data["next_cursor"]
        if after is None:
            break
    assert seen == expected and len(seen) == 21 and pages == 6

    # the HTML pager walks the same way
    html_seen: list[str] = []
    url: str | None = "/chains?limit=5"
    while url:
        page = client.get(url)
        html_seen += re.findall(r'<tr data-chain-id="([0-9a-f-]+)">', page.text)
        m = re.search(r'id="next-page" href="([^"]+)"', page.text)
        url = m.group(1).replace("&amp;", "&") if m else None
    assert html_seen == expected


def test_a_walk_that_stops_at_its_scan_limit_resumes_without_gaps(db: Conn) -> None:
    """dashboard_chains reads at most scan_limit roots per call; a rare
    match is then found by following the cursor rows."""
    with db.transaction():
        for i in range(30):
            start(db, "rare" if i in (3, 17, 18, 29) else "common", {"i": i})
    expected = [
        r[0]
        for r in db.execute(
            "SELECT id FROM queuert.job WHERE type_name = 'rare' ORDER BY created_at DESC, id DESC"
        ).fetchall()
    ]
    found: list[uuid.UUID] = []
    after: tuple[Any, Any] = (None, None)
    calls = 0
    while True:
        rows = db.execute(
            "SELECT chain_id, created_at, is_cursor FROM queuert.dashboard_chains("
            "chain_type => 'rare', after_created_at => %s, after_id => %s, max_rows => 2, scan_limit => 5)",
            after,
        ).fetchall()
        calls += 1
        found += [r[0] for r in rows if not r[2]]
        cursor = [r for r in rows if r[2]]
        assert len(cursor) <= 1 and all(not r[2] for r in rows[:-1])
        if not cursor:
            break
        after = (cursor[0][1], cursor[0][0])
    assert found == expected
    assert calls >= 6  # 30 roots, 5 per walk


def test_failed_filter_reads_the_failed_index_and_agrees_with_the_walk(db: Conn) -> None:
    with db.transaction():
        for i in range(40):
            start(db, "f", {"i": i})
    for _ in range(7):
        fail_for_good(db, "f")

    def page(scan_limit: int) -> list[Any]:
        return db.execute(
            "SELECT chain_id, is_cursor FROM queuert.dashboard_chains(statuses => '{failed}',"
            " max_rows => 5, scan_limit => %s)",
            (scan_limit,),
        ).fetchall()

    sparse = page(1)  # few failed jobs: the index path, whatever the scan limit
    dense = db.execute(
        "SELECT chain_id FROM queuert.chain WHERE status = 'failed' ORDER BY created_at DESC, chain_id DESC LIMIT 5"
    ).fetchall()
    assert [r[0] for r in sparse if not r[1]] == [r[0] for r in dense]
    assert sparse[-1][1] is True  # 7 failed: a cursor for the next page


def test_chain_and_job_pages(db: Conn, client: TestClient) -> None:
    child = start(db, "child")
    parent = start(db, "parent", {"order": 7}, blockers=[child])
    other = start(db, "other")
    step2 = continue_with(db, "other", "other-step")
    complete(db, "other-step", {"done": True})

    chain = client.get(f"/api/chains/{parent}").json()
    assert chain["status"] == "blocked"
    assert [(w["other_chain_id"], w["other_status"]) for w in chain["waits_on"]] == [(str(child), "pending")]
    child_view = client.get(f"/api/chains/{child}").json()
    assert [w["other_chain_id"] for w in child_view["waited_by"]] == [str(parent)]
    done = client.get(f"/api/chains/{other}").json()
    assert done["status"] == "completed" and done["output"] == {"done": True}
    assert [(j["chain_index"], j["type_name"]) for j in done["jobs"]] == [(0, "other"), (1, "other-step")]

    html = client.get(f"/chains/{parent}").text
    assert "<svg" in html and f"/chains/{child}" in html and 'class="edge e-blocker"' in html
    html = client.get(f"/chains/{other}").text
    assert 'class="edge e-continue"' in html and f"/jobs/{step2}" in html

    job = client.get(f"/api/jobs/{parent}").json()
    assert job["input"] == {"order": 7} and job["status"] == "blocked"
    assert [b["other_chain_id"] for b in job["blockers"]] == [str(child)]
    assert "seq" not in job
    page = client.get(f"/jobs/{step2}").text
    assert "other-step" in page and "seed-worker" in page


def test_job_page_shows_error_traceback_lease_and_trace(db: Conn, client: TestClient) -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    start(db, "traced", trace_context=trace)
    failed = fail_for_good(db, "traced", "KeyError: 'x'\n\nTraceback (most recent call last):\n  File \"h.py\", line 3")
    start(db, "leased")
    running = db.execute("SELECT id FROM queuert.claim('lease-holder-1', ARRAY['leased'])").fetchone()
    assert running is not None
    html = client.get(f"/jobs/{failed}").text
    assert "4bf92f3577b34da6a3ce929d0e0e4736" in html
    assert "Traceback (most recent call last):" in html and "KeyError: &#39;x&#39;" in html
    assert "lease-holder-1" in client.get(f"/jobs/{running[0]}").text


def test_long_values_are_folded(db: Conn, client: TestClient) -> None:
    job = start(db, "big", {"blob": "x" * 5000, "items": list(range(100))})
    html = client.get(f"/jobs/{job}").text
    assert '<details class="fold">' in html and "5000 characters" in html and "80 more items" in html


def test_unknown_and_malformed_ids(client: TestClient) -> None:
    missing = uuid.uuid4()
    for path in (f"/chains/{missing}", f"/jobs/{missing}", f"/find?id={missing}"):
        got = client.get(path)
        assert got.status_code == 404 and str(missing) in got.text
    for path in (f"/api/chains/{missing}", f"/api/jobs/{missing}"):
        got = client.get(path)
        assert got.status_code == 404 and got.json()["error"]["code"] == "not_found"
    bad = client.get("/api/chains/not-a-uuid")
    assert bad.status_code == 400 and "not a UUID" in bad.json()["error"]["message"]
    assert client.get("/api/chains", params={"status": "exploded"}).status_code == 400
    assert client.get("/api/chains", params={"after": "garbage!"}).status_code == 400
    assert client.get("/api/chains", params={"limit": "0"}).status_code == 400
    assert client.get("/chains", params={"from": "yesterday"}).status_code == 400


def test_find_goes_to_the_chain_or_the_job(db: Conn, client: TestClient) -> None:
    root = start(db, "a")
    second = continue_with(db, "a", "b")
    got = client.get(f"/find?id={root}", follow_redirects=False)
    assert got.status_code == 303 and got.headers["location"] == f"/chains/{root}"
    got = client.get(f"/find?id={second}", follow_redirects=False)
    assert got.headers["location"] == f"/jobs/{second}"


def test_output_is_escaped(db: Conn, client: TestClient) -> None:
    evil = "<script>alert('x')</script>"
    job = start(db, evil, {"note": evil, evil: 1})
    fail_for_good(db, evil, evil)
    for path in ("/", "/chains", f"/chains/{job}", f"/jobs/{job}"):
        html = client.get(path).text
        assert "<script>alert" not in html, path
        assert "&lt;script&gt;alert(" in html, path


def test_filters_are_parameters_not_sql(db: Conn, client: TestClient) -> None:
    start(db, "safe")
    before = snapshot(db)
    got = client.get("/api/chains", params={"type": "x'; DELETE FROM queuert.job; --"})
    assert got.status_code == 200 and got.json()["chains"] == []
    assert snapshot(db) == before


# -- actions -------------------------------------------------------------------


def test_retry_trigger_cancel_delete_through_the_api(db: Conn, client: TestClient) -> None:
    failed_chain = start(db, "flaky")
    failed_job = fail_for_good(db, "flaky")
    later = start(db, "later", schedule_after="1 hour")
    doomed = start(db, "doomed")
    gone = start(db, "gone")

    got = post(client, "/api/jobs/retry", {"job_ids": [str(failed_job)]})
    assert got.status_code == 200, got.text
    assert got.json()["job_ids"] == [str(failed_job)] and status_of(db, failed_chain) == "pending"

    assert post(client, "/api/jobs/trigger", {"job_ids": [str(later)]}).status_code == 200
    due = db.execute("SELECT scheduled_at <= now() FROM queuert.job WHERE id = %s", (later,)).fetchone()
    assert due == (True,)

    assert post(client, "/api/chains/cancel", {"chain_ids": [str(doomed)]}).status_code == 200
    assert status_of(db, doomed) == "cancelled"

    assert post(client, "/api/chains/delete", {"chain_ids": [str(gone)]}).json()["chain_ids"] == [str(gone)]
    assert db.execute("SELECT count(*) FROM queuert.job WHERE id = %s", (gone,)).fetchone() == (0,)

    # the engine's refusals: 409 for the wrong status, 404 for an unknown job
    wrong = post(client, "/api/jobs/retry", {"job_ids": [str(later)]})
    assert wrong.status_code == 409 and wrong.json()["error"]["sqlstate"] == "QU003"
    unknown = post(client, "/api/jobs/retry", {"job_ids": [str(uuid.uuid4())]})
    assert unknown.status_code == 404 and unknown.json()["error"]["sqlstate"] == "QU001"
    assert post(client, "/api/jobs/retry", {"job_ids": ["nope"]}).status_code == 400
    assert post(client, "/api/chains/cancel", {"chain_ids": [str(doomed)], "cascade": "yes"}).status_code == 400


def test_delete_refused_by_qu005_lists_the_waiting_chains(db: Conn, client: TestClient) -> None:
    blocker = start(db, "blocker")
    waiting = [start(db, "fan-in", {"n": i}, blockers=[blocker]) for i in range(3)]
    before = snapshot(db)

    got = post(client, "/api/chains/delete", {"chain_ids": [str(blocker)]})
    assert got.status_code == 409
    err = got.json()["error"]
    assert err["sqlstate"] == "QU005" and err["code"] == "has_dependents"
    assert {d["chain_id"] for d in err["dependents"]} == {str(w) for w in waiting}
    assert snapshot(db) == before

    # the HTML form shows the same refusal as a page, not a stack trace
    html = client.get(f"/chains/{blocker}").text
    page = client.post(
        "/chains/delete",
        data={"csrf_token": form_token(html), "chain_id": str(blocker), "next": f"/chains/{blocker}"},
    )
    assert page.status_code == 409 and "Chains waiting on it" in page.text
    for w in waiting:
        assert f"/chains/{w}" in page.text
    assert "Traceback" not in page.text and snapshot(db) == before

    # cascade from the dependents' side takes the blocker along
    for w in waiting[:2]:
        assert post(client, "/api/chains/cancel", {"chain_ids": [str(w)]}).status_code == 200
    got = post(client, "/api/chains/delete", {"chain_ids": [str(w) for w in waiting], "cascade": True})
    assert got.status_code == 200 and db.execute("SELECT count(*) FROM queuert.job").fetchone() == (0,)


def test_forms_redirect_back_with_a_notice(db: Conn, client: TestClient) -> None:
    chain = start(db, "flaky")
    job = fail_for_good(db, "flaky")
    html = client.get(f"/chains/{chain}").text
    assert 'data-action="retry"' in html
    got = client.post(
        "/jobs/retry",
        data={"csrf_token": form_token(html), "job_id": str(job), "next": f"/chains/{chain}"},
        follow_redirects=False,
    )
    assert got.status_code == 303 and got.headers["location"] == f"/chains/{chain}"
    assert status_of(db, chain) == "pending"
    assert "Retried 1 job" in client.get(got.headers["location"]).text
    # an outside `next` is never followed
    fail_for_good(db, "flaky")
    got = client.post(
        "/jobs/retry",
        data={"csrf_token": form_token(html), "job_id": str(job), "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert got.status_code == 303 and got.headers["location"] == "/chains"


def test_bulk_actions_from_the_list(db: Conn, client: TestClient) -> None:
    chains = [start(db, "bulk", {"i": i}) for i in range(3)]
    jobs = [fail_for_good(db, "bulk") for _ in range(3)]
    other = start(db, "other-type")
    fail_for_good(db, "other-type")
    html = client.get("/chains?status=failed").text
    pairs = [f"{c} {j}" for c, j in zip(chains, jobs)]
    got = client.post(
        "/chains/act",
        data={"csrf_token": form_token(html), "action": "retry", "selected": pairs[:2], "next": "/chains"},
        follow_redirects=False,
    )
    assert got.status_code == 303
    assert sorted(status_of(db, c) for c in chains) == ["failed", "pending", "pending"]

    # retry every failed chain of one type: the other type stays failed
    got = client.post(
        "/chains/retry-failed",
        data={"csrf_token": form_token(html), "type": "bulk", "next": "/chains?type=bulk"},
        follow_redirects=False,
    )
    assert got.status_code == 303 and got.headers["location"] == "/chains?type=bulk"
    assert [status_of(db, c) for c in chains] == ["pending"] * 3 and status_of(db, other) == "failed"
    api = post(client, "/api/chains/retry-failed", {"type": "other-type"})
    assert api.status_code == 200 and api.json()["more"] is False and status_of(db, other) == "pending"


def test_posts_without_the_csrf_token_are_refused(db: Conn, client: TestClient) -> None:
    start(db, "flaky")
    job = fail_for_good(db, "flaky")
    before = snapshot(db)
    assert client.post("/api/jobs/retry", json={"job_ids": [str(job)]}).status_code == 403
    token(client)  # the cookie is there now, but the header is not
    assert client.post("/api/jobs/retry", json={"job_ids": [str(job)]}).status_code == 403
    wrong = client.post("/api/jobs/retry", json={"job_ids": [str(job)]}, headers={"X-CSRF-Token": "x" * 43})
    assert wrong.status_code == 403 and "CSRF" in wrong.json()["error"]["message"]
    form = client.post("/jobs/retry", data={"job_id": str(job)})
    assert form.status_code == 403 and "CSRF" in form.text
    # a GET never changes anything
    assert client.get("/jobs/retry").status_code in (400, 404, 405)
    assert snapshot(db) == before


def test_read_only_hides_and_refuses_actions(db: Conn, client_for: Callable[..., TestClient]) -> None:
    client = client_for(read_only=True)
    chain = start(db, "flaky")
    job = fail_for_good(db, "flaky")
    before = snapshot(db)
    html = client.get(f"/chains/{chain}").text
    assert "read-only" in html and "data-action=" not in html
    assert 'name="selected"' not in client.get("/chains").text
    got = post(client, "/api/jobs/retry", {"job_ids": [str(job)]})
    assert got.status_code == 403 and "read-only" in got.json()["error"]["message"]
    page = client.post("/jobs/retry", data={"csrf_token": token(client), "job_id": str(job)})
    assert page.status_code == 403
    assert snapshot(db) == before


def test_authorize_hook_decides_per_action(db: Conn, client_for: Callable[..., TestClient]) -> None:
    calls: list[str] = []

    async def authorize(request: Any, action: str) -> bool:
        calls.append(action)
        if request.headers.get("x-user") == "intruder":
            return False
        return action != "delete"

    client = client_for(authorize=authorize)
    chain = start(db, "flaky")
    fail_for_good(db, "flaky")
    html = client.get(f"/chains/{chain}").text
    assert 'data-action="retry"' in html and 'data-action="delete"' not in html
    assert "view" in calls
    got = post(client, "/api/chains/delete", {"chain_ids": [str(chain)]})
    assert got.status_code == 403 and status_of(db, chain) == "failed"
    assert client.get("/", headers={"x-user": "intruder"}).status_code == 403
    assert client.get("/api/overview", headers={"x-user": "intruder"}).status_code == 403


def test_mounted_under_a_sub_path_of_a_host_app(db: Conn, dsn: str) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Mount, Route

    chain = start(db, "mounted")
    host = Starlette(routes=[
        Route("/", lambda request: PlainTextResponse("host home")),
        Mount("/admin/queuert", app=create_dashboard(dsn)),
    ])
    with TestClient(host) as client:
        assert client.get("/").text == "host home"
        first = client.get("/admin/queuert/chains")
        assert "Path=/admin/queuert;" in first.headers["set-cookie"]
        html = first.text
        assert f'href="/admin/queuert/chains/{chain}"' in html
        assert 'href="/admin/queuert/static/dashboard.css"' in html
        assert client.get("/admin/queuert/static/dashboard.css").status_code == 200
        got = client.get(f"/admin/queuert/find?id={chain}", follow_redirects=False)
        assert got.headers["location"] == f"/admin/queuert/chains/{chain}"
        assert client.get("/admin/queuert/api/chains/nope").json()["error"]["code"] == "bad_request"


def test_the_dashboard_roles_of_security_md(db: Conn, dsn: str, base_dsn: str) -> None:
    """Runs the grants docs/security.md gives a read-only and an operator
    role (under unique role names), then browses and acts as each."""
    from pathlib import Path

    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    doc = (Path(__file__).resolve().parents[1] / "docs" / "security.md").read_text()
    block = re.search(r"## A role for the dashboard.*?```sql\n(.*?)```", doc, flags=re.S)
    assert block, "security.md has no SQL block for the dashboard roles"
    suffix = uuid.uuid4().hex[:8]
    viewer, operator = f"queuert_viewer_{suffix}", f"queuert_operator_{suffix}"
    script = block.group(1).replace("queuert_viewer", viewer).replace("queuert_operator", operator)
    chain = start(db, "flaky")
    job = fail_for_good(db, "flaky")

    def as_role(role: str) -> str:
        params = conninfo_to_dict(dsn)
        params["user"] = role
        return make_conninfo(**params)  # type: ignore[arg-type]

    try:
        db.execute(script.encode())  # CREATE ROLE ... and the GRANTs, as written
        with TestClient(create_dashboard(as_role(viewer))) as client:
            for path in ("/", f"/chains/{chain}", f"/jobs/{job}", "/chains?status=failed", "/chains"):
                assert client.get(path).status_code == 200, path
            got = post(client, "/api/jobs/retry", {"job_ids": [str(job)]})
            assert got.status_code == 403 and got.json()["error"]["sqlstate"] == "42501"
        assert status_of(db, chain) == "failed"
        with TestClient(create_dashboard(as_role(operator))) as client:
            assert client.get(f"/chains/{chain}").status_code == 200
            assert post(client, "/api/jobs/retry", {"job_ids": [str(job)]}).status_code == 200
        assert status_of(db, chain) == "pending"
    finally:
        for role in (operator, viewer):
            with psycopg.connect(base_dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
            db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            with psycopg.connect(base_dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_a_pool_of_your_own_and_bad_settings(dsn: str) -> None:
    from psycopg_pool import AsyncConnectionPool

    with pytest.raises(TypeError):
        create_dashboard(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        create_dashboard(dsn, base_path="queuert/")
    with pytest.raises(ValueError):
        create_dashboard(dsn, schema="Bad-Name")

    async def with_pool() -> None:
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(dsn, open=False, min_size=1, max_size=2)
        await pool.open()
        try:
            dash = create_dashboard(pool)
            await dash.aclose()  # not ours to close
            async with pool.connection() as conn:
                assert (await (await conn.execute("SELECT 1")).fetchone()) == (1,)
        finally:
            await pool.close()

    import asyncio

    asyncio.run(with_pool())
