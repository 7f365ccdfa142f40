"""The schedules page: the list, enable/disable, run now and delete (admin, CSRF,
confirmation), closed to queue-limited logins, inert in read-only mode."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import psycopg
from pages_checks import add_schedule, audit_actions, logged_in, schedule_row
from starlette.testclient import TestClient

from skiplock import store


def test_the_list_shows_each_schedule_with_its_runs_and_state(
    client: TestClient, conn: psycopg.Connection
) -> None:
    add_schedule(conn, "nightly")
    add_schedule(conn, "weekly-report", task="report", enabled=False)
    logged_in(client, conn, "ada", "read")
    page = client.get("/dashboard/schedules")
    assert page.status_code == 200
    html = page.text
    assert "nightly" in html and "<code>0 3 * * *</code>" in html and "Europe/Paris" in html
    assert "weekly-report" in html and "report" in html
    assert "enabled" in html and "disabled" in html
    # read: no action buttons
    assert "/schedules/nightly/disable" not in html and "Run nightly now" not in html
    assert 'href="/dashboard/schedules"' in client.get("/dashboard/").text


def test_disable_then_enable_a_schedule(client: TestClient, conn: psycopg.Connection) -> None:
    add_schedule(conn, "nightly")
    csrf = logged_in(client, conn, "boss", "admin")
    assert "Disable nightly" in client.get("/dashboard/schedules").text
    answer = client.post(
        "/dashboard/schedules/nightly/disable", data={"csrf": csrf}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/schedules?notice=disabled"
    row = schedule_row(conn, "nightly")
    assert row is not None and row["enabled"] is False
    assert "Enable nightly" in client.get("/dashboard/schedules?notice=disabled").text
    client.post("/dashboard/schedules/nightly/enable", data={"csrf": csrf})
    row = schedule_row(conn, "nightly")
    assert row is not None and row["enabled"] is True
    assert ("boss", "POST /dashboard/schedules/nightly/disable", "schedules/nightly", 200) in (
        audit_actions(conn)
    )


def test_run_now_fires_one_job_and_keeps_the_next_run(
    client: TestClient, conn: psycopg.Connection
) -> None:
    add_schedule(conn, "nightly")
    # as the scheduler's first pass would have set it
    next_run = datetime(2030, 1, 1, 2, tzinfo=timezone.utc)
    store.set_schedule_next_run("nightly", next_run).run(conn)
    before = schedule_row(conn, "nightly")
    assert before is not None
    csrf = logged_in(client, conn, "boss", "admin")
    answer = client.post(
        "/dashboard/schedules/nightly/run", data={"csrf": csrf}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    job_id = int(location.split("/jobs/")[1].split("?")[0])
    job = store.get_job(job_id).run(conn)
    assert job is not None and job.task == "t" and job.args == {"n": 1}
    assert job.meta["schedule"] == "nightly"
    after = schedule_row(conn, "nightly")
    assert after is not None
    assert after["last_job_id"] == job_id and after["next_run_at"] == next_run
    assert after["last_run_at"] is not None and before["last_run_at"] is None
    assert "The schedule ran now" in client.get(location).text
    actions = audit_actions(conn)
    assert ("boss", "POST /dashboard/schedules/nightly/run", "schedules/nightly", 201) in actions


def test_delete_asks_for_confirmation_then_deletes(
    client: TestClient, conn: psycopg.Connection
) -> None:
    add_schedule(conn, "nightly")
    csrf = logged_in(client, conn, "boss", "admin")
    confirm = client.get("/dashboard/schedules/nightly/delete")
    assert confirm.status_code == 200 and "Confirm: delete nightly" in confirm.text
    assert schedule_row(conn, "nightly") is not None  # the GET changed nothing
    answer = client.post(
        "/dashboard/schedules/nightly/delete", data={"csrf": csrf}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert schedule_row(conn, "nightly") is None
    gone = client.post("/dashboard/schedules/nightly/delete", data={"csrf": csrf})
    assert gone.status_code == 404


def test_actions_need_admin_and_the_csrf_token(
    make_client: Callable[..., TestClient], conn: psycopg.Connection
) -> None:
    add_schedule(conn, "nightly")
    writer = make_client()
    csrf = logged_in(writer, conn, "wes", "write")
    for action in ("disable", "run", "delete"):
        answer = writer.post(f"/dashboard/schedules/nightly/{action}", data={"csrf": csrf})
        assert answer.status_code == 403 and "needs the admin scope" in answer.text
    admin = make_client()
    logged_in(admin, conn, "boss", "admin")
    for form in ({}, {"csrf": "forged"}):
        answer = admin.post("/dashboard/schedules/nightly/disable", data=form)
        assert answer.status_code == 403
    row = schedule_row(conn, "nightly")
    assert row is not None and row["enabled"] is True and row["last_job_id"] is None


def test_queue_limited_logins_and_read_only_mode(
    make_client: Callable[..., TestClient], conn: psycopg.Connection
) -> None:
    add_schedule(conn, "nightly")
    limited = make_client()
    csrf = logged_in(limited, conn, "lim", "admin", "emails")
    assert limited.get("/dashboard/schedules").status_code == 403
    assert limited.post("/dashboard/schedules/nightly/run", data={"csrf": csrf}).status_code == 403
    assert 'href="/dashboard/schedules"' not in limited.get("/dashboard/").text
    frozen = make_client(read_only=True)
    csrf = logged_in(frozen, conn, "boss", "admin")
    page = frozen.get("/dashboard/schedules")
    assert page.status_code == 200 and "Run nightly now" not in page.text
    answer = frozen.post("/dashboard/schedules/nightly/disable", data={"csrf": csrf})
    assert answer.status_code == 403 and "read-only" in answer.text
    row = schedule_row(conn, "nightly")
    assert row is not None and row["enabled"] is True and row["last_job_id"] is None


def test_an_unknown_schedule_is_a_404(client: TestClient, conn: psycopg.Connection) -> None:
    csrf = logged_in(client, conn, "boss", "admin")
    assert client.get("/dashboard/schedules/nope/delete").status_code == 404
    assert client.post("/dashboard/schedules/nope/run", data={"csrf": csrf}).status_code == 404
