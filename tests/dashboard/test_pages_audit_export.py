"""The audit log page (admin, filters, pages) and the jobs list's CSV and JSON Lines
export (the list's filter, queue limits, the cap)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

import psycopg
import pytest
from pages_checks import logged_in
from starlette.testclient import TestClient

import skiplock
from skiplock import store
from skiplock.dashboard import audit, export


def record(conn: psycopg.Connection, actor: str, action: str, count: int) -> None:
    for index in range(count):
        store.record_audit(actor, action, f"jobs/{index}", 200, {}).run(conn)


def test_the_audit_log_filters_by_actor_and_action_a_page_at_a_time(
    client: TestClient, conn: psycopg.Connection
) -> None:
    record(conn, "ci", "POST /api/v1/jobs", 60)
    record(conn, "ops", "POST /api/v1/queues/a/pause", 3)
    logged_in(client, conn, "boss", "admin")
    page = client.get("/dashboard/audit")
    assert page.status_code == 200 and "Audit log" in page.text
    assert page.text.count('<tr id="audit-') == audit.PAGE_SIZE
    assert 'rel="next"' in page.text
    ops = client.get("/dashboard/audit?actor=ops").text
    assert ops.count('<tr id="audit-') == 3 and "POST /api/v1/jobs<" not in ops
    pauses = client.get("/dashboard/audit?action=pause").text
    assert pauses.count('<tr id="audit-') == 3
    ci = client.get("/dashboard/audit?actor=ci&action=POST").text
    assert ci.count('<tr id="audit-') == audit.PAGE_SIZE
    older = ci[ci.index('rel="next" href="') + 17 :].split('"')[0].replace("&amp;", "&")
    assert "actor=ci" in older and "before=" in older
    rest = client.get(older).text
    assert rest.count('<tr id="audit-') == 10 and 'rel="next"' not in rest
    assert client.get("/dashboard/audit?before=x").status_code == 422


def test_a_filter_reads_a_bounded_number_of_rows_per_page(
    client: TestClient, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    record(conn, "ops", "pause", 1)
    record(conn, "ci", "enqueue", 30)
    monkeypatch.setattr(audit, "SCAN_LIMIT", 10)
    monkeypatch.setattr(audit, "BATCH", 5)
    logged_in(client, conn, "boss", "admin")
    page = client.get("/dashboard/audit?actor=ops").text
    assert '<tr id="audit-' not in page and "older ones may match too" in page
    # going on from where the reading stopped reaches the match
    for _ in range(5):
        if '<tr id="audit-' in page:
            break
        nxt = page[page.index('rel="next" href="') + 17 :].split('"')[0].replace("&amp;", "&")
        page = client.get(nxt).text
    assert page.count('<tr id="audit-') == 1


def test_the_audit_log_is_for_admins_who_see_every_queue(
    make_client: Callable[..., TestClient], conn: psycopg.Connection
) -> None:
    writer = make_client()
    logged_in(writer, conn, "wes", "write")
    answer = writer.get("/dashboard/audit")
    assert answer.status_code == 403 and "needs the admin scope" in answer.text
    assert 'href="/dashboard/audit"' not in writer.get("/dashboard/").text
    limited = make_client()
    logged_in(limited, conn, "lim", "admin", "emails")
    assert limited.get("/dashboard/audit").status_code == 403
    admin = make_client()
    logged_in(admin, conn, "boss", "admin")
    assert 'href="/dashboard/audit"' in admin.get("/dashboard/").text


def enqueue(dsn: str, queue: str, count: int, task: str = "t") -> list[int]:
    app = skiplock.App(dsn)
    ids = app.enqueue_many([{"task": task, "args": {"i": i}, "queue": queue} for i in range(count)])
    app.close()
    return ids


def test_export_the_filtered_list_as_csv_and_json_lines(
    client: TestClient, conn: psycopg.Connection, dsn: str
) -> None:
    emails = enqueue(dsn, "emails", 3, task="send")
    enqueue(dsn, "reports", 2)
    logged_in(client, conn, "ada", "read")
    listing = client.get("/dashboard/jobs?queue=emails").text
    assert 'href="/dashboard/jobs.csv?queue=emails&amp;"' in listing
    assert 'href="/dashboard/jobs.jsonl?queue=emails&amp;"' in listing
    answer = client.get("/dashboard/jobs.csv?queue=emails")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    disposition = answer.headers["content-disposition"]
    assert disposition == 'attachment; filename="skiplock-jobs-queue-emails.csv"'
    assert answer.headers["x-skiplock-export-limit"] == str(export.EXPORT_LIMIT)
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [int(r["id"]) for r in rows] == sorted(emails, reverse=True)
    assert {r["queue"] for r in rows} == {"emails"} and {r["task"] for r in rows} == {"send"}
    assert {json.loads(r["args"])["i"] for r in rows} == {0, 1, 2}
    assert rows[0]["status"] == "queued" and rows[0]["created_at"]
    lines = client.get("/dashboard/jobs.jsonl?queue=emails&status=queued").text.splitlines()
    items = [json.loads(line) for line in lines]
    assert [item["id"] for item in items] == sorted(emails, reverse=True)
    assert items[0]["args"] == {"i": 2} and items[0]["status"] == "queued"
    assert client.get("/dashboard/jobs.csv?status=nope").status_code == 422
    assert client.get("/dashboard/jobs.jsonl", follow_redirects=False).status_code == 200
    # the export is a logged-in read like the list
    client.cookies.clear()
    assert client.get("/dashboard/jobs.csv", follow_redirects=False).status_code == 303


def test_the_export_stops_at_its_cap_and_says_so(
    client: TestClient, conn: psycopg.Connection, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    enqueue(dsn, "default", 7)
    monkeypatch.setattr(export, "EXPORT_LIMIT", 5)
    monkeypatch.setattr(export, "BATCH", 2)  # several keyset pages
    logged_in(client, conn, "ada", "read")
    answer = client.get("/dashboard/jobs.jsonl")
    assert answer.headers["x-skiplock-export-limit"] == "5"
    items = [json.loads(line) for line in answer.text.splitlines()]
    assert len(items) == 6 and items[-1] == {"cut": True, "limit": 5}
    assert len({item["id"] for item in items[:5]}) == 5
    rows = client.get("/dashboard/jobs.csv").text.splitlines()
    assert len(rows) == 1 + 5 + 1 and rows[-1].startswith("# cut: this export stops at 5 rows")
    # exactly the cap: nothing cut
    monkeypatch.setattr(export, "EXPORT_LIMIT", 7)
    items = [json.loads(line) for line in client.get("/dashboard/jobs.jsonl").text.splitlines()]
    assert len(items) == 7 and "cut" not in items[-1]


def test_a_queue_limited_export_holds_only_its_queues(
    client: TestClient, conn: psycopg.Connection, dsn: str
) -> None:
    enqueue(dsn, "emails", 2)
    enqueue(dsn, "reports", 2)
    logged_in(client, conn, "lim", "read", "emails")
    items = [json.loads(line) for line in client.get("/dashboard/jobs.jsonl").text.splitlines()]
    assert [item["queue"] for item in items] == ["emails", "emails"]
    rows = list(csv.DictReader(io.StringIO(client.get("/dashboard/jobs.csv?queue=reports").text)))
    assert rows == []
