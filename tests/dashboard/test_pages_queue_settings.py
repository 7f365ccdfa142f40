"""A queue's page: its counts, its throughput, and its settings, edited by an admin
through the call PUT /api/v1/queues/{name} makes (CSRF, audit), a bad value refused
naming its field with nothing changed, read-only for others."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from pages_checks import audit_actions, logged_in
from starlette.testclient import TestClient

from skiplock import store

FORM = {
    "max_running": "",
    "rate_limit": "",
    "rate_period": "",
    "retry_policy": "",
    "timeout": "",
    "max_attempts": "",
    "priority": "",
    "weight": "",
}


def test_an_admin_edits_every_setting(client: TestClient, conn: psycopg.Connection) -> None:
    store.create_queue("emails").run(conn)
    csrf = logged_in(client, conn, "boss", "admin")
    page = client.get("/dashboard/queues/emails")
    assert page.status_code == 200 and 'name="max_running"' in page.text
    form = {
        **FORM,
        "csrf": csrf,
        "max_running": "5",
        "rate_limit": "100",
        "rate_period": "1m",
        "retry_policy": '{"kind": "fixed", "base": 30}',
        "timeout": "90",
        "max_attempts": "4",
        "priority": "high",
        "weight": "3",
    }
    answer = client.post("/dashboard/queues/emails/settings", data=form, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/dashboard/queues/emails?notice=configured"
    queue = store.get_queue("emails").run(conn)
    assert queue is not None
    assert (queue["max_running"], queue["rate_limit"], queue["rate_period"]) == (5, 100, 60.0)
    assert queue["retry_policy"] == {"kind": "fixed", "base": 30}
    assert (queue["timeout"], queue["max_attempts"], queue["weight"]) == (90.0, 4, 3)
    assert queue["priority"] > 0
    shown = client.get("/dashboard/queues/emails?notice=configured").text
    assert "settings are saved" in shown and 'value="100"' in shown and 'value="60"' in shown
    assert ("boss", "POST /dashboard/queues/emails/settings", "queues/emails", 200) in (
        audit_actions(conn)
    )
    # an empty field clears its setting
    cleared = {**form, "max_running": "", "weight": ""}
    client.post("/dashboard/queues/emails/settings", data=cleared)
    queue = store.get_queue("emails").run(conn)
    assert queue is not None and queue["max_running"] is None and queue["weight"] == 1


def test_a_bad_value_is_refused_naming_its_field(
    client: TestClient, conn: psycopg.Connection
) -> None:
    store.create_queue("emails").run(conn)
    csrf = logged_in(client, conn, "boss", "admin")
    for field, value, said in (
        ("max_running", "0", "max_running:"),
        ("weight", "5000", "weight:"),
        ("retry_policy", '{"kind": "sometimes"}', "retry_policy:"),
        ("timeout", "soon", "timeout:"),
        ("rate_limit", "10", "rate_period: rate_limit and rate_period are"),
    ):
        form = {**FORM, "csrf": csrf, "max_running": "7", field: value}
        answer = client.post("/dashboard/queues/emails/settings", data=form)
        assert answer.status_code == 422, (field, answer.text[:300])
        assert said in answer.text, (field, said)
        # the form keeps what was typed; nothing was changed
        queue = store.get_queue("emails").run(conn)
        assert queue is not None and queue["max_running"] is None, field


def test_others_see_the_settings_but_cannot_change_them(
    make_client: Callable[..., TestClient], conn: psycopg.Connection
) -> None:
    store.create_queue("emails").run(conn)
    store.create_queue("secret").run(conn)
    reader = make_client()
    csrf = logged_in(reader, conn, "ada", "write", "emails")
    page = reader.get("/dashboard/queues/emails")
    assert page.status_code == 200 and 'name="max_running"' not in page.text
    assert reader.get("/dashboard/queues/secret").status_code == 404
    form = {**FORM, "csrf": csrf, "max_running": "1"}
    assert reader.post("/dashboard/queues/emails/settings", data=form).status_code == 403
    admin = make_client(read_only=True)
    csrf = logged_in(admin, conn, "boss", "admin")
    form = {**FORM, "csrf": csrf, "max_running": "1"}
    assert admin.post("/dashboard/queues/emails/settings", data=form).status_code == 403
    forged = make_client()
    logged_in(forged, conn, "eve", "admin")
    form = {**FORM, "csrf": "forged", "max_running": "1"}
    assert forged.post("/dashboard/queues/emails/settings", data=form).status_code == 403
    queue = store.get_queue("emails").run(conn)
    assert queue is not None and queue["max_running"] is None


def test_the_queues_page_links_each_queue_and_shows_its_last_hour(
    client: TestClient, conn: psycopg.Connection
) -> None:
    store.create_queue("emails").run(conn)
    logged_in(client, conn, "ada", "read")
    html = client.get("/dashboard/queues").text
    assert 'href="/dashboard/queues/emails"' in html and "finished, last hour" in html
