"""`skiplock.http` against a real local HTTP server and a real PostgreSQL: what a job
sends, what it stores as its result, which answers are retried (and when) and which go
to the dead letters at once, and that bad args are refused at enqueue."""

from __future__ import annotations

import base64
import json
import threading
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import psycopg
import pytest
from local_http import Answer, LocalServer
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app
from skiplock.builtins.http import HttpFailed, HttpSettings, retry_after, send
from skiplock.destinations import Destinations
from skiplock.errors import ConfigError, Discard, Retry
from skiplock.testing import run_jobs
from skiplock.validation import InvalidArgs

LOOPBACK = Destinations.parse(["127.0.0.0/8", "::1"])


def call(args: dict, settings: HttpSettings | None = None) -> dict:
    return send(args, settings=settings or HttpSettings(), destinations=LOOPBACK)


# ---- from SQL to the result ------------------------------------------------------------


def test_a_job_enqueued_from_sql_posts_json_and_stores_the_response(
    app: skiplock.App, server: LocalServer, conn: psycopg.Connection
) -> None:
    server.answer(Answer(201, b'{"id": 7}', {"Content-Type": "application/json", "X-Id": "7"}))
    args = {"url": server.url + "/orders", "method": "POST", "json": {"sku": "A1", "n": 2}}
    (job_id,) = conn.execute(
        "SELECT skiplock.enqueue('skiplock.http', %s::jsonb)", (json.dumps(args),)
    ).fetchone()
    assert run_jobs(app) == 1
    job = app.get_job(job_id)
    assert job.status == "succeeded"
    assert job.result["status"] == 201
    assert job.result["body"] == '{"id": 7}'
    assert job.result["headers"]["x-id"] == "7"
    assert job.result["truncated"] is False
    (seen,) = server.requests
    assert (seen.method, seen.path) == ("POST", "/orders")
    assert json.loads(seen.body) == {"sku": "A1", "n": 2}
    assert seen.headers["Content-Type"] == "application/json"


def test_raw_body_headers_and_method(server: LocalServer) -> None:
    result = call(
        {
            "url": server.url + "/raw",
            "method": "put",
            "headers": {"Content-Type": "text/plain", "X-Trace": "abc"},
            "body": "hé",
        }
    )
    assert result["status"] == 200
    (seen,) = server.requests
    assert (seen.method, seen.body) == ("PUT", "hé".encode())
    assert seen.headers["X-Trace"] == "abc"


def test_the_body_stored_is_bounded_and_binary_bodies_are_base64(server: LocalServer) -> None:
    server.answer(Answer(200, b"x" * 5000), Answer(200, b"\x00\xff\xfe"))
    bounded = call({"url": server.url}, HttpSettings(max_body_bytes=1000))
    assert (len(bounded["body"]), bounded["truncated"]) == (1000, True)
    binary = call({"url": server.url})
    assert base64.b64decode(binary["body_base64"]) == b"\x00\xff\xfe"
    assert "body" not in binary


def test_success_statuses_decide_what_counts_as_success(server: LocalServer) -> None:
    server.answer(Answer(404, b"gone"))
    assert call({"url": server.url, "success_statuses": [200, 404]})["status"] == 404
    with pytest.raises(Discard, match="answered 404, not a success status: 'gone'"):
        call({"url": server.url})


# ---- retries ----------------------------------------------------------------------------


def test_5xx_and_429_are_retried_honouring_retry_after(server: LocalServer) -> None:
    server.answer(Answer(503, headers={"Retry-After": "7"}))
    with pytest.raises(Retry) as retry:
        call({"url": server.url})
    assert retry.value.delay == 7
    server.answer(Answer(429, headers={"Retry-After": "120"}))
    with pytest.raises(Retry) as retry:
        call({"url": server.url})
    assert retry.value.delay == 120
    server.answer(Answer(500))
    with pytest.raises(HttpFailed, match="answered 500"):
        call({"url": server.url})


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after(later, now=now.timestamp()) == 90
    assert retry_after("0") == 0
    assert retry_after("999999") == 3600  # capped
    assert retry_after(format_datetime(now, usegmt=True), now=now.timestamp() + 50) == 0
    assert retry_after("soon") is None
    assert retry_after("²") is None  # a digit to str.isdigit, not to float()
    assert retry_after(None) is None


