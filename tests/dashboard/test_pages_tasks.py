"""The tasks page and its enqueue form: the registry, a form made from the task's JSON
Schema, checked as POST /api/v1/jobs checks a job (problems next to their field), and
a successful enqueue landing on the job's page."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import psycopg
from pages_checks import audit_actions, logged_in, publish
from starlette.testclient import TestClient

from skiplock import store

SCHEMA = {
    "type": "object",
    "properties": {
        "to": {"type": "string", "description": "Recipient."},
        "count": {"type": "integer", "minimum": 1},
        "ratio": {"type": "number"},
        "urgent": {"type": "boolean"},
        "tone": {"enum": ["plain", "html", 3]},
        "extra": {"type": "object"},
    },
    "required": ["to", "count"],
}
SEND = {"name": "send_email", "queue": "emails", "description": "Send one.", "args_schema": SCHEMA}
OTHER = {"name": "nightly/report", "queue": "reports", "description": "Report."}


def form(csrf: str, **fields: str) -> dict[str, str]:
    return {"csrf": csrf, "task": "send_email", **fields}


def jobs_of(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT id, task, args, queue, priority FROM skiplock.jobs").fetchall()


def test_the_registry_shows_each_task_with_its_schema(
    client: TestClient, conn: psycopg.Connection
) -> None:
    publish(conn, SEND, OTHER)
    logged_in(client, conn, "ada", "read")
    page = client.get("/dashboard/tasks")
    assert page.status_code == 200
    text = page.text
    assert 'id="task-send_email"' in text and "Send one." in text and "emails" in text
    assert "nightly/report" in text
    assert "&#34;minimum&#34;: 1" in text  # the schema, pretty-printed
    assert "Enqueue send_email" not in text  # read scope: no form link
    assert 'href="/dashboard/tasks"' in text


def test_the_form_is_made_from_the_schema(client: TestClient, conn: psycopg.Connection) -> None:
    publish(conn, SEND, OTHER)
    logged_in(client, conn, "wes", "write")
    assert 'href="/dashboard/tasks/enqueue?task=send_email"' in client.get("/dashboard/tasks").text
    page = client.get("/dashboard/tasks/enqueue?task=send_email").text
    # required first, then by name (jsonb keeps no key order)
    names = re.findall(r'name="arg\.(\w+)"', page)
    assert names == ["count", "to", "extra", "ratio", "tone", "urgent"]
    assert 'name="arg.to" value="" required>' in page
    assert 'name="arg.count" value="" inputmode="numeric" required' in page
    assert 'name="arg.ratio" value="" inputmode="decimal">' in page
    assert '<option value="true">true</option>' in page  # urgent: a boolean
    assert '<option value="&#34;plain&#34;">&#34;plain&#34;</option>' in page  # tone: an enum
    assert '<option value="3">3</option>' in page
    assert '<textarea id="arg-3" name="arg.extra"' in page  # an object: JSON
    assert page.count('<abbr title="required">*</abbr>') == 3  # to, count, the legend
    for option in ("queue", "priority", "run_at"):
        assert f'name="{option}"' in page
    # a task without a schema: its args as one JSON object
    other = client.get("/dashboard/tasks/enqueue?task=nightly/report").text
    assert 'name="args_json"' in other
    assert client.get("/dashboard/tasks/enqueue?task=nope").status_code == 404


def test_enqueue_lands_on_the_job_page(client: TestClient, conn: psycopg.Connection) -> None:
    publish(conn, SEND)
    csrf = logged_in(client, conn, "wes", "write")
    fields = {
        "arg.to": "a@b.c",
        "arg.count": "2",
        "arg.ratio": "0.5",
        "arg.urgent": "true",
        "arg.tone": '"html"',
        "arg.extra": '{"k": [1]}',
        "priority": "high",
        "run_at": "2030-01-01T09:00:00Z",
    }
    answer = client.post(
        "/dashboard/tasks/enqueue", data=form(csrf, **fields), follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    ((job_id, task, args, queue, priority),) = jobs_of(conn)
    assert answer.headers["location"] == f"/dashboard/jobs/{job_id}?notice=enqueued"
    assert (task, queue) == ("send_email", "emails")  # the task's published queue
    assert args == {
        "to": "a@b.c",
        "count": 2,
        "ratio": 0.5,
        "urgent": True,
        "tone": "html",
        "extra": {"k": [1]},
    }
    assert priority > 0
    job = store.get_job(job_id).run(conn)
    assert job is not None and job.status == "scheduled" and job.run_at is not None
    assert job.run_at.isoformat() == "2030-01-01T09:00:00+00:00"
    assert "The job was enqueued." in client.get(answer.headers["location"]).text
    assert ("wes", "POST /dashboard/tasks/enqueue", f"jobs/{job_id}", 201) in audit_actions(conn)


def problem_on(answer: Any, field: str) -> str:
    """The problem the form shows next to `field`."""
    found = re.search(rf'id="error-{re.escape(field)}">([^<]*)<', answer.text)
    assert found, answer.text
    return html.unescape(found.group(1))


def test_a_bad_field_comes_back_next_to_it_and_enqueues_nothing(
    client: TestClient, conn: psycopg.Connection
) -> None:
    publish(conn, SEND)
    csrf = logged_in(client, conn, "wes", "write")
    cases = [
        ({"arg.count": "2"}, "args.to", "'to' is a required property"),
        ({"arg.to": "x", "arg.count": "two"}, "args.count", "args.count must be an integer"),
        ({"arg.to": "x", "arg.count": "0"}, "args.count", "0 is less than the minimum of 1"),
        ({"arg.to": "x", "arg.count": "1", "arg.extra": "{"}, "args.extra", "must be JSON"),
        ({"arg.to": "x", "arg.count": "1", "arg.tone": "7"}, "args.tone", "is not one of"),
        ({"arg.to": "x", "arg.count": "1", "queue": "no spaces"}, "queue", "queue must be"),
        ({"arg.to": "x", "arg.count": "1", "run_at": "tomorrow"}, "run_at", "run_at must be"),
        ({"arg.to": "x", "arg.count": "1", "priority": "urgent"}, "priority", "priority must"),
    ]
    for fields, field, message in cases:
        answer = client.post("/dashboard/tasks/enqueue", data=form(csrf, **fields))
        assert answer.status_code == 422, (fields, answer.text)
        assert message in problem_on(answer, field), fields
        # what was typed stays in the form
        for value in fields.values():
            assert f'value="{value}"' in answer.text or value in answer.text
    assert jobs_of(conn) == []


def test_scopes_csrf_queue_limits_and_read_only(
    make_client: Callable[..., TestClient], conn: psycopg.Connection
) -> None:
    publish(conn, SEND, OTHER)
    filled = {"arg.to": "x", "arg.count": "1"}
    reader = make_client()
    csrf = logged_in(reader, conn, "ada", "read")
    assert reader.get("/dashboard/tasks/enqueue?task=send_email").status_code == 403
    answer = reader.post("/dashboard/tasks/enqueue", data=form(csrf, **filled))
    assert answer.status_code == 403
    writer = make_client()
    logged_in(writer, conn, "wes", "write")
    assert writer.post("/dashboard/tasks/enqueue", data=form("forged", **filled)).status_code == 403
    limited = make_client()
    csrf = logged_in(limited, conn, "lim", "write", "emails")
    tasks = limited.get("/dashboard/tasks").text
    assert "send_email" in tasks and "nightly/report" not in tasks
    assert limited.get("/dashboard/tasks/enqueue?task=nightly/report").status_code == 404
    outside = limited.post("/dashboard/tasks/enqueue", data=form(csrf, queue="reports", **filled))
    assert outside.status_code == 403
    assert "not reports" in problem_on(outside, "queue")
    frozen = make_client(read_only=True)
    csrf = logged_in(frozen, conn, "boss", "admin")
    refused = frozen.post("/dashboard/tasks/enqueue", data=form(csrf, **filled))
    assert refused.status_code == 403 and "read-only" in refused.text
    assert jobs_of(conn) == []
    # within its queues, the limited login enqueues
    inside = limited.post("/dashboard/tasks/enqueue", data=form(csrf_of_page(limited), **filled))
    assert inside.status_code == 200 and "The job was enqueued." in inside.text
    assert len(store.list_job_previews(store.JobFilter()).run(conn)) == 1


def csrf_of_page(client: TestClient) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', client.get("/dashboard/").text)
    assert found
    return found.group(1)


def test_a_form_of_many_fields_is_taken_whole(client: TestClient, conn: psycopg.Connection) -> None:
    names = [f"f{index:02}" for index in range(30)]
    schema = {"type": "object", "properties": {name: {"type": "integer"} for name in names}}
    publish(conn, {"name": "wide", "queue": "default", "args_schema": schema})
    csrf = logged_in(client, conn, "wes", "write")
    fields = {f"arg.{name}": str(index) for index, name in enumerate(names)}
    answer = client.post(
        "/dashboard/tasks/enqueue",
        data={"csrf": csrf, "task": "wide", **fields},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    ((_, _, args, _, _),) = jobs_of(conn)
    assert args == {name: index for index, name in enumerate(names)}
