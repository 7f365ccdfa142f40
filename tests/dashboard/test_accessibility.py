"""axe-core on every dashboard page in headless Chromium, in the light and the dark colour
scheme: no violation of impact "serious" or "critical" (contrast, labels, landmarks,
names of links and images, table headers...). axe.min.js comes with selenium-axe-python,
so nothing is fetched while the tests run."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import psycopg
import pytest
from dashboard_browser import Page, Server, WorkerThread, chrome
from dashboard_checks import CONFIG, PASSWORD, add_user, dead_letters
from pages_checks import add_schedule, diamond, publish
from selenium.webdriver.common.by import By
from selenium_axe_python import Axe

import skiplock
from skiplock import store

pytestmark = pytest.mark.slow
LOGGER = uuid.UUID("00000000-0000-4000-8000-0000000000a1")
BLOCKING = {"serious", "critical"}
TRACE_URL = "https://traces.example.com/trace/{trace_id}"
SCHEMA = {
    "type": "object",
    "properties": {"to": {"type": "string"}, "count": {"type": "integer"}},
    "required": ["to"],
}


def violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page shown, one line each
    (rule, impact, the offending nodes and why)."""
    axe = Axe(page.driver)
    axe.inject()
    results: dict[str, Any] = axe.run()
    # the contrast rule needs the page laid out in colour: make sure it ran
    ran = {rule["id"] for kind in ("passes", "violations", "incomplete") for rule in results[kind]}
    assert "color-contrast" in ran, page.driver.current_url
    found = []
    for violation in results["violations"]:
        if violation["impact"] not in BLOCKING:
            continue
        nodes = "; ".join(
            f"{node['target']} {node.get('failureSummary', '')!r}" for node in violation["nodes"]
        )
        found.append(f"{violation['id']} ({violation['impact']}): {nodes}")
    return found


