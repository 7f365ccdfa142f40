"""The jobs list searches a window of ids a request: a filter that matches little says
how far it searched and goes on from there; a status filter starts at the newest job
that can have that status; counts are exact while every id fits in one window."""

from __future__ import annotations

import re

import psycopg
from pages_checks import logged_in
from starlette.testclient import TestClient

import skiplock
from skiplock.dashboard.jobs import SCAN_WINDOW
from skiplock.jobs import STATUSES
from skiplock.store.jobs import STATUS_TABLES
from skiplock.testing import run_jobs

BACKLOG = SCAN_WINDOW + 5_000


def listed(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<td class="num"><a href="/dashboard/jobs/(\d+)"', html)]


def rare_job_under_a_backlog(dsn: str, conn: psycopg.Connection) -> int:
    """One finished job of task `rare`, then BACKLOG queued jobs of another task."""
    app = skiplock.App(dsn)

    @app.task(name="rare")
    def rare() -> None:
        pass

    job_id = app.enqueue("rare", {})
    run_jobs(app)
    app.close()
    conn.execute(
        "INSERT INTO skiplock.jobs (task, args) SELECT 'common', '{}' FROM generate_series(1, %s)",
        (BACKLOG,),
    )
    return job_id


def test_a_rare_match_is_found_by_searching_older(
    client: TestClient, dsn: str, conn: psycopg.Connection
) -> None:
    rare = rare_job_under_a_backlog(dsn, conn)
    logged_in(client, conn, "ada", "read")
    first = client.get("/dashboard/jobs?task=rare").text
    assert listed(first) == [] and "Searched down to job" in first
    assert "(estimated)" in first  # more ids than one window: the count is the planner's
    older = re.search(r'href="(/dashboard/jobs\?[^"]*before=\d+)"', first)
    assert older is not None
    second = client.get(older.group(1).replace("&amp;", "&")).text
    assert listed(second) == [rare]


def test_a_status_filter_starts_at_the_newest_job_of_that_status(
    client: TestClient, dsn: str, conn: psycopg.Connection
) -> None:
    rare = rare_job_under_a_backlog(dsn, conn)
    logged_in(client, conn, "ada", "read")
    html = client.get("/dashboard/jobs?status=succeeded").text
    assert listed(html) == [rare]
    assert "1 job matches" in html  # the history's ids fit in one window: counted


def test_every_status_has_its_table() -> None:
    assert set(STATUS_TABLES) == set(STATUSES)
