"""The Overview's charts of the metrics history: each range drawn as inline SVG with a
title, a description and the numbers in a table; an empty history says so; a queue
filter and a queue-limited login narrow the series; a bad range is a 422 page."""

from __future__ import annotations

import json
import math
import re
import uuid

import psycopg
import pytest
from dashboard_browser import Page, Server, chrome
from dashboard_checks import CONFIG, PASSWORD, add_user, log_in
from selenium.webdriver.common.by import By
from starlette.testclient import TestClient

from skiplock.dashboard.charts import percentile

W1 = uuid.UUID("00000000-0000-4000-8000-0000000000c1")
BOUNDS = [0.1, 1.0, 10.0]  # buckets: <=0.1, <=1, <=10, +Inf


def enqueue(conn: psycopg.Connection, n: int, queue: str) -> None:
    spec = json.dumps([{"task": "t", "queue": queue} for _ in range(n)])
    conn.execute("SELECT skiplock.enqueue_many(%s)", (spec,))


def finish(conn: psycopg.Connection, queue: str, *, ok: bool) -> None:
    """Claim every ready job of `queue` and complete it, or fail it for good."""
    rows = conn.execute(
        "SELECT id FROM skiplock.claim_jobs(%s, ARRAY[%s], 1000)", (W1, queue)
    ).fetchall()
    ids = [row[0] for row in rows]
    if ok:
        conn.execute(
            "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
            (W1, ids, [1] * len(ids), ["null"] * len(ids)),
        )
    else:
        entry = json.dumps({"error": "boom", "retry": False})
        conn.execute(
            "SELECT skiplock.fail_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
            (W1, ids, [1] * len(ids), [entry] * len(ids)),
        )


@pytest.fixture
def activity(conn: psycopg.Connection) -> None:
    """Jobs finished now in two queues (emails: 3 succeeded, 2 failed; reports: 1
    succeeded), 4 emails ready for 90 s, a depth sample of this minute, folded."""
    enqueue(conn, 3, "emails")
    finish(conn, "emails", ok=True)
    enqueue(conn, 2, "emails")
    finish(conn, "emails", ok=False)
    enqueue(conn, 1, "reports")
    finish(conn, "reports", ok=True)
    enqueue(conn, 4, "emails")
    with conn.transaction():  # one now(): the oldest job has waited exactly 90 s
        conn.execute("UPDATE skiplock.jobs SET run_at = now() - interval '90 seconds'")
        assert conn.execute("SELECT skiplock.sample_queue_depth()").fetchone() != (None,)
    conn.execute("SELECT skiplock.fold_metrics()")  # as the worker does once a minute


def logged_in(client: TestClient, conn: psycopg.Connection, queues: str | None = None) -> None:
    add_user(conn, "ada", "read", queues)
    assert log_in(client, username="ada", password=PASSWORD).status_code == 303


def charts_of(html: str) -> list[str]:
    return re.findall(r'<svg role="img" aria-labelledby="(chart-[a-z]+)-title', html)


def desc_of(html: str, chart: str) -> str:
    found = re.search(rf'<desc id="{chart}-desc">([^<]*)</desc>', html)
    assert found, html
    return found.group(1)


def test_percentiles_are_the_upper_bound_of_their_bucket() -> None:
    assert percentile(None, BOUNDS, 0.5) is None
    assert percentile([0, 0, 0, 0], BOUNDS, 0.5) is None
    # 10 samples: 5 up to 0.1 s, 4 up to 1 s, 1 past 10 s
    assert percentile([5, 4, 0, 1], BOUNDS, 0.5) == 0.1
    assert percentile([5, 4, 0, 1], BOUNDS, 0.9) == 1.0
    assert percentile([5, 4, 0, 1], BOUNDS, 0.95) == math.inf
    assert percentile([0, 0, 2, 0], BOUNDS, 0.95) == 10.0


