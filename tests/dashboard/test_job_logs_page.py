"""A job's log on its page: the lines of one attempt (the newest by default) with their
time, level and logger, the truncation marker, a selector between attempts, LOG_LINES
a page with a "more" link, inside a live region; bad parameters are a 422 page."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone

import psycopg
import pytest
from dashboard_checks import PASSWORD, add_user, log_in
from starlette.testclient import TestClient

from skiplock import store
from skiplock.dashboard.jobs import LOG_LINES

W1 = uuid.UUID("00000000-0000-4000-8000-0000000000c2")


@pytest.fixture
def ada(client: TestClient, conn: psycopg.Connection) -> TestClient:
    add_user(conn, "ada", "read")
    assert log_in(client, username="ada", password=PASSWORD).status_code == 303
    return client


def enqueue(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT skiplock.enqueue('t', '{}')").fetchone()
    assert row is not None
    return int(row[0])


def log(conn: psycopg.Connection, job_id: int, attempt: int, *lines: tuple[str, str]) -> None:
    """(level, message) lines of `attempt`, logged now by logger `app`."""
    now = datetime.now(timezone.utc)
    batch = [store.LogLine(job_id, attempt, now, level, "app", text) for level, text in lines]
    assert store.append_job_logs(W1, batch).run(conn) == len(batch)


def messages(html: str) -> list[str]:
    return re.findall(
        r'<td class="message">(?:<span class="badge warn">truncated</span> )?([^<]*)</td>', html
    )


def test_levels_loggers_and_the_truncation_marker(
    ada: TestClient, conn: psycopg.Connection
) -> None:
    job_id = enqueue(conn)
    now = datetime.now(timezone.utc)
    lines = [
        store.LogLine(job_id, 1, now, level, "app.mail", f"{level} line")
        for level in ("debug", "info", "warning", "error")
    ]
    # a bound of 3 lines: the fourth is dropped and a marker line counts it
    assert store.append_job_logs(W1, lines, max_lines=3).run(conn) == 3
    page = ada.get(f"/dashboard/jobs/{job_id}")
    assert page.status_code == 200, page.text
    html = page.text
    assert '<section data-live id="job-logs"' in html
    assert messages(html)[:3] == ["debug line", "info line", "warning line"]
    assert "1 lines (10 bytes) dropped" in messages(html)[3]
    assert 'class="truncated"' in html and ">truncated</span>" in html
    assert '<span class="level-warning">warning</span>' in html
    assert "<td>app.mail</td>" in html
    assert re.search(r'<time datetime="\d{4}-\d\d-\d\dT[^"]+">\d{4}-\d\d-\d\d ', html)
    assert "More lines" not in html and "Attempt 1" not in html  # one attempt: no selector


def test_attempts_are_kept_apart_newest_first(ada: TestClient, conn: psycopg.Connection) -> None:
    job_id = enqueue(conn)
    conn.execute("SELECT skiplock.claim_jobs(%s, ARRAY['default'], 10)", (W1,))
    log(conn, job_id, 1, ("info", "first try"), ("error", "it broke"))
    entry = json.dumps({"error": "boom", "retry_in": 0})
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, ARRAY[%s]::bigint[], ARRAY[1], ARRAY[%s::jsonb])",
        (W1, job_id, entry),
    )
    conn.execute("SELECT skiplock.claim_jobs(%s, ARRAY['default'], 10)", (W1,))
    log(conn, job_id, 2, ("info", "second try"))
    html = ada.get(f"/dashboard/jobs/{job_id}").text
    assert messages(html) == ["second try"]
    assert "Log of attempt 2" in html
    assert f'href="/dashboard/jobs/{job_id}?attempt=2" aria-current="true">Attempt 2' in html
    assert f'href="/dashboard/jobs/{job_id}?attempt=1">Attempt 1' in html
    html = ada.get(f"/dashboard/jobs/{job_id}", params={"attempt": 1}).text
    assert messages(html) == ["first try", "it broke"]
    html = ada.get(f"/dashboard/jobs/{job_id}", params={"attempt": 3}).text
    assert messages(html) == [] and "Attempt 3 logged nothing yet." in html


def test_a_long_log_pages_with_after(ada: TestClient, conn: psycopg.Connection) -> None:
    job_id = enqueue(conn)
    log(conn, job_id, 1, *[("info", f"line {i}") for i in range(LOG_LINES + 5)])
    html = ada.get(f"/dashboard/jobs/{job_id}").text
    assert messages(html) == [f"line {i}" for i in range(LOG_LINES)]
    more = re.search(r'<a href="([^"]+)" rel="next">More lines</a>', html)
    assert more, html
    html = ada.get(more.group(1).replace("&amp;", "&")).text
    assert messages(html) == [f"line {i}" for i in range(LOG_LINES, LOG_LINES + 5)]
    assert "More lines" not in html and "First lines" in html
    last = re.findall(r'<tr id="log-(\d+)"', html)[-1]
    html = ada.get(f"/dashboard/jobs/{job_id}", params={"after": last}).text
    assert messages(html) == [] and "No lines after these." in html


def test_bad_attempt_or_after_is_a_422_page(ada: TestClient, conn: psycopg.Connection) -> None:
    job_id = enqueue(conn)
    for params, detail in (
        ({"attempt": "x"}, "attempt must be a whole number"),
        ({"attempt": "0"}, "attempt must be 1 or more"),
        ({"attempt": "99999999999"}, "attempt must be a whole number"),
        ({"after": "-1"}, "after must be a whole number"),
    ):
        page = ada.get(f"/dashboard/jobs/{job_id}", params=params)
        assert page.status_code == 422, params
        assert detail in page.text
