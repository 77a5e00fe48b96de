"""The dashboard in a real browser: Debian's Chromium driven by Playwright
(scripts/ensure-chromium.sh installs it), against uvicorn on a loopback
port, mounted under a sub-path of a host Starlette app, with a real
queuert.Worker running beside it.

Clicks through: overview -> a failed chain -> its failed job -> Retry ->
the worker runs it -> the chain page shows it completed after a reload.
Screenshots go to $QUEUERT_ARTIFACTS (default: pytest's tmp dir).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
from dashboard_seed import complete, fail_for_good, start, status_of
from playwright.sync_api import Page, expect, sync_playwright
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route

import queuert
from queuert.dashboard import create_dashboard

CHROMIUM = os.environ.get("QUEUERT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
MOUNT = "/ops/queuert"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    out = Path(os.environ.get("QUEUERT_ARTIFACTS") or tmp_path / "artifacts")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def host_app_url(dsn: str) -> Iterator[str]:
    """uvicorn serving a host app with the dashboard mounted at MOUNT."""
    host = Starlette(routes=[
        Route("/", lambda request: HTMLResponse("<h1>Host app</h1>")),
        Mount(MOUNT, app=create_dashboard(dsn, refresh_seconds=1)),
    ])
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(host, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextlib.contextmanager
def running_worker(dsn: str) -> Iterator[queuert.Worker]:
    """A worker whose `invoice` handler succeeds, in a thread of its own."""
    w = queuert.Worker(dsn, concurrency=2, poll_interval=0.5)

    @w.handler("invoice")
    async def invoice(job: Any) -> dict[str, Any]:
        return {"paid": job.input["amount"]}

    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def main() -> None:
            task = asyncio.ensure_future(w.run_async())
            await w.wait_started()
            started.set()
            await task

        loop.run_until_complete(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(30), "the worker did not start"
    try:
        yield w
    finally:
        loop.call_soon_threadsafe(w.stop)
        thread.join(60)
        loop.close()


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        try:
            yield context.new_page()
        finally:
            context.close()
            browser.close()


def test_retry_a_failed_chain_from_the_browser(
    dsn: str, host_app_url: str, page: Page, artifacts: Path
) -> None:
    _seed_and_click_through(dsn, host_app_url, page, artifacts)


def _seed_and_click_through(dsn: str, host_app_url: str, page: Page, artifacts: Path) -> None:
    with psycopg.connect(dsn, autocommit=True) as db:
        # history for the overview: a few completed chains of other types
        for i in range(3):
            start(db, "email", {"to": f"user{i}@example.com"})
            complete(db, "email", {"sent": True})
        start(db, "thumbnail", {"image": "cat.png"}, schedule_after="1 hour")
        chain = start(db, "invoice", {"amount": 42, "note": "<script>alert(1)</script>"})
        # failed for good before any worker runs
        failed_job = fail_for_good(db, "invoice", "RuntimeError: payment gateway timed out\n\n"
                                   "Traceback (most recent call last):\n  File \"billing.py\", line 12")
        assert status_of(db, chain) == "failed"
    with running_worker(dsn):
        _click_through(host_app_url, chain, failed_job, page, artifacts)


def _click_through(host_app_url: str, chain: Any, failed_job: Any, page: Page, artifacts: Path) -> None:
    page.goto(host_app_url + "/")
    expect(page.locator("h1")).to_have_text("Host app")

    page.goto(f"{host_app_url}{MOUNT}/")
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.locator("#failures")).to_contain_text("payment gateway timed out")
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)

    # overview -> the failed chain
    page.locator("#failures a", has_text="invoice").first.click()
    expect(page).to_have_url(f"{host_app_url}{MOUNT}/chains/{chain}")
    expect(page.locator("h1 .badge")).to_have_text("failed")
    expect(page.locator("svg.graph")).to_be_visible()
    page.screenshot(path=str(artifacts / "chain-failed.png"), full_page=True)

    # -> its job: the error, the escaped input
    page.locator("#jobs a", has_text=str(failed_job)[:8]).click()
    expect(page).to_have_url(f"{host_app_url}{MOUNT}/jobs/{failed_job}")
    expect(page.locator("#last-error")).to_contain_text("Traceback (most recent call last):")
    expect(page.locator("#input")).to_contain_text("<script>alert(1)</script>")  # as text
    page.screenshot(path=str(artifacts / "job-failed.png"), full_page=True)

    # -> Retry (accepting the confirmation)
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#job-actions button[data-action=retry]").click()
    expect(page.locator(".flash")).to_have_text("Retried 1 job")

    # the worker runs it again; the chain page shows completed on reload
    chain_url = f"{host_app_url}{MOUNT}/chains/{chain}"
    deadline = time.monotonic() + 60
    while True:
        page.goto(chain_url)
        if page.locator("h1 .badge").inner_text() == "completed":
            break
        assert time.monotonic() < deadline, "the retried chain did not complete"
        page.wait_for_timeout(200)
    expect(page.locator("main")).to_contain_text('"paid"')
    page.screenshot(path=str(artifacts / "chain-completed.png"), full_page=True)

    # the list with live refresh on, filtered to the type
    page.goto(f"{host_app_url}{MOUNT}/chains?type=invoice")
    expect(page.locator("#chains tbody tr")).to_have_count(1)
    page.locator("[data-live-toggle]").check()
    expect(page.locator("[data-live-stamp]")).to_contain_text("updated", timeout=15_000)
    page.screenshot(path=str(artifacts / "chains.png"), full_page=True)
