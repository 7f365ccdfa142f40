"""The dashboard's rules that need no browser: closed by default, login by password or
token, the session cookie, CSRF, scopes, queue limits, read-only mode, the failure limit
and the audit log."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from dashboard_checks import (
    CONFIG,
    PASSWORD,
    add_token,
    add_user,
    csrf_of,
    dead_letters,
    log_in,
)
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import skiplock
from skiplock import store
from skiplock.api import api_lifespan, create_app
from skiplock.api.auth import hash_token


def status_of(conn: psycopg.Connection, job_id: int) -> str:
    row = conn.execute("SELECT status FROM skiplock.all_jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return str(row[0])


def audit_rows(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT actor, action, target, status, detail ->> 'via' FROM skiplock.audit_log ORDER BY id"
    ).fetchall()


def test_the_root_leads_to_the_dashboard_which_asks_for_a_login(client: TestClient) -> None:
    for path in ("/", "/ui", "/dashboard"):
        answer = client.get(path, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (302, "/dashboard/")
    answer = client.get("/dashboard/jobs?queue=a", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/login?next=%2Fdashboard%2Fjobs%3Fqueue%3Da"
    assert client.get("/dashboard/login").status_code == 200
    # the API beside it still wants its bearer token
    assert client.get("/api/v1/jobs").status_code == 401


def test_a_password_login_sets_a_strict_httponly_signed_session(
    client: TestClient, conn: psycopg.Connection
) -> None:
    add_user(conn, "ada", "read")
    answer = log_in(client, username="ada", password=PASSWORD)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/dashboard/"
    cookie = [v for k, v in answer.headers.multi_items() if k == "set-cookie"]
    session = next(c for c in cookie if c.startswith("skiplock_session="))
    assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/dashboard/" in session
    assert "Secure" not in session  # plain http here; https gets Secure
    page = client.get("/dashboard/")
    assert page.status_code == 200 and "ada · read" in page.text
    # a session whose signature does not match is no session
    client.cookies.set("skiplock_session", client.cookies["skiplock_session"] + "x")
    assert client.get("/dashboard/", follow_redirects=False).status_code == 303
    assert ("ada", "login", None, 200, "dashboard") in audit_rows(conn)


def test_a_wrong_password_is_refused_audited_and_limited(
    client: TestClient, conn: psycopg.Connection
) -> None:
    add_user(conn, "ada", "admin")
    for _ in range(3):
        answer = log_in(client, username="ada", password="wrong")
        assert answer.status_code == 401
        assert "wrong username, password or token" in answer.text
    answer = log_in(client, username="ada", password=PASSWORD)
    assert answer.status_code == 429 and "too many failed attempts" in answer.text
    rows = audit_rows(conn)
    assert [r[3] for r in rows] == [401, 401, 401, 429]
    assert "skiplock_session" not in client.cookies


def test_a_login_form_without_its_csrf_token_is_refused(
    client: TestClient, conn: psycopg.Connection
) -> None:
    add_user(conn, "ada", "admin")
    client.get("/dashboard/login")
    form = {"username": "ada", "password": PASSWORD, "csrf": "forged"}
    answer = client.post("/dashboard/login", data=form, follow_redirects=False)
    assert answer.status_code == 403
    assert "skiplock_session" not in client.cookies


def test_a_token_login_follows_the_token_and_ends_when_it_is_revoked(
    client: TestClient, conn: psycopg.Connection
) -> None:
    token = add_token(conn, "ci", "write")
    assert log_in(client, token=token).status_code == 303
    assert "ci · write" in client.get("/dashboard/jobs").text
    assert ("ci", "login", None, 200, "dashboard") in audit_rows(conn)
    assert log_in(client, token="sk_nope").status_code == 401
    conn.execute(
        "UPDATE skiplock.api_tokens SET revoked_at = now() WHERE token_hash = %s",
        (hash_token(token),),
    )
    assert client.get("/dashboard/jobs", follow_redirects=False).status_code == 303


def test_a_forged_post_without_the_csrf_token_is_refused_and_changes_nothing(
    client: TestClient, conn: psycopg.Connection, dsn: str
) -> None:
    add_user(conn, "ada", "admin")
    (job_id,) = dead_letters(dsn, "default", 1)
    log_in(client, username="ada", password=PASSWORD)
    for form in ({}, {"csrf": "guess"}):
        answer = client.post(f"/dashboard/jobs/{job_id}/retry", data=form)
        assert answer.status_code == 403 and "CSRF" in answer.text
    assert status_of(conn, job_id) == "failed"
    page = client.get(f"/dashboard/jobs/{job_id}")
    answer = client.post(
        f"/dashboard/jobs/{job_id}/retry", data={"csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert status_of(conn, job_id) == "queued"
    assert ("ada", f"POST /dashboard/jobs/{job_id}/retry", f"jobs/{job_id}", 200, "dashboard") in (
        audit_rows(conn)
    )


def test_scopes_decide_the_buttons_and_the_actions(
    make_client: Callable[..., TestClient], conn: psycopg.Connection, dsn: str
) -> None:
    (job_id,) = dead_letters(dsn, "default", 1)
    for name, scope in (("reader", "read"), ("writer", "write"), ("boss", "admin")):
        add_user(conn, name, scope)
    reader, writer, boss = make_client(), make_client(), make_client()
    for c, name in ((reader, "reader"), (writer, "writer"), (boss, "boss")):
        assert log_in(c, username=name, password=PASSWORD).status_code == 303
    page = reader.get(f"/dashboard/jobs/{job_id}")
    assert page.status_code == 200 and ">Retry</button>" not in page.text
    # the failed attempt, with its traceback
    assert "Attempt 1" in page.text and "RuntimeError: boom" in page.text
    assert "RuntimeError: RuntimeError" not in page.text
    assert "Traceback (most recent call last)" in page.text
    assert reader.post(
        f"/dashboard/jobs/{job_id}/retry", data={"csrf": csrf_of(page.text)}
    ).status_code == (403)
    queues = writer.get("/dashboard/queues")
    assert "Pause default" not in queues.text
    answer = writer.post("/dashboard/queues/default/pause", data={"csrf": csrf_of(queues.text)})
    assert answer.status_code == 403 and "admin scope" in answer.text
    page = writer.get(f"/dashboard/jobs/{job_id}")
    assert ">Retry</button>" in page.text
    queues = boss.get("/dashboard/queues")
    assert "Pause default" in queues.text
    answer = boss.post("/dashboard/queues/default/pause", data={"csrf": csrf_of(queues.text)})
    assert answer.status_code == 200 and "The queue is paused." in answer.text
    assert store.get_queue("default").run(conn)["paused"] is True  # type: ignore[index]


def test_a_queue_limited_login_sees_nothing_of_other_queues(
    client: TestClient, conn: psycopg.Connection, dsn: str
) -> None:
    app = skiplock.App(dsn)
    mine = app.enqueue("t", {}, queue="mine")
    other = app.enqueue("t", {}, queue="other")
    app.close()
    add_user(conn, "lim", "admin", "mine")
    log_in(client, username="lim", password=PASSWORD)
    assert client.get(f"/dashboard/jobs/{mine}").status_code == 200
    answer = client.get(f"/dashboard/jobs/{other}")
    assert answer.status_code == 404 and f"job {other} not found" in answer.text
    jobs = client.get("/dashboard/jobs").text
    assert f"/dashboard/jobs/{mine}" in jobs and f"/dashboard/jobs/{other}" not in jobs
    assert client.get("/dashboard/jobs?queue=other").text.count("/dashboard/jobs/") == 0
    for page in ("/dashboard/", "/dashboard/queues"):
        text = client.get(page).text
        assert "mine" in text and "other" not in text
    for page in ("/dashboard/dead-letters", "/dashboard/workers"):
        assert client.get(page).status_code == 403
    csrf = csrf_of(client.get("/dashboard/queues").text)
    assert client.post("/dashboard/queues/other/pause", data={"csrf": csrf}).status_code == 404
    assert client.post(f"/dashboard/jobs/{other}/cancel", data={"csrf": csrf}).status_code == 404
    assert status_of(conn, other) == "queued"


def test_read_only_shows_no_action_and_refuses_every_post(
    make_client: Callable[..., TestClient], conn: psycopg.Connection, dsn: str
) -> None:
    (job_id,) = dead_letters(dsn, "default", 1)
    add_user(conn, "boss", "admin")
    client = make_client(read_only=True)
    log_in(client, username="boss", password=PASSWORD)
    for page in (f"/dashboard/jobs/{job_id}", "/dashboard/queues", "/dashboard/dead-letters"):
        text = client.get(page).text
        assert "read-only" in text
        # the one form that posts is the logout's
        assert text.count('method="post"') == 1 and 'action="/dashboard/logout"' in text, page
        assert "matching…" not in text
    csrf = csrf_of(client.get("/dashboard/queues").text)
    for path in (
        f"/dashboard/jobs/{job_id}/retry",
        f"/dashboard/dead-letters/{job_id}/redrive",
        "/dashboard/dead-letters/purge",
        "/dashboard/queues/default/pause",
    ):
        answer = client.post(path, data={"csrf": csrf})
        assert answer.status_code == 403 and "read-only" in answer.text, path
    assert status_of(conn, job_id) == "failed"


def test_without_a_secret_the_dashboard_says_how_to_set_one(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client(auth=None)
    page = client.get("/dashboard/login")
    assert "SKIPLOCK_JWT_SECRET" in page.text
    assert client.get("/dashboard/", follow_redirects=False).status_code == 303
    answer = client.post("/dashboard/login", data={"username": "a", "password": "b"})
    assert answer.status_code == 501


def test_bulk_redrive_shows_a_dry_run_count_then_acts_and_audits(
    client: TestClient, conn: psycopg.Connection, dsn: str
) -> None:
    dead_letters(dsn, "a", 3)
    dead_letters(dsn, "b", 2)
    add_user(conn, "boss", "admin")
    log_in(client, username="boss", password=PASSWORD)
    dry = client.get("/dashboard/dead-letters/redrive?queue=a")
    assert "Dry run: <strong>3</strong>" in dry.text
    assert conn.execute("SELECT count(*) FROM skiplock.dead_letters").fetchone() == (5,)
    done = client.post(
        "/dashboard/dead-letters/redrive", data={"csrf": csrf_of(dry.text), "queue": "a"}
    )
    assert "Redriven: <strong>3</strong>" in done.text
    assert conn.execute("SELECT queue FROM skiplock.dead_letters").fetchall() == [("b",), ("b",)]
    purge = client.get("/dashboard/dead-letters/purge?queue=b")
    assert "Dry run: <strong>2</strong>" in purge.text
    client.post("/dashboard/dead-letters/purge", data={"csrf": csrf_of(purge.text), "queue": "b"})
    assert conn.execute("SELECT count(*) FROM skiplock.dead_letters").fetchone() == (0,)
    details = conn.execute(
        "SELECT action, detail ->> 'queue', detail ->> 'count' FROM skiplock.audit_log"
        " WHERE target = 'dead-letters' ORDER BY id"
    ).fetchall()
    assert details == [
        ("POST /dashboard/dead-letters/redrive", "a", "3"),
        ("POST /dashboard/dead-letters/purge", "b", "2"),
    ]


def test_the_dashboard_works_mounted_under_a_prefix(conn: psycopg.Connection, dsn: str) -> None:
    add_user(conn, "ada", "read")
    api = create_app(skiplock.App(dsn), auth=CONFIG)
    host = Starlette(routes=[Mount("/skiplock", api)], lifespan=lambda _: api_lifespan(api))
    with TestClient(host) as client:
        page = client.get("/skiplock/dashboard/login")
        assert 'action="/skiplock/dashboard/login"' in page.text
        assert 'href="/skiplock/dashboard/static/dashboard.css"' in page.text
        answer = log_in(client, "/skiplock/dashboard", username="ada", password=PASSWORD)
        assert answer.headers["location"] == "/skiplock/dashboard/"
        assert "ada · read" in client.get("/skiplock/dashboard/jobs").text
        assert client.get("/skiplock/dashboard/static/dashboard.js").status_code == 200


def test_over_https_the_session_cookie_is_secure(dsn: str, conn: psycopg.Connection) -> None:
    add_user(conn, "ada", "read")
    api = create_app(skiplock.App(dsn), auth=CONFIG)
    with TestClient(api, base_url="https://testserver") as client:
        answer = log_in(client, username="ada", password=PASSWORD)
        cookies = [v for k, v in answer.headers.multi_items() if k == "set-cookie"]
        session = next(c for c in cookies if c.startswith("skiplock_session="))
        assert "Secure" in session and "HttpOnly" in session


def test_a_bad_filter_is_a_422_page_naming_it(client: TestClient, conn: psycopg.Connection) -> None:
    add_user(conn, "ada", "read")
    log_in(client, username="ada", password=PASSWORD)
    answer = client.get("/dashboard/jobs?status=sleeping")
    assert answer.status_code == 422 and "status must be one of" in answer.text
    answer = client.get("/dashboard/jobs?queue=bad%20name")
    assert answer.status_code == 422 and "queue must be a valid queue name" in answer.text
    assert client.get("/dashboard/jobs/12345").status_code == 404
    assert client.get("/dashboard/jobs/not-an-id").status_code == 404