def test_a_retry_after_answer_is_retried_at_that_delay(
    app: skiplock.App, server: LocalServer, conn: psycopg.Connection
) -> None:
    server.answer(Answer(503, headers={"Retry-After": "600"}))
    job_id = app.enqueue("skiplock.http", {"url": server.url})
    assert run_jobs(app) == 1
    job = app.get_job(job_id)
    assert job.status == "retrying"
    assert "Retry-After 600 s" in job.last_error["error"]
    # the policy's first delay is 5 s; the server's 600 s is what was scheduled
    (wait,) = conn.execute(
        "SELECT extract(epoch FROM run_at - now()) FROM skiplock.jobs WHERE id = %s", (job_id,)
    ).fetchone()
    assert wait > 300


def test_connection_errors_and_timeouts_are_retried(server: LocalServer) -> None:
    port = server.port
    server.close()  # nothing listens there any more: connection refused
    with pytest.raises(HttpFailed, match="ConnectError"):
        call({"url": f"http://127.0.0.1:{port}/"})
    slow = LocalServer([Answer(200, hold=threading.Event())])
    try:
        with pytest.raises(HttpFailed, match="ReadTimeout"):
            call({"url": slow.url, "timeout": 0.2})
    finally:
        slow.close()


# ---- what cannot succeed goes to the dead letters --------------------------------------


def test_a_refused_destination_is_dead_at_once(dsn: str, server: LocalServer) -> None:
    app = skiplock.App(dsn)
    app.serve_builtins({})  # no allow-list: loopback refused
    try:
        job_id = app.enqueue("skiplock.http", {"url": server.url})
        assert run_jobs(app) == 1
        job = app.get_job(job_id)
        assert job.status == "failed"
        assert "is a loopback address, not in the allow-list" in job.last_error["error"]
        assert server.connections == 0
    finally:
        app.close()


def test_a_4xx_is_dead_at_once_with_the_status_in_the_error(
    app: skiplock.App, server: LocalServer
) -> None:
    server.answer(Answer(400, b"bad sku"))
    job_id = app.enqueue("skiplock.http", {"url": server.url, "method": "POST", "json": {}})
    assert run_jobs(app) == 1
    job = app.get_job(job_id)
    assert (job.status, job.attempt) == ("failed", 1)
    assert "answered 400, not a success status: 'bad sku'" in job.last_error["error"]


def test_redirects_are_not_followed_unless_asked(server: LocalServer) -> None:
    redirect = Answer(302, headers={"Location": server.url + "/there"})
    server.answer(redirect)
    with pytest.raises(Discard, match="answered 302"):
        call({"url": server.url + "/start"})
    server.answer(redirect, Answer(200, b"here"))
    result = call({"url": server.url + "/start", "follow_redirects": True})
    assert (result["status"], result["body"]) == (200, "here")
    assert result["url"].endswith("/there")
    assert HttpSettings.parse({"max_redirects": 0}).max_redirects == 0


# ---- credentials from the operator's secrets -------------------------------------------


