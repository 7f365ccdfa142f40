"""The schedules, workflows, tasks and export pages and the list shortcuts in a real
browser (headless Chromium) against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from dashboard_browser import Page, Server, chrome
from dashboard_checks import CONFIG, PASSWORD, add_user, dead_letters
from pages_checks import add_schedule, diamond, publish, schedule_row
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from skiplock import store

pytestmark = pytest.mark.slow
SCHEMA = {
    "type": "object",
    "properties": {"to": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["to"],
}


@pytest.fixture
def page(dsn: str, conn: psycopg.Connection) -> Iterator[Page]:
    """A browser on the dashboard, logged in as admin user `boss`."""
    add_user(conn, "boss", "admin")
    driver = chrome()
    server = Server(dsn, CONFIG)
    opened = Page(driver, server)
    opened.log_in(username="boss", password=PASSWORD)
    yield opened
    driver.quit()
    server.stop()


def test_enqueue_from_the_tasks_form_and_land_on_the_job_page(
    page: Page, conn: psycopg.Connection
) -> None:
    publish(conn, {"name": "send_email", "queue": "emails", "args_schema": SCHEMA})
    page.open("/tasks")
    page.click("Enqueue send_email…")
    page.wait_for_text("Enqueue send_email")
    page.driver.find_element(By.NAME, "arg.count").send_keys("seven")
    # the browser asks for the required field first; fill it, then the server's check
    page.driver.find_element(By.NAME, "arg.to").send_keys("a@b.c")
    page.click("Enqueue")
    page.wait_for_text("args.count must be an integer")
    count = page.driver.find_element(By.NAME, "arg.count")
    count.clear()
    count.send_keys("7")
    page.click("Enqueue")
    page.wait_for_text("The job was enqueued.")
    assert "/dashboard/jobs/" in page.driver.current_url
    job_id = int(page.driver.current_url.split("/jobs/")[1].split("?")[0])
    job = store.get_job(job_id).run(conn)
    assert job is not None and job.args == {"to": "a@b.c", "count": 7} and job.queue == "emails"


def test_the_workflow_graph_shows_its_steps(page: Page, dsn: str) -> None:
    workflow_id, jobs = diamond(dsn, fail=True)
    page.open("/workflows")
    page.click(str(workflow_id))
    page.wait_for_text("Graph")
    nodes = page.driver.find_elements(By.CSS_SELECTOR, "#workflow-graph a.step")
    shown = {node.get_attribute("data-step"): node.get_attribute("data-status") for node in nodes}
    assert shown == {
        "fetch": "succeeded",
        "left": "succeeded",
        "right": "failed",
        "merge": "failed",
    }
    # each step is drawn (has a size) and leads to its job
    for node in nodes:
        rect = node.find_element(By.TAG_NAME, "rect")
        assert rect.size["width"] > 0 and rect.size["height"] > 0
    right = next(n for n in nodes if n.get_attribute("data-step") == "right")
    right.find_element(By.TAG_NAME, "rect").click()
    page.wait(lambda: page.driver.current_url.endswith(f"/jobs/{jobs['right']}"))
    page.wait_for_text("RuntimeError")


def test_disable_and_enable_a_schedule(page: Page, conn: psycopg.Connection) -> None:
    add_schedule(conn, "nightly")
    page.open("/schedules")
    page.click("Disable nightly")
    page.wait_for_text("The schedule is disabled.")
    assert "disabled" in page.text_of("schedule-nightly")
    row = schedule_row(conn, "nightly")
    assert row is not None and row["enabled"] is False
    page.click("Enable nightly")
    page.wait_for_text("The schedule is enabled")
    row = schedule_row(conn, "nightly")
    assert row is not None and row["enabled"] is True


def test_the_export_links_fetch_the_filtered_rows(page: Page, dsn: str) -> None:
    failed = dead_letters(dsn, "default", 2)
    page.open("/jobs?status=failed")
    link = page.driver.find_element(By.ID, "export-jsonl").get_attribute("href")
    assert link is not None and link.endswith("/dashboard/jobs.jsonl?status=failed&")
    script = (
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0]).then(r => r.text()).then(done, e => done(String(e)));"
    )
    text: Any = page.driver.execute_async_script(script, link)
    lines = [line for line in str(text).splitlines() if line]
    assert len(lines) == 2 and all('"status": "failed"' in line for line in lines)
    csv_link = page.driver.find_element(By.ID, "export-csv").get_attribute("href")
    table: Any = page.driver.execute_async_script(script, csv_link)
    assert str(table).splitlines()[0].startswith("id,task,queue,status")
    assert {int(line.split(",")[0]) for line in str(table).splitlines()[1:]} == set(failed)


def test_j_k_and_enter_open_a_row_and_r_retries_a_job(
    page: Page, dsn: str, conn: psycopg.Connection
) -> None:
    newer, older = sorted(dead_letters(dsn, "default", 2), reverse=True)
    page.open("/jobs")
    page.wait_for_text(str(older))
    body = page.driver.find_element(By.TAG_NAME, "body")
    body.send_keys("j")

    def highlighted() -> str:
        return str(page.driver.find_element(By.CSS_SELECTOR, "main tr.current").text)

    page.wait(lambda: highlighted().startswith(str(newer)))
    body.send_keys("j")
    page.wait(lambda: highlighted().startswith(str(older)))
    body.send_keys("k", "j")
    body.send_keys(Keys.ENTER)
    page.wait(lambda: page.driver.current_url.endswith(f"/jobs/{older}"))
    page.wait_for_text("failed")
    page.driver.find_element(By.TAG_NAME, "body").send_keys("r")
    page.wait_for_text("The job was queued again.")
    job = store.get_job(older).run(conn)
    assert job is not None and job.status == "queued"
    page.driver.find_element(By.TAG_NAME, "body").send_keys("?")
    page.wait(lambda: page.driver.find_element(By.ID, "help").is_displayed())
    assert "Highlight the next / previous row" in page.text_of("help")
