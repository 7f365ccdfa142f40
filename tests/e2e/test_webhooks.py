"""Result webhooks against a real PostgreSQL and a real local HTTP receiver: which
finishes enqueue a delivery, what the delivery carries, how it is signed, retried and
refused, and bad callback URLs refused at every door."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

import skiplock
from conftest import async_wait_until, wait_until
from dev_process import SECRET_LINE, run_dev
from skiplock.api import create_app
from skiplock.cli import main
from skiplock.destinations import Destinations
from skiplock.webhooks import check_callback_url, sign
from skiplock.worker import Worker

W1 = uuid.UUID("00000000-0000-4000-8000-0000000000b1")
SECRET = "whsec-test"
BAD_URLS = ["", "ftp://example.com/x", "example.com/hook", "http://", "http://a b/", "x" * 10]
LONG_URL = "https://example.com/" + "a" * 2100


class Receiver:
    """A local HTTP server that records every POST and answers from a script of
    status codes (the last one repeats)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [200])
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers.items()), body))
                status = (
                    receiver.statuses.pop(0) if len(receiver.statuses) > 1 else receiver.statuses[0]
                )
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "https://elsewhere.example/")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def outcomes(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.requests]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def app(dsn: str) -> Iterator[skiplock.App]:
    application = skiplock.App(dsn)
    # the receiver listens on loopback, which the destination guard refuses unless allowed
    application.destinations = Destinations.parse(["127.0.0.1"])

    @application.task(name="ok")
    def ok(n: int = 0) -> dict[str, int]:
        return {"n": n}

    @application.task(name="boom", max_attempts=1)
    def boom() -> None:
        raise RuntimeError("kaput")

    yield application
    application.close()


def deliveries(conn: psycopg.Connection) -> list[tuple[int, str, dict[str, Any]]]:
    """Every delivery job wherever it lives: (id, status, args)."""
    return conn.execute(
        "SELECT id, status, args FROM skiplock.all_jobs WHERE task = 'skiplock.webhook' ORDER BY id"
    ).fetchall()


def claim(conn: psycopg.Connection, queue: str = "default") -> list[int]:
    rows = conn.execute(
        "SELECT id FROM skiplock.claim_jobs(%s, ARRAY[%s], 100)", (W1, queue)
    ).fetchall()
    return [row[0] for row in rows]


def complete(conn: psycopg.Connection, ids: list[int], result: Any = None) -> None:
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (W1, ids, [1] * len(ids), [json.dumps(result)] * len(ids)),
    )


def kill(conn: psycopg.Connection, ids: list[int]) -> None:
    entry = json.dumps({"error": "RuntimeError: boom", "retry": False})
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (W1, ids, [1] * len(ids), [entry] * len(ids)),
    )


def verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> bool:
    """What a receiver does (docs/webhooks.md)."""
    expected = hmac.new(
        secret.encode(), headers["Skiplock-Timestamp"].encode() + b"." + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest("v1=" + expected, headers["Skiplock-Signature"])


def run_worker(app: skiplock.App, body: Any, **settings: Any) -> None:
    settings.setdefault("poll_interval", 0.05)
    worker = Worker(app, **settings)

    async def main_() -> None:
        runner = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(worker.started.wait(), 30)
            await body()
        finally:
            worker.stop()
            await asyncio.wait_for(runner, 30)

    asyncio.run(main_())


def status_of(dsn: str, job_id: int) -> str | None:
    with psycopg.connect(dsn) as c:
        row = c.execute("SELECT status FROM skiplock.all_jobs WHERE id = %s", (job_id,)).fetchone()
    return row[0] if row else None


# ---- SQL: which finishes enqueue a delivery ------------------------------------------


def test_succeeded_job_enqueues_one_delivery_in_its_queue(conn: psycopg.Connection) -> None:
    (job_id,) = conn.execute(
        "SELECT skiplock.enqueue('t', '{\"a\": 1}', queue => 'mail',"
        " callback_url => 'https://example.com/hook')"
    ).fetchone()
    assert deliveries(conn) == []
    complete(conn, claim(conn, "mail"), {"sent": True})
    ((delivery_id, status, args),) = deliveries(conn)
    assert status == "queued"
    assert args["url"] == "https://example.com/hook"
    outcome = args["outcome"]
    assert outcome.pop("finished_at")
    assert outcome == {
        "job_id": job_id,
        "task": "t",
        "queue": "mail",
        "status": "succeeded",
        "attempts": 1,
        "result": {"sent": True},
        "error": None,
    }
    row = conn.execute(
        "SELECT queue, max_attempts, callback_url FROM skiplock.jobs WHERE id = %s",
        (delivery_id,),
    ).fetchone()
    assert row == ("mail", 10, None)


def test_failed_cancelled_and_expired_jobs_each_enqueue_a_delivery(
    conn: psycopg.Connection,
) -> None:
    url = "http://example.com/h"
    (dead,) = conn.execute("SELECT skiplock.enqueue('t', callback_url => %s)", (url,)).fetchone()
    kill(conn, claim(conn))
    (cancelled,) = conn.execute(
        "SELECT skiplock.enqueue('t', callback_url => %s, delay => '1 hour')", (url,)
    ).fetchone()
    assert conn.execute("SELECT skiplock.cancel_job(%s)", (cancelled,)).fetchone() == ("cancelled",)
    (expired,) = conn.execute(
        "SELECT skiplock.enqueue('t', callback_url => %s, delay => '1 hour',"
        " expires_in => '1 minute')",
        (url,),
    ).fetchone()
    conn.execute("SELECT skiplock.expire_jobs(p_now => now() + interval '2 minutes')")

    outcomes = {args["outcome"]["job_id"]: args["outcome"] for _, _, args in deliveries(conn)}
    assert {k: v["status"] for k, v in outcomes.items()} == {
        dead: "failed",
        cancelled: "cancelled",
        expired: "expired",
    }
    assert outcomes[dead]["error"]["error"] == "RuntimeError: boom"
    assert outcomes[dead]["result"] is None


def test_plain_insert_and_enqueue_many_carry_the_callback(conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO skiplock.jobs (task, callback_url) VALUES ('t', 'https://example.com/a')"
    )
    conn.execute(
        "SELECT skiplock.enqueue_many(%s)",
        (json.dumps([{"task": "t", "callback_url": "https://example.com/b"}, {"task": "t"}]),),
    )
    complete(conn, claim(conn))
    assert sorted(args["url"] for _, _, args in deliveries(conn)) == [
        "https://example.com/a",
        "https://example.com/b",
    ]


def test_jobs_without_callback_and_deliveries_themselves_enqueue_nothing(
    conn: psycopg.Connection,
) -> None:
    conn.execute('SELECT skiplock.enqueue_many(\'[{"task": "t"}, {"task": "t"}]\')')
    complete(conn, claim(conn))
    assert deliveries(conn) == []
    # A delivery job that (somehow) carries a callback URL still gets no webhook.
    conn.execute(
        "INSERT INTO skiplock.jobs (task, callback_url)"
        " VALUES ('skiplock.webhook', 'https://example.com/a')"
    )
    complete(conn, claim(conn))
    assert [status for _, status, _ in deliveries(conn)] == ["succeeded"]


def test_delivery_is_enqueued_in_the_finishing_transaction(
    conn: psycopg.Connection, dsn: str
) -> None:
    conn.execute("SELECT skiplock.enqueue('t', callback_url => 'https://example.com/a')")
    with psycopg.connect(dsn) as other:
        complete(other, claim(other))
        assert len(deliveries(other)) == 1
        other.rollback()
    assert deliveries(conn) == []
    assert conn.execute("SELECT status FROM skiplock.all_jobs").fetchall() == [("queued",)]


def test_retried_and_redriven_jobs_keep_their_callback(conn: psycopg.Connection) -> None:
    url = "https://example.com/again"
    (job_id,) = conn.execute("SELECT skiplock.enqueue('t', callback_url => %s)", (url,)).fetchone()
    kill(conn, claim(conn))
    conn.execute("SELECT skiplock.retry_job(%s)", (job_id,))
    kill(conn, [i for i in claim(conn) if i == job_id])
    conn.execute("SELECT skiplock.redrive_dead_letters()")
    assert conn.execute(
        "SELECT callback_url FROM skiplock.all_jobs WHERE id = %s", (job_id,)
    ).fetchone() == (url,)


@pytest.mark.parametrize("url", [*BAD_URLS, LONG_URL])
def test_sql_refuses_bad_callback_urls_and_writes_nothing(
    conn: psycopg.Connection, url: str
) -> None:
    for statement, params in [
        ("SELECT skiplock.enqueue('t', callback_url => %s)", (url,)),
        (
            "SELECT skiplock.enqueue('t', unique_key => 'k', callback_url => %s)",
            (url,),
        ),
        ("INSERT INTO skiplock.jobs (task, callback_url) VALUES ('t', %s)", (url,)),
        (
            "SELECT skiplock.enqueue_many(%s)",
            (json.dumps([{"task": "t"}, {"task": "t", "callback_url": url}]),),
        ),
    ]:
        with pytest.raises(psycopg.errors.CheckViolation, match="callback_url_"):
            conn.execute(statement, params)
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM skiplock.unique_keys").fetchone() == (0,)


# ---- Python -------------------------------------------------------------------------


@pytest.mark.parametrize("url", [*BAD_URLS, LONG_URL, "http://a\x00b/"])
def test_python_refuses_bad_callback_urls(
    app: skiplock.App, conn: psycopg.Connection, url: str
) -> None:
    with pytest.raises(ValueError, match="callback_url"):
        check_callback_url(url)
    with pytest.raises(ValueError, match="callback_url"):
        app.enqueue("ok", callback_url=url)
    with pytest.raises(ValueError, match="callback_url"):
        app.enqueue_many([{"task": "ok"}, {"task": "ok", "callback_url": url}])
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (0,)


def test_python_enqueue_paths_carry_the_callback(
    app: skiplock.App, conn: psycopg.Connection
) -> None:
    url = "https://example.com/py"
    one = app.enqueue("ok", callback_url=url)
    copied = app.enqueue_many([{"task": "ok", "callback_url": url}] * 2)  # the COPY path
    mixed = app.enqueue_many([{"task": "ok", "callback_url": url, "delay": 5}, {"task": "ok"}])
    async_one = asyncio.run(app.enqueue_async("ok", callback_url=url))
    got = dict(conn.execute("SELECT id, callback_url FROM skiplock.jobs").fetchall())
    assert got == {
        one: url,
        copied[0]: url,
        copied[1]: url,
        mixed[0]: url,
        mixed[1]: None,
        async_one: url,
    }
    assert app.get_job(one).callback_url == url


def test_workflow_steps_take_no_callback() -> None:
    with pytest.raises(skiplock.ConfigError, match="callback_url"):
        skiplock.Step("ok", callback_url="https://example.com/x")


def test_worker_delivers_succeeded_failed_cancelled_and_raw_sql_jobs_once_signed(
    app: skiplock.App, dsn: str, receiver: Receiver
) -> None:
    done = app.enqueue("ok", {"n": 7}, callback_url=receiver.url)
    failed = app.enqueue("boom", callback_url=receiver.url)
    cancelled = app.enqueue("ok", callback_url=receiver.url, delay=3600)
    app.cancel_job(cancelled)
    with psycopg.connect(dsn, autocommit=True) as c:
        (raw_sql,) = c.execute(
            "INSERT INTO skiplock.jobs (task, args, callback_url) VALUES ('ok', '{\"n\": 1}', %s)"
            " RETURNING id",
            (receiver.url,),
        ).fetchone()

    async def body() -> None:
        await async_wait_until(lambda: len(receiver.requests) >= 4, timeout=30)
        with psycopg.connect(dsn) as c:
            await async_wait_until(
                lambda: all(s == "succeeded" for _, s, _ in deliveries(c)), timeout=30
            )

    run_worker(app, body, webhook_secret=SECRET)
    assert len(receiver.requests) == 4
    by_job = {}
    for headers, raw in receiver.requests:
        assert headers["Content-Type"] == "application/json"
        assert verify(headers, raw)
        assert not verify(headers, raw, "another secret")
        outcome = json.loads(raw)
        by_job[outcome["job_id"]] = outcome
        assert int(headers["Skiplock-Delivery"]) != outcome["job_id"]
    assert by_job[done]["status"] == "succeeded" and by_job[done]["result"] == {"n": 7}
    assert by_job[failed]["status"] == "failed"
    assert "kaput" in by_job[failed]["error"]["error"]
    assert by_job[cancelled]["status"] == "cancelled"
    assert by_job[raw_sql]["status"] == "succeeded" and by_job[raw_sql]["result"] == {"n": 1}


def test_refused_delivery_is_retried_until_the_receiver_takes_it(
    app: skiplock.App, dsn: str
) -> None:
    receiver = Receiver([500, 200])
    try:
        app.enqueue("ok", callback_url=receiver.url)

        async def body() -> None:
            await async_wait_until(lambda: len(receiver.requests) >= 1, timeout=30)
            with psycopg.connect(dsn, autocommit=True) as c:
                await async_wait_until(
                    lambda: [s for _, s, _ in deliveries(c)] == ["retrying"], timeout=30
                )
                ((delivery_id, _, _),) = deliveries(c)
                (error,) = c.execute(
                    "SELECT last_error ->> 'error' FROM skiplock.all_jobs WHERE id = %s",
                    (delivery_id,),
                ).fetchone()
                assert "answered 500" in error
                # Move time: the backoff is seconds; retry_job makes it ready now.
                c.execute("SELECT skiplock.retry_job(%s)", (delivery_id,))
                await async_wait_until(
                    lambda: status_of(dsn, delivery_id) == "succeeded", timeout=30
                )

        run_worker(app, body, webhook_secret=SECRET)
        assert len(receiver.requests) == 2
        assert receiver.outcomes()[0] == receiver.outcomes()[1]
    finally:
        receiver.close()


def test_redirect_is_a_failed_delivery_not_followed(app: skiplock.App, dsn: str) -> None:
    receiver = Receiver([302])
    try:
        app.enqueue("ok", callback_url=receiver.url)

        async def body() -> None:
            with psycopg.connect(dsn, autocommit=True) as c:
                await async_wait_until(
                    lambda: [s for _, s, _ in deliveries(c)] == ["retrying"], timeout=30
                )

        run_worker(app, body, webhook_secret=SECRET)
        assert len(receiver.requests) == 1
    finally:
        receiver.close()


def test_without_a_secret_nothing_is_sent_and_the_delivery_is_dead(
    app: skiplock.App, dsn: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SKIPLOCK_WEBHOOK_SECRET", raising=False)
    app.enqueue("ok", callback_url=receiver.url)

    async def body() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            await async_wait_until(
                lambda: [s for _, s, _ in deliveries(c)] == ["failed"], timeout=30
            )

    run_worker(app, body)
    assert receiver.requests == []
    with psycopg.connect(dsn) as c:
        (error,) = c.execute(
            "SELECT last_error FROM skiplock.dead_letters WHERE task = 'skiplock.webhook'"
        ).fetchone()
    assert "SKIPLOCK_WEBHOOK_SECRET" in error and "unsigned" in error


def test_secret_from_the_environment(
    app: skiplock.App, dsn: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKIPLOCK_WEBHOOK_SECRET", "from-env")
    app.enqueue("ok", callback_url=receiver.url)

    async def body() -> None:
        await async_wait_until(lambda: len(receiver.requests) >= 1, timeout=30)

    run_worker(app, body)
    headers, raw = receiver.requests[0]
    assert verify(headers, raw, "from-env")


def test_signature_scheme_is_hmac_sha256_of_timestamp_dot_body() -> None:
    # The fixed vector of docs/webhooks.md (also what `openssl dgst -sha256 -hmac` prints).
    digest = "50734c138905b9d12a2e6ae5ca50bae0ed0f68645ac733594ceb9cbf43c04808"
    assert sign("s3cret", "1700000000", b'{"job_id":1}') == "v1=" + digest


# ---- API ----------------------------------------------------------------------------


@pytest.fixture
def client(dsn: str) -> Iterator[TestClient]:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute('SELECT skiplock.publish_tasks(NULL, \'[{"name": "t"}]\'::jsonb)')
    app = skiplock.App(dsn)
    with TestClient(create_app(app)) as c:
        yield c
    app.close()


def test_api_enqueue_single_and_bulk_with_callback(client: TestClient) -> None:
    url = "https://example.com/api"
    response = client.post("/api/v1/jobs", json={"task": "t", "callback_url": url})
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    assert client.get(f"/api/v1/jobs/{job_id}").json()["callback_url"] == url
    response = client.post("/api/v1/jobs", json=[{"task": "t", "callback_url": url}, {"task": "t"}])
    assert response.status_code == 201, response.text
    ids = response.json()["ids"]
    assert [client.get(f"/api/v1/jobs/{i}").json()["callback_url"] for i in ids] == [url, None]


@pytest.mark.parametrize("url", [*BAD_URLS, LONG_URL, 5])
def test_api_refuses_bad_callback_url_naming_the_field(
    client: TestClient, conn: psycopg.Connection, url: Any
) -> None:
    for body in (
        {"task": "t", "callback_url": url},
        [{"task": "t"}, {"task": "t", "callback_url": url}],
    ):
        response = client.post("/api/v1/jobs", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["field"].endswith("callback_url")
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (0,)


def test_api_workflow_steps_take_no_callback(client: TestClient) -> None:
    response = client.post(
        "/api/v1/workflows",
        json={"steps": [{"task": "t", "callback_url": "https://example.com/x"}]},
    )
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "steps[0].callback_url"


# ---- API: a callback_url only where a worker can sign its delivery ---------------------


def register(conn: psycopg.Connection, queues: list[str], signs: bool | None) -> uuid.UUID:
    """A live worker of `queues` that said it holds a webhook secret (True), holds none
    (False), or said nothing (None: the six-argument call of older workers)."""
    worker_id = uuid.uuid4()
    if signs is None:
        conn.execute("SELECT skiplock.register_worker(%s, 'h', 1, %s, 1, 'v')", (worker_id, queues))
    else:
        conn.execute(
            "SELECT skiplock.register_worker(%s, 'h', 1, %s, 1, 'v', p_signs_webhooks => %s)",
            (worker_id, queues, signs),
        )
    conn.commit()
    return worker_id


def post_callback_jobs(
    client: TestClient, queue: str = "default", url: str = "http://127.0.0.1:9/hook"
) -> list[Any]:
    """One job and a bulk of two (the second with the callback), each with a callback URL
    in `queue`: the two answers. The URL is on loopback: a delivery never leaves."""
    job = {"task": "t", "queue": queue, "callback_url": url}
    return [
        client.post("/api/v1/jobs", json=job),
        client.post("/api/v1/jobs", json=[{"task": "t", "queue": queue}, job]),
    ]


def test_sql_workers_register_whether_they_sign(conn: psycopg.Connection) -> None:
    said = {register(conn, ["default"], signs): signs for signs in (True, False, None)}
    rows = conn.execute("SELECT id, signs_webhooks FROM skiplock.worker_stats").fetchall()
    assert dict(rows) == said
    # Registering again only refreshes the heartbeat, as before.
    (yes,) = [worker_id for worker_id, signs in said.items() if signs]
    conn.execute("SELECT skiplock.register_worker(%s, 'h', 1, '{default}', 1, 'v', false)", (yes,))
    assert conn.execute(
        "SELECT signs_webhooks FROM skiplock.workers WHERE id = %s", (yes,)
    ).fetchone() == (True,)


def test_api_refuses_callback_url_when_every_live_worker_of_the_queue_lacks_a_secret(
    client: TestClient, conn: psycopg.Connection
) -> None:
    register(conn, ["default", "mail"], False)
    register(conn, ["mail"], False)
    for queue in ("default", "mail"):
        single, bulk = post_callback_jobs(client, queue)
        for response, field in ((single, "callback_url"), (bulk, "[1].callback_url")):
            assert response.status_code == 422, response.text
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["field"] == field
            assert problem["detail"].endswith(
                f"no running worker of queue {queue} can sign webhook deliveries:"
                " set SKIPLOCK_WEBHOOK_SECRET on the workers"
            )
    assert conn.execute("SELECT count(*) FROM skiplock.all_jobs").fetchone() == (0,)
    # A job without a callback URL is none of this check's business.
    assert client.post("/api/v1/jobs", json={"task": "t"}).status_code == 201


@pytest.mark.parametrize(
    "workers",
    [
        pytest.param([], id="no worker yet: one with a secret may come"),
        pytest.param([(["default"], True)], id="a worker that signs"),
        pytest.param([(["default"], False), (["default"], True)], id="one of two signs"),
        pytest.param([(["default"], None)], id="a worker that did not say"),
        pytest.param([(["other"], False)], id="the unsigned worker serves another queue"),
        pytest.param([(["default"], "stale")], id="the unsigned worker is no longer alive"),
    ],
)
def test_api_accepts_callback_url_unless_the_queue_is_known_to_be_unsigned(
    client: TestClient, conn: psycopg.Connection, workers: list[tuple[list[str], Any]]
) -> None:
    for queues, signs in workers:
        worker_id = register(conn, queues, False if signs == "stale" else signs)
        if signs == "stale":
            conn.execute(
                "UPDATE skiplock.workers SET last_heartbeat_at = now() - interval '2 minutes'"
                " WHERE id = %s",
                (worker_id,),
            )
            conn.commit()
    single, bulk = post_callback_jobs(client)
    assert (single.status_code, bulk.status_code) == (201, 201), (single.text, bulk.text)
    assert conn.execute(
        "SELECT count(*) FROM skiplock.jobs WHERE callback_url IS NOT NULL"
    ).fetchone() == (2,)


@pytest.mark.parametrize("secret", [None, "from-env", "from-settings"])
def test_a_running_worker_reports_whether_it_signs_and_the_api_follows(
    app: skiplock.App,
    client: TestClient,
    conn: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    receiver: Receiver,
    secret: str | None,
) -> None:
    monkeypatch.delenv("SKIPLOCK_WEBHOOK_SECRET", raising=False)
    if secret == "from-env":
        monkeypatch.setenv("SKIPLOCK_WEBHOOK_SECRET", secret)
    settings = {"webhook_secret": secret} if secret == "from-settings" else {}

    async def body() -> None:
        (listed,) = (await asyncio.to_thread(client.get, "/api/v1/workers")).json()["workers"]
        assert listed["signs_webhooks"] is (secret is not None)
        single, bulk = await asyncio.to_thread(post_callback_jobs, client, url=receiver.url)
        expected = 422 if secret is None else 201
        assert (single.status_code, bulk.status_code) == (expected, expected)

    run_worker(app, body, **settings)


# ---- CLI ----------------------------------------------------------------------------


def test_cli_enqueue_with_callback_url(dsn: str, conn: psycopg.Connection) -> None:
    url = "https://example.com/cli"
    result = CliRunner().invoke(main, ["--dsn", dsn, "enqueue", "t", "--callback-url", url])
    assert result.exit_code == 0, result.output
    job_id = int(result.stdout)
    assert conn.execute(
        "SELECT callback_url FROM skiplock.jobs WHERE id = %s", (job_id,)
    ).fetchone() == (url,)
    shown = CliRunner().invoke(main, ["--dsn", dsn, "jobs", "show", str(job_id)])
    assert f"callback_url:        {url}" in shown.stdout.splitlines()


def test_cli_worker_signs_with_webhook_secret(
    dsn: str, receiver: Receiver, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SKIPLOCK_WEBHOOK_SECRET", raising=False)
    app = skiplock.App(dsn)
    job_id = app.enqueue("echo", {"hi": 1}, callback_url=receiver.url)
    app.close()
    config = tmp_path / "builtins.toml"
    config.write_text('[http]\nallow = ["127.0.0.1"]\n')
    with (tmp_path / "worker.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "skiplock",
                "--dsn",
                dsn,
                "worker",
                "--app",
                "skiplock.demo:app",
                "--webhook-secret",
                "from-the-flag",
                "--builtins-config",
                str(config),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={k: v for k, v in os.environ.items() if k != "SKIPLOCK_WEBHOOK_SECRET"},
        )
    try:
        wait_until(lambda: receiver.requests, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    headers, raw = receiver.requests[0]
    assert verify(headers, raw, "from-the-flag")
    assert json.loads(raw)["job_id"] == job_id
    assert json.loads(raw)["result"] == {"hi": 1}


@pytest.mark.parametrize("url", ["ftp://example.com/x", "", LONG_URL])
def test_cli_refuses_bad_callback_url_with_exit_2_and_one_line(
    dsn: str, conn: psycopg.Connection, url: str
) -> None:
    result = CliRunner().invoke(main, ["--dsn", dsn, "enqueue", "t", "--callback-url", url])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --callback-url"), result.stderr
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (0,)


# ---- skiplock dev -------------------------------------------------------------------


def test_dev_makes_a_secret_prints_it_and_signs_with_it(dsn: str, receiver: Receiver) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SKIPLOCK_WEBHOOK_SECRET"}
    with run_dev(dsn, env=env) as dev:
        secret = dev.banner_value(SECRET_LINE)
        assert len(secret) >= 32
        wait_until(lambda: dev.api.get("/api/v1/workers").json()["workers"], timeout=60)
        response = dev.api.post(
            "/api/v1/jobs", json={"task": "echo", "args": {"n": 1}, "callback_url": receiver.url}
        )
        assert response.status_code == 201, response.text
        wait_until(lambda: receiver.requests, timeout=60)
    headers, raw = receiver.requests[0]
    assert verify(headers, raw, secret)
    assert json.loads(raw)["job_id"] == response.json()["id"]
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM skiplock.dead_letters").fetchone() == (0,)


def test_dev_signs_with_the_secret_it_is_given(dsn: str, receiver: Receiver) -> None:
    env = {**os.environ, "SKIPLOCK_WEBHOOK_SECRET": "given-to-dev"}
    with run_dev(dsn, env=env) as dev:
        assert not [line for line in dev.banner if line.startswith(SECRET_LINE)]
        wait_until(lambda: dev.api.get("/api/v1/workers").json()["workers"], timeout=60)
        response = dev.api.post("/api/v1/jobs", json={"task": "echo", "callback_url": receiver.url})
        assert response.status_code == 201, response.text
        wait_until(lambda: receiver.requests, timeout=60)
    headers, raw = receiver.requests[0]
    assert verify(headers, raw, "given-to-dev")
