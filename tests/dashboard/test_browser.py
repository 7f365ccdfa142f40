"""The dashboard in a real browser (headless Chromium) against a real server: logging
in, a job's page following it live, filters, the dead-letter, queue and worker actions,
queue limits, CSRF and read-only mode."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote_plus

import psycopg
import pytest
from dashboard_browser import Page, Server, WorkerThread, chrome
from dashboard_checks import CONFIG, PASSWORD, add_token, add_user, dead_letters
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

import skiplock
from skiplock import store

pytestmark = pytest.mark.slow


@pytest.fixture
def open_page(dsn: str) -> Iterator[Callable[..., Page]]:
    """`open_page(read_only=False)`: a server on this test's database and a browser."""
    servers: list[Server] = []
    drivers: list[Any] = []

    def make(*, read_only: bool = False) -> Page:
        driver = chrome()
        drivers.append(driver)
        server = Server(dsn, CONFIG, read_only=read_only)
        servers.append(server)
        return Page(driver, server)

    yield make
    for driver in drivers:
        driver.quit()
    for server in servers:
        server.stop()


@pytest.fixture
def page(open_page: Callable[..., Page], conn: psycopg.Connection) -> Page:
    """A browser on the dashboard, logged in as admin user `boss`."""
    add_user(conn, "boss", "admin")
    opened = open_page()
    opened.log_in(username="boss", password=PASSWORD)
    return opened


def status_of(conn: psycopg.Connection, job_id: int) -> str:
    row = conn.execute("SELECT status FROM skiplock.all_jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_log_in_with_a_password_then_with_a_token(
    open_page: Callable[..., Page], conn: psycopg.Connection
) -> None:
    add_user(conn, "ada", "read")
    token = add_token(conn, "ci", "write")
    page = open_page()
    page.open("/jobs")
    assert "/dashboard/login" in page.driver.current_url
    page.driver.find_element(By.ID, "username").send_keys("ada")
    page.driver.find_element(By.ID, "password").send_keys("wrong")
    page.driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    page.wait_for_text("wrong username, password or token")
    page.driver.find_element(By.ID, "username").send_keys("ada")
    page.driver.find_element(By.ID, "password").send_keys(PASSWORD)
    page.driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    # back where the login started
    page.wait(lambda: page.driver.current_url.endswith("/dashboard/jobs"))
    assert "ada · read" in page.text()
    page.log_out()
    page.open("/")
    assert "/dashboard/login" in page.driver.current_url
    page.log_in(token=token)
    assert "ci · write" in page.text()


def test_a_job_page_follows_the_job_from_queued_to_succeeded_without_a_reload(
    page: Page, dsn: str
) -> None:
    worker_app = skiplock.App(dsn)
    release = threading.Event()

    @worker_app.task(name="slow")
    def slow(ctx: skiplock.JobContext) -> dict[str, bool]:
        ctx.progress(0.5, "halfway")
        assert release.wait(60)
        return {"ok": True}

    job_id = worker_app.enqueue("slow", {}, queue="live")
    page.open(f"/jobs/{job_id}")
    assert page.text_of("job-status") == "queued"
    page.driver.execute_script("window.sameDocument = 'yes'")
    # the page follows the job through its event stream, not the poll
    page.wait(lambda: page.driver.execute_script("return document.documentElement.dataset.live"))
    assert page.driver.execute_script("return document.documentElement.dataset.live") == "stream"
    worker = WorkerThread(worker_app, ["live"])
    try:
        page.wait(lambda: page.text_of("job-status") == "running")
        page.wait(lambda: page.text_of("job-progress-message") == "halfway")
        release.set()
        page.wait(lambda: page.text_of("job-status") == "succeeded")
        assert '"ok": true' in page.text_of("job-result")
        # the same document all along: the page was updated in place, not reloaded
        assert page.driver.execute_script("return window.sameDocument") == "yes"
    finally:
        release.set()
        worker.stop()
        worker_app.close()


def test_filter_the_jobs_list(page: Page, dsn: str) -> None:
    app = skiplock.App(dsn)
    mail = app.enqueue("send_mail", {}, queue="emails", tags=["welcome"])
    report = app.enqueue("report", {"user_id": 7, "plan": "pro"}, queue="reports")
    app.close()
    page.open("/jobs")
    page.wait_for_text("send_mail")
    assert "report" in page.text()
    page.driver.find_element(By.ID, "f-queue").send_keys("emails")
    Select(page.driver.find_element(By.ID, "f-status")).select_by_value("queued")
    page.click("Filter")
    page.wait(lambda: "queue=emails" in page.driver.current_url)
    rows = page.driver.find_elements(By.CSS_SELECTOR, "#job-list tbody tr")
    assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == [str(mail)]
    page.open("/jobs?tag=nope")
    rows = page.driver.find_elements(By.CSS_SELECTOR, "#job-list tbody tr")
    assert [r.text for r in rows] == ["No jobs match."]
    assert page.text_of("job-count") == "0 jobs match"
    page.open("/jobs?args=" + quote_plus("user_id=7"))
    rows = page.driver.find_elements(By.CSS_SELECTOR, "#job-list tbody tr")
    assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == [str(report)]
    assert page.text_of("job-count") == "1 job matches"