@pytest.mark.parametrize("window", ["1h", "24h", "7d"])
def test_each_range_draws_the_charts_and_their_numbers(
    client: TestClient, conn: psycopg.Connection, activity: None, window: str
) -> None:
    logged_in(client, conn)
    page = client.get("/dashboard/", params={"range": window})
    assert page.status_code == 200, page.text
    html = page.text
    assert charts_of(html) == [
        "chart-throughput",
        "chart-failures",
        "chart-latency",
        "chart-depth",
        "chart-oldest",
    ]
    assert "4 in all" in desc_of(html, "chart-throughput")
    assert "2 in all" in desc_of(html, "chart-failures")
    assert desc_of(html, "chart-depth").endswith("latest sample: 4.")
    assert desc_of(html, "chart-oldest").endswith("latest sample: 90 s.")
    assert '<title id="chart-latency-title">Wait to start</title>' in html
    # bars for the jobs that finished, a line or a dot for the depth sample
    assert re.search(r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="[\d.]+" fill=', html)
    assert re.search(r'<circle cx="[\d.]+" cy="[\d.]+" r="2.5"', html)
    # the numbers, for screen readers and for reading: a row per period
    start = html.index('<table id="history-table">')
    table = html[start : html.index("</table>", start)]
    rows = re.findall(r"<tr><th scope=\"row\">", table)
    assert len(rows) == {"1h": 60, "24h": 24, "7d": 168}[window]
    assert '<td class="num">4</td><td class="num">90 s</td>' in table  # ready, oldest
    # the switch marks the range shown; no inline style anywhere (the CSP forbids it)
    assert f'?range={window}" aria-current="true"' in html
    assert "style=" not in html
    # the workers and the paused queues are still on the overview
    assert "workers alive" in html


def test_one_queue(client: TestClient, conn: psycopg.Connection, activity: None) -> None:
    logged_in(client, conn)
    html = client.get("/dashboard/", params={"range": "24h", "queue": "reports"}).text
    assert "1 in all" in desc_of(html, "chart-throughput")
    assert "queue reports, last 24h" in desc_of(html, "chart-failures")
    assert '<option value="reports" selected>' in html
    assert 'href="/dashboard/?range=7d&amp;queue=reports"' in html


def test_no_history_yet(client: TestClient, conn: psycopg.Connection) -> None:
    logged_in(client, conn)
    page = client.get("/dashboard/")
    assert page.status_code == 200
    assert charts_of(page.text) == []
    assert "No data yet for all queues over the last 1h" in page.text


def test_a_queue_limited_login_sees_only_its_queues(
    client: TestClient, conn: psycopg.Connection, activity: None
) -> None:
    logged_in(client, conn, "email*")
    html = client.get("/dashboard/").text
    assert "3 in all" in desc_of(html, "chart-throughput")  # reports' job left out
    assert '<option value="reports"' not in html
    other = client.get("/dashboard/", params={"queue": "reports"})
    assert other.status_code == 404 and "queue reports not found" in other.text


def test_bad_range_or_queue_is_a_422_page(client: TestClient, conn: psycopg.Connection) -> None:
    logged_in(client, conn)
    page = client.get("/dashboard/", params={"range": "5m"})
    assert page.status_code == 422
    assert "range must be one of 1h, 24h, 7d" in page.text
    page = client.get("/dashboard/", params={"queue": "no such queue!"})
    assert page.status_code == 422 and "queue must be a valid queue name" in page.text


@pytest.mark.slow
def test_the_charts_are_drawn_in_a_browser(
    dsn: str, conn: psycopg.Connection, activity: None
) -> None:
    """Headless Chromium lays the SVG out: each chart has a size, its bars are drawn,
    and the numbers stay folded away until asked for."""
    add_user(conn, "ada", "read")
    driver = chrome()
    server = Server(dsn, CONFIG)
    try:
        page = Page(driver, server)
        page.log_in(username="ada", password=PASSWORD)
        page.open("/?range=24h")
        page.wait_for_text("Wait to start")
        charts = driver.find_elements(By.CSS_SELECTOR, ".charts svg[role=img]")
        assert len(charts) == 5
        assert all(c.size["width"] > 100 and c.size["height"] > 40 for c in charts)
        bar = driver.find_element(By.CSS_SELECTOR, "#chart-throughput rect")
        assert bar.size["height"] > 0
        table = driver.find_element(By.ID, "history-table")
        assert not table.is_displayed()
        driver.find_element(By.CSS_SELECTOR, "#history-numbers summary").click()
        assert table.is_displayed()
    finally:
        driver.quit()
        server.stop()