def test_auth_names_a_secret_whose_value_comes_from_the_environment(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_KEY", "sk_live_123")
    settings = HttpSettings.parse(
        {
            "secrets": {
                "stripe": {"header": "Authorization", "env": "STRIPE_KEY", "prefix": "Bearer "}
            }
        }
    )
    call({"url": server.url, "auth": {"secret": "stripe"}}, settings)
    assert server.requests[0].headers["Authorization"] == "Bearer sk_live_123"
    with pytest.raises(Discard, match=r"auth.secret 'github' is not a secret .*known: stripe"):
        call({"url": server.url, "auth": {"secret": "github"}}, settings)


def test_a_secret_is_not_sent_on_to_another_origin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("API_KEY", "k1")
    settings = HttpSettings.parse({"secrets": {"api": {"header": "X-Api-Key", "env": "API_KEY"}}})
    other = LocalServer()
    first = LocalServer([Answer(307, headers={"Location": other.url + "/next"})])
    try:
        call({"url": first.url, "auth": {"secret": "api"}, "follow_redirects": True}, settings)
        assert first.requests[0].headers["X-Api-Key"] == "k1"
        assert "X-Api-Key" not in other.requests[0].headers
    finally:
        first.close()
        other.close()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"secrets": {"s": {"header": "X", "env": "SKIPLOCK_TEST_UNSET_VAR"}}},
            r"^http\.secrets\.s: environment variable SKIPLOCK_TEST_UNSET_VAR is not set",
        ),
        ({"secrets": {"s": {"env": "HOME"}}}, r"^http\.secrets\.s\.header must be"),
        (
            {"secrets": {"s": {"header": "X", "env": "HOME", "value": "x"}}},
            r"^http\.secrets\.s\.value is not a setting",
        ),
        ({"secrets": "x"}, r"^http\.secrets must be a table"),
        ({"allowed": []}, r"^http\.allowed is not a setting"),
        ({"max_body_bytes": -1}, r"^http\.max_body_bytes must be an integer >= 0, got -1"),
        ({"allow": ["10.0.0.0/40"]}, r"^http\.allow entry"),
    ],
)
def test_bad_http_settings_name_the_key(section: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        HttpSettings.parse(section)


# ---- args refused at enqueue -----------------------------------------------------------

BAD_ARGS = [
    ({}, "args"),
    ({"url": "ftp://example.com/"}, "args.url"),
    ({"url": "http://example.com/", "method": "FETCH"}, "args.method"),
    ({"url": "http://example.com/", "json": {}, "body": "x"}, "args"),
    ({"url": "http://example.com/", "headers": {"Host": "evil"}}, "args.headers"),
    ({"url": "http://example.com/", "timeout": 0}, "args.timeout"),
    ({"url": "http://example.com/", "auth": {"secret": "s", "value": "x"}}, "args.auth"),
    ({"url": "http://example.com/", "password": "x"}, "args"),
]


@pytest.mark.parametrize(("args", "path"), BAD_ARGS)
def test_python_enqueue_refuses_bad_args_naming_the_field(
    app: skiplock.App, args: dict, path: str
) -> None:
    with pytest.raises(InvalidArgs) as refused:
        app.enqueue("skiplock.http", args)
    assert refused.value.path == path


def test_the_api_refuses_bad_args_with_422_once_the_schema_is_published(
    app: skiplock.App, conn: psycopg.Connection
) -> None:
    app.publish_tasks()
    with TestClient(create_app(skiplock.App(app.dsn))) as client:
        response = client.post(
            "/api/v1/jobs",
            json={"task": "skiplock.http", "args": {"url": "http://example.com/", "method": "X"}},
        )
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "args.method"
        ok = client.post(
            "/api/v1/jobs", json={"task": "skiplock.http", "args": {"url": "http://example.com/"}}
        )
        assert ok.status_code == 201, ok.text
    published = conn.execute(
        "SELECT args_schema->'required' FROM skiplock.tasks WHERE name = 'skiplock.http'"
    ).fetchone()
    assert published == (["url"],)


def test_a_request_that_cannot_be_sent_is_dead_not_retried(server: LocalServer) -> None:
    for value in ("a\r\nInjected: yes", "é"):
        with pytest.raises(Discard, match="cannot send this request"):
            call({"url": server.url, "headers": {"X-Note": value}})
    assert server.requests == []


def test_an_uncompressed_answer_is_asked_for_unless_args_say_otherwise(
    server: LocalServer,
) -> None:
    call({"url": server.url})
    call({"url": server.url, "headers": {"accept-encoding": "gzip"}})
    sent = [{k.lower(): v for k, v in seen.headers.items()} for seen in server.requests]
    assert [headers["accept-encoding"] for headers in sent] == ["identity", "gzip"]