def test_retry_a_dead_letter(page: Page, dsn: str, conn: psycopg.Connection) -> None:
    (job_id,) = dead_letters(dsn, "default", 1)
    page.open("/dead-letters")
    row = page.driver.find_element(By.ID, f"dead-letter-{job_id}")
    assert "boom" in row.text
    row.find_element(By.TAG_NAME, "button").click()
    page.wait_for_text("The dead letter was queued again.")
    assert status_of(conn, job_id) == "queued"


def test_redrive_all_matching_after_its_dry_run_count(
    page: Page, dsn: str, conn: psycopg.Connection
) -> None:
    dead_letters(dsn, "a", 3)
    dead_letters(dsn, "b", 1)
    page.open("/dead-letters")
    page.driver.find_element(By.ID, "d-queue").send_keys("a")
    page.click("Filter")
    page.wait(lambda: "queue=a" in page.driver.current_url)
    page.click("Redrive all matching…")
    page.wait_for_text("Dry run: 3 dead letters would be queued again.")
    assert conn.execute("SELECT count(*) FROM skiplock.dead_letters").fetchone() == (4,)
    page.click("Confirm: redrive 3")
    page.wait_for_text("Redriven: 3 dead letters.")
    assert conn.execute("SELECT queue FROM skiplock.dead_letters").fetchall() == [("b",)]


def test_pause_a_queue(page: Page, dsn: str, conn: psycopg.Connection) -> None:
    app = skiplock.App(dsn)
    app.enqueue("t", {}, queue="q1")
    app.close()
    page.open("/queues")
    page.click("Pause q1")
    page.wait_for_text("The queue is paused.")
    assert store.get_queue("q1").run(conn)["paused"] is True  # type: ignore[index]
    page.click("Resume q1")
    page.wait_for_text("The queue is running again.")
    assert store.get_queue("q1").run(conn)["paused"] is False  # type: ignore[index]


def test_stop_a_worker(page: Page, dsn: str) -> None:
    app = skiplock.App(dsn)
    worker = WorkerThread(app, ["default"])
    try:
        page.open("/workers")
        row = page.driver.find_element(By.ID, f"worker-{worker.worker.id}")
        assert "healthy" in row.text
        row.find_element(By.TAG_NAME, "button").click()
        page.wait_for_text("The worker was told to stop.")
        page.wait(lambda: worker.done)
    finally:
        worker.stop()
        app.close()


def test_a_queue_limited_user_sees_nothing_of_another_queue(
    open_page: Callable[..., Page], dsn: str, conn: psycopg.Connection
) -> None:
    app = skiplock.App(dsn)
    mine = app.enqueue("t", {}, queue="mine")
    other = app.enqueue("t", {}, queue="other")
    app.close()
    add_user(conn, "lim", "write", "mine")
    page = open_page()
    page.log_in(username="lim", password=PASSWORD)
    page.open(f"/jobs/{other}")
    assert "Not found" in page.text() and f"job {other} not found" in page.text()
    page.open("/jobs")
    links = [a.text for a in page.driver.find_elements(By.CSS_SELECTOR, "#job-list tbody a")]
    assert links == [str(mine)]
    page.open("/queues")
    assert "mine" in page.text() and "other" not in page.text()
    assert "Dead letters" not in page.text() and "Workers" not in page.text()


def test_a_forged_post_without_the_csrf_token_is_refused(
    page: Page, dsn: str, conn: psycopg.Connection
) -> None:
    (job_id,) = dead_letters(dsn, "default", 1)
    page.open(f"/jobs/{job_id}")
    # a form of the same origin (so the cookie goes with it) that lacks the token
    page.driver.execute_script(
        "const f = document.createElement('form'); f.method = 'post';"
        " f.action = arguments[0]; document.body.appendChild(f); f.submit();",
        f"{page.server.url}/dashboard/jobs/{job_id}/retry",
    )
    page.wait_for_text("the form's CSRF token is missing or wrong")
    assert status_of(conn, job_id) == "failed"


def test_read_only_mode_shows_no_action_and_refuses_a_post(
    open_page: Callable[..., Page], dsn: str, conn: psycopg.Connection
) -> None:
    (job_id,) = dead_letters(dsn, "default", 1)
    add_user(conn, "boss", "admin")
    page = open_page(read_only=True)
    page.log_in(username="boss", password=PASSWORD)
    for path in (f"/jobs/{job_id}", "/queues", "/dead-letters", "/workers"):
        page.open(path)
        assert "read-only" in page.text()
        labels = [b.text for b in page.driver.find_elements(By.CSS_SELECTOR, "main button")]
        assert labels in ([], ["Filter"]), (path, labels)
        assert "matching…" not in page.text()
    # the token is right; the mode refuses all the same
    page.open(f"/jobs/{job_id}")
    page.driver.execute_script(
        "const f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];"
        " const t = document.createElement('input'); t.name = 'csrf';"
        " t.value = document.querySelector('input[name=csrf]').value;"
        " f.appendChild(t); document.body.appendChild(f); f.submit();",
        f"{page.server.url}/dashboard/jobs/{job_id}/retry",
    )
    page.wait_for_text("the dashboard is read-only")
    assert status_of(conn, job_id) == "failed"
