"""The dashboard's live updates in a real browser (headless Chromium): a hidden tab
closes its stream and reopens it when shown; without EventSource the page polls."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest
from dashboard_browser import Page, Server, WorkerThread, chrome
from dashboard_checks import CONFIG, PASSWORD, add_user

import skiplock
from skiplock.dashboard.live import LiveHub

pytestmark = pytest.mark.slow

MODE = "return document.documentElement.dataset.live"
# What a browser does when its tab is hidden or shown, made visible to the page's script.
SET_HIDDEN = (
    "Object.defineProperty(document, 'hidden', {configurable: true, get: () => arguments[0]});"
    " document.dispatchEvent(new Event('visibilitychange'));"
)


@pytest.fixture
def page(dsn: str, conn: psycopg.Connection) -> Iterator[Page]:
    add_user(conn, "boss", "admin")
    driver = chrome()
    server = Server(dsn, CONFIG)
    try:
        opened = Page(driver, server)
        opened.log_in(username="boss", password=PASSWORD)
        yield opened
    finally:
        driver.quit()
        server.stop()


def hub_of(page: Page) -> LiveHub:
    hub: LiveHub = page.server.server.config.app.state.live
    return hub


def test_a_hidden_tab_closes_its_stream_and_reopens_it_when_shown(page: Page, dsn: str) -> None:
    app = skiplock.App(dsn)
    first = app.enqueue("t", {}, queue="q")
    page.open("/jobs?queue=q")
    page.wait(lambda: page.driver.execute_script(MODE) == "stream")
    hub = hub_of(page)
    page.wait(lambda: len(hub.watches) == 1)
    page.driver.execute_script(SET_HIDDEN, True)
    assert page.driver.execute_script(MODE) == "paused"
    # the stream is closed: nothing is sent to a hidden tab
    page.wait(lambda: not hub.watches)
    second = app.enqueue("t", {}, queue="q")
    app.close()
    page.driver.execute_script(SET_HIDDEN, False)
    page.wait(lambda: page.driver.execute_script(MODE) == "stream")
    # the reopened stream's first event brings the list up to date
    page.wait(lambda: str(second) in page.text_of("job-list"))
    assert str(first) in page.text_of("job-list")


def test_without_event_source_the_page_polls(page: Page, dsn: str) -> None:
    page.driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.EventSource;"}
    )
    worker_app = skiplock.App(dsn)
    release = threading.Event()

    @worker_app.task(name="slow")
    def slow() -> None:
        assert release.wait(60)

    job_id = worker_app.enqueue("slow", {}, queue="polled")
    page.open(f"/jobs/{job_id}")
    page.wait(lambda: page.driver.execute_script(MODE) == "poll")
    assert not hub_of(page).watches
    worker = WorkerThread(worker_app, ["polled"])
    try:
        page.wait(lambda: page.text_of("job-status") == "running")
        release.set()
        page.wait(lambda: page.text_of("job-status") == "succeeded")
    finally:
        release.set()
        worker.stop()
        worker_app.close()


def test_a_job_status_is_announced_from_a_summary_that_stays_in_place(page: Page, dsn: str) -> None:
    """The polite summary is changed in place, never replaced: a screen reader announces
    a change only in a live region that was already there."""
    worker_app = skiplock.App(dsn)
    release = threading.Event()

    @worker_app.task(name="slow")
    def slow() -> None:
        assert release.wait(60)

    job_id = worker_app.enqueue("slow", {}, queue="announced")
    page.open(f"/jobs/{job_id}")
    page.wait(lambda: page.driver.execute_script(MODE) == "stream")
    mark = "document.getElementById('job-summary').dataset.marked = 'yes'"
    page.driver.execute_script(mark)
    worker = WorkerThread(worker_app, ["announced"])
    try:
        page.wait(lambda: page.text_of("job-status") == "running")
        release.set()
        page.wait(lambda: page.text_of("job-summary") == "Status succeeded, attempt 1 of 20")
        summary = "const s = document.getElementById('job-summary');"
        kept = page.driver.execute_script(
            summary + " return [s.dataset.marked, s.getAttribute('aria-live')]"
        )
        assert kept == ["yes", "polite"]
    finally:
        release.set()
        worker.stop()
        worker_app.close()
