"""GET /api/v1/jobs?args=…&meta=…: the jobs whose args or meta contain a document, in the
hot table and in the history; a bad search is a 422 naming the field."""

from __future__ import annotations

import psycopg
from starlette.testclient import TestClient

import skiplock
from skiplock import store
from skiplock.testing import run_jobs


def listed(client: TestClient, **query: str) -> list[int]:
    response = client.get("/api/v1/jobs", params=query)
    assert response.status_code == 200, response.text
    return [job["id"] for job in response.json()["jobs"]]


def test_args_and_meta_search(client: TestClient, dsn: str) -> None:
    app = skiplock.App(dsn)

    @app.task(name="t")
    def t(**_: object) -> None:
        pass

    done = app.enqueue("t", {"user": {"id": 7}, "plan": "pro"}, meta={"tenant": "acme"})
    run_jobs(app)
    waiting = app.enqueue("t", {"user": {"id": 7}, "plan": "free"})
    other = app.enqueue("t", {"user": {"id": 8}, "plan": "pro"}, meta={"tenant": "acme"})
    app.close()
    assert listed(client, args="user.id=7") == [waiting, done]
    assert listed(client, args='{"user": {"id": 7}, "plan": "pro"}') == [done]
    assert listed(client, args="plan=pro", meta="tenant=acme") == [other, done]
    assert listed(client, args='user.id="7"') == []


def test_bad_searches_are_422_naming_the_field(client: TestClient) -> None:
    for field, value in (("args", "nokey"), ("meta", "{broken"), ("args", "a=\x00")):
        response = client.get("/api/v1/jobs", params={field: value})
        assert response.status_code == 422, (field, value, response.text)
        assert response.json()["field"] == field


def test_a_filter_reaches_each_table_of_all_jobs(conn: psycopg.Connection) -> None:
    """The view's branches share column types, so a filter is pushed into each of them
    (an index probe of the history, not a filter over the whole UNION)."""
    plan = "\n".join(
        row[0]
        for row in conn.execute(
            "EXPLAIN SELECT id FROM skiplock.all_jobs WHERE queue = 'q' AND task = 't'"
            " AND args @> '{\"a\": 1}' AND meta @> '{}' ORDER BY id DESC LIMIT 5"
        )
    )
    assert "Subquery Scan" not in plan, plan
    for table in ("jobs", "job_history", "dead_jobs"):
        assert f" on {table}" in plan, plan


def test_a_list_is_planned_for_its_filters_every_time(conn: psycopg.Connection) -> None:
    """Optional filters (`x IS NULL OR …`) pick their index only when the planner sees
    their values: the list and its count are never prepared (a generic plan would keep
    reading past the dashboard's window of ids)."""
    filters = store.JobFilter(task="t", id_above=10)
    for _ in range(10):
        store.list_job_previews(filters, None, limit=5).run(conn)
        store.count_jobs(filters, None, exact=True).run(conn)
        store.count_jobs(filters, None, exact=False).run(conn)
    prepared = conn.execute(
        "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%all_jobs%'"
    ).fetchone()
    assert prepared == (0,)