@pytest.fixture
def seeded(dsn: str, conn: psycopg.Connection) -> Iterator[dict[str, int]]:
    """Something on every page: failed jobs with an error and log lines, a workflow,
    a schedule, a published task, a worker, an admin user `boss`; the ids shown."""
    add_user(conn, "boss", "admin")
    failed = dead_letters(dsn, "emails", 2)
    now = datetime.now(timezone.utc)
    lines = [
        store.LogLine(failed[0], 1, now, level, "app.mail", f"{level} line")
        for level in ("debug", "info", "warning", "error")
    ]
    assert store.append_job_logs(LOGGER, lines).run(conn) == len(lines)
    workflow_id, _ = diamond(dsn, fail=True)
    add_schedule(conn, "nightly")
    publish(conn, {"name": "send_email", "queue": "emails", "args_schema": SCHEMA})
    conn.execute("SELECT skiplock.sample_queue_depth()")
    conn.execute("SELECT skiplock.fold_metrics()")
    # a job with every part of its page: a dependency, a webhook delivery (to a long URL
    # with no place to break a line), a trace
    meta = {"trace": {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
    hook = "https://example.com/hooks/skiplock?token=" + "0123456789abcdef" * 8
    (related,) = conn.execute(
        "SELECT skiplock.enqueue('report', queue => 'hooks', depends_on => %s::bigint[],"
        " callback_url => %s, meta => %s::jsonb)",
        ([failed[0]], hook, json.dumps(meta)),
    ).fetchone()
    app = skiplock.App(dsn)
    worker = WorkerThread(app, ["idle"])
    yield {"job": failed[0], "workflow": workflow_id, "related": related}
    worker.stop()
    app.close()


def pages_of(seeded: dict[str, int]) -> dict[str, str]:
    """Each page, and what must be on it before axe looks (the parts worth checking)."""
    return {
        "/login": "form.login",
        "/?range=24h": ".charts svg[role=img]",
        "/jobs": "main table tbody tr",
        f"/jobs/{seeded['job']}": "#job-log-lines .level-error",
        f"/jobs/{seeded['related']}": "#job-webhooks tbody tr",
        "/queues": "main table tbody tr",
        "/queues/emails": "form.settings input[name='weight']",
        "/dead-letters": "main table tbody tr",
        "/workers": "main table tbody tr",
        "/schedules": "main table tbody tr",
        "/workflows": "main table tbody tr",
        f"/workflows/{seeded['workflow']}": "#workflow-graph a.step",
        "/tasks": "main table tbody tr",
        "/tasks/enqueue?task=send_email": "form input[name='arg.to']",
        "/audit": "main table tbody tr",
        "/jobs/999999999": "main h1",
    }


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_no_serious_violation_on_any_page(dsn: str, seeded: dict[str, int], scheme: str) -> None:
    driver = chrome()
    # the CSS follows prefers-color-scheme; Chromium emulates it for every page opened
    driver.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
    server = Server(dsn, CONFIG, trace_url=TRACE_URL)
    page = Page(driver, server)
    pages = pages_of(seeded)
    found: list[str] = []
    try:
        for path, selector in pages.items():
            if path != "/login" and "/login" in driver.current_url:
                page.log_in(username="boss", password=PASSWORD)
            page.open(path)
            page.wait(lambda css=selector: driver.find_elements(By.CSS_SELECTOR, css))
            found += [f"{path}: {line}" for line in violations(page)]
        assert driver.execute_script(
            f"return matchMedia('(prefers-color-scheme: {scheme})').matches"
        )
    finally:
        driver.quit()
        server.stop()
    assert not found, f"{scheme}:\n" + "\n".join(found)


# A small phone, in CSS pixels.
PHONE = (375, 740)


def test_every_page_fits_a_phone_and_stays_accessible(dsn: str, seeded: dict[str, int]) -> None:
    """At 375 px wide: no page scrolls sideways (wide tables scroll inside their own
    box), the main navigation is on screen, and axe finds nothing serious."""
    driver = chrome()
    width, height = PHONE
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    server = Server(dsn, CONFIG, trace_url=TRACE_URL)
    page = Page(driver, server)
    wide: list[str] = []
    found: list[str] = []
    try:
        for path, selector in pages_of(seeded).items():
            if path != "/login" and "/login" in driver.current_url:
                page.log_in(username="boss", password=PASSWORD)
            page.open(path)
            page.wait(lambda css=selector: driver.find_elements(By.CSS_SELECTOR, css))
            assert driver.execute_script("return innerWidth") == width
            scroll = driver.execute_script("return document.documentElement.scrollWidth")
            if scroll > width:
                wide.append(f"{path}: {scroll} px wide: {overflowing(page)}")
            if path not in ("/login", "/jobs/999999999"):  # those have no navigation
                # every link of the main navigation is shown, within the screen's width
                links = driver.find_elements(By.CSS_SELECTOR, "nav[aria-label=Main] a")
                assert links, path
                for link in links:
                    box = link.rect
                    if not link.is_displayed() or box["x"] < 0 or box["x"] + box["width"] > width:
                        wide.append(f"{path}: navigation link {link.text!r} off screen: {box}")
            found += [f"{path}: {line}" for line in violations(page)]
    finally:
        driver.quit()
        server.stop()
    assert not wide, "\n".join(wide)
    assert not found, "\n".join(found)


def overflowing(page: Page) -> list[str]:
    """The outermost elements that reach past the right edge of the screen, for the
    failure message."""
    script = """
        const out = [];
        for (const el of document.body.querySelectorAll("*")) {
          if (el.getBoundingClientRect().right <= innerWidth + 0.5) continue;
          let inside = false;
          for (let p = el.parentElement; p; p = p.parentElement) {
            const clips = getComputedStyle(p).overflowX !== "visible";
            if (clips || out.includes(p)) { inside = true; break; }
          }
          if (!inside) out.push(el);
        }
        return out.slice(0, 5).map(el => el.tagName.toLowerCase()
          + (el.id ? "#" + el.id : "")
          + (el.getAttribute("class") ? "." + el.getAttribute("class") : "")
          + " " + Math.round(el.getBoundingClientRect().right));
    """
    return list(page.driver.execute_script(script))
