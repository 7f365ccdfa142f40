"""The dashboard's live updates over plain HTTP: GET /dashboard/events against a real
uvicorn server (a stream never ends, which Starlette's TestClient cannot read): the
session and its scopes, queue limits, the events' shape, coalescing, heartbeats, and the
hub's LISTEN connection coming back after its backend is terminated."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
import pytest
from dashboard_browser import Server
from dashboard_checks import CONFIG, PASSWORD, add_token, add_user, log_in

import skiplock
from conftest import wait_until
from skiplock.api import notifications
from skiplock.dashboard import live
from skiplock.dashboard.live import LiveHub

# generous: a stream's first event comes at once, later ones within a floor or two
READ_SECONDS = 30.0


@pytest.fixture
def server(dsn: str) -> Iterator[Server]:
    running = Server(dsn, CONFIG)
    yield running
    running.stop()


@pytest.fixture
def browser(server: Server, conn: psycopg.Connection) -> Iterator[httpx.Client]:
    """An HTTP client logged in to the dashboard as admin `boss`."""
    add_user(conn, "boss", "admin")
    with httpx.Client(base_url=server.url, timeout=READ_SECONDS) as client:
        assert log_in(client, username="boss", password=PASSWORD).status_code == 303
        yield client


def hub_of(server: Server) -> LiveHub:
    hub: LiveHub = server.server.config.app.state.live
    return hub


class Events:
    """The events of one open stream, read as they come: `next()` gives the next event
    (a dict with event, id and data) or comment ({"comment": text})."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()

    def next(self) -> dict[str, Any]:
        event: dict[str, Any] = {}
        for line in self.lines:
            if line.startswith(":"):
                return {"comment": line[1:].strip()}
            if line == "":
                if "event" in event:
                    return event
                continue  # the retry: line stands alone
            name, _, value = line.partition(": ")
            event[name] = json.loads(value) if name == "data" else value
        raise AssertionError("the stream ended")

    def until(self, predicate: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Events up to and including the first that `predicate` accepts."""
        seen = []
        while True:
            event = self.next()
            if "comment" in event:
                continue
            seen.append(event)
            if predicate(event):
                return seen


@contextmanager
def events(client: httpx.Client, page: str, **headers: str) -> Iterator[Events]:
    with client.stream("GET", "/dashboard/events", params={"page": page}, headers=headers) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        yield Events(r)


def enqueue(dsn: str, queue: str, count: int = 1) -> list[int]:
    app = skiplock.App(dsn)
    try:
        return [app.enqueue("t", {}, queue=queue) for _ in range(count)]
    finally:
        app.close()


def test_events_need_a_session_and_name_a_known_page(server: Server, browser: httpx.Client) -> None:
    with httpx.Client(base_url=server.url) as stranger:
        answer = stranger.get("/dashboard/events", params={"page": "/"})
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    for page in (None, "jobs", "/nowhere", "/jobs?queue=no%20spaces"):
        answer = browser.get("/dashboard/events", params={} if page is None else {"page": page})
        assert answer.status_code == 422, page
        assert answer.json()["field"] == "page"
    assert browser.get("/dashboard/events", params={"page": "/jobs/999999"}).status_code == 404


def test_a_queue_limited_login_gets_nothing_of_other_queues(
    server: Server, dsn: str, conn: psycopg.Connection
) -> None:
    (other,) = enqueue(dsn, "other")
    enqueue(dsn, "mine", 2)
    add_user(conn, "lim", "read", "mine")
    with httpx.Client(base_url=server.url, timeout=READ_SECONDS) as client:
        assert log_in(client, username="lim", password=PASSWORD).status_code == 303
        assert client.get("/dashboard/events", params={"page": f"/jobs/{other}"}).status_code == 404
        for page in ("/workers", "/dead-letters"):
            assert client.get("/dashboard/events", params={"page": page}).status_code == 403
        with events(client, "/") as stream:
            (first,) = stream.until(lambda _: True)
            assert first["event"] == "changed"
            assert first["data"]["counts"]["queued"] == 2  # not the other queue's job
            assert "workers" not in first["data"]
            enqueue(dsn, "other", 3)
            enqueue(dsn, "mine")
            # the next event counts the job of its own queue, never the other's three
            (second,) = stream.until(lambda _: True)
            assert second["data"]["counts"]["queued"] == 3


def test_a_job_page_gets_its_status_attempt_and_progress(
    browser: httpx.Client, dsn: str, conn: psycopg.Connection
) -> None:
    (job_id,) = enqueue(dsn, "live")
    with events(browser, f"/jobs/{job_id}") as stream:
        (first,) = stream.until(lambda _: True)
        assert first["event"] == "job" and first["id"]
        assert first["data"] == {
            "id": job_id,
            "status": "queued",
            "attempt": 0,
            "max_attempts": first["data"]["max_attempts"],
            "progress": None,
            "log_seq": 0,
        }
        # a claim and a progress report notify nobody: the stream's floor sees them
        worker = uuid.uuid4()
        conn.execute("SELECT * FROM skiplock.claim_jobs(%s, ARRAY['live'], 1)", (worker,))
        stream.until(lambda e: e["data"]["status"] == "running")
        conn.execute(
            "SELECT skiplock.set_job_progress(%s, %s, 1, 0.5, 'halfway')", (worker, job_id)
        )
        shown = stream.until(lambda e: e["data"]["progress"] is not None)
        progress = shown[-1]["data"]["progress"]
        assert (progress["fraction"], progress["message"]) == (0.5, "halfway")
        assert shown[-1]["data"]["attempt"] == 1
        # a line logged by the running job moves the log's last line: the page re-reads
        conn.execute(
            "SELECT skiplock.append_job_logs(%s, %s, '{1}', ARRAY[now()], '{info}',"
            " '{app}', '{hello}')",
            (worker, [job_id]),
        )
        logged = stream.until(lambda e: e["data"]["log_seq"] > 0)
        assert logged[-1]["data"]["status"] == "running"


def test_the_overview_counts_every_queue_and_the_workers(browser: httpx.Client, dsn: str) -> None:
    enqueue(dsn, "a")
    enqueue(dsn, "b", 2)
    with events(browser, "/") as stream:
        (first,) = stream.until(lambda _: True)
    assert first["event"] == "changed"
    assert set(first["data"]) == {"counts", "workers"}
    assert first["data"]["counts"]["queued"] == 3
    assert first["data"]["workers"] == {"alive": 0, "healthy": 0, "running_jobs": 0}


def test_a_reconnect_with_the_last_event_id_gets_nothing_until_a_change(
    browser: httpx.Client, dsn: str
) -> None:
    enqueue(dsn, "q")
    with events(browser, "/jobs?queue=q") as stream:
        (first,) = stream.until(lambda _: True)
    with events(browser, "/jobs?queue=q", **{"Last-Event-ID": first["id"]}) as stream:
        enqueue(dsn, "q")
        (second,) = stream.until(lambda _: True)
        assert second["data"]["counts"]["queued"] == 2


def test_a_burst_of_changes_comes_as_a_few_events(browser: httpx.Client, dsn: str) -> None:
    burst = 40
    app = skiplock.App(dsn)
    try:
        with events(browser, "/jobs?queue=burst") as stream:
            (first,) = stream.until(lambda _: True)
            assert first["data"]["counts"]["queued"] == 0
            for _ in range(burst):  # one statement, one notification each
                app.enqueue("t", {}, queue="burst")
            seen = stream.until(lambda e: e["data"]["counts"]["queued"] == burst)
    finally:
        app.close()
    assert all(e["event"] == "changed" for e in seen)
    assert len(seen) < burst // 2, [e["data"]["counts"]["queued"] for e in seen]


def test_a_stream_sends_at_most_one_event_per_min_gap(
    browser: httpx.Client, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the listener's batching off: every change reaches the stream on its own
    monkeypatch.setattr(notifications, "GATHER", 0.0)
    changes = 30
    app = skiplock.App(dsn)
    try:
        with events(browser, "/jobs?queue=paced") as stream:
            stream.until(lambda _: True)
            for _ in range(changes):
                app.enqueue("t", {}, queue="paced")
                # paced, not synchronised: changes 30 ms apart, a stream reads at most
                # every MIN_GAP (0.4 s), so about one event for every dozen changes
                time.sleep(0.03)
            seen = stream.until(lambda e: e["data"]["counts"]["queued"] == changes)
    finally:
        app.close()
    assert len(seen) <= changes // 2, [e["data"]["counts"]["queued"] for e in seen]


def test_a_quiet_stream_sends_heartbeats_and_ends_when_the_login_goes(
    browser: httpx.Client, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "HEARTBEAT", 0.5)
    with events(browser, "/queues") as stream:
        stream.until(lambda _: True)
        assert stream.next() == {"comment": "heartbeat"}
        conn.execute("SELECT skiplock.disable_user('boss')")
        with pytest.raises(AssertionError, match="the stream ended"):
            while True:
                stream.next()
    # and a new one is refused
    assert browser.get("/dashboard/events", params={"page": "/"}).status_code == 401


def test_a_stream_ends_when_its_login_is_limited_to_queues(
    browser: httpx.Client, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "HEARTBEAT", 0.5)
    with events(browser, "/workers") as stream:
        stream.until(lambda _: True)
        conn.execute("SELECT skiplock.delete_user('boss')")
        add_user(conn, "boss", "admin", "mine")
        with pytest.raises(AssertionError, match="the stream ended"):
            while True:
                stream.next()
    # the same session, under the user's new rights
    assert browser.get("/dashboard/events", params={"page": "/workers"}).status_code == 403


def test_the_hub_listens_again_after_its_backend_is_terminated(
    server: Server,
    browser: httpx.Client,
    dsn: str,
    conn: psycopg.Connection,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a quiet page wakes only for notifications (or a heartbeat, pushed out of reach)
    monkeypatch.setattr(live, "HEARTBEAT", 600.0)
    hub = hub_of(server)
    listener = hub.notifications
    with events(browser, "/jobs?queue=quiet") as stream:
        stream.until(lambda _: True)
        first = wait_until(lambda: listener.backend_pid, READ_SECONDS)
        with caplog.at_level(logging.WARNING, logger="skiplock.api"):
            conn.execute("SELECT pg_terminate_backend(%s)", (first,))
            second = wait_until(lambda: listener.backend_pid not in (None, first), READ_SECONDS)
        assert second and listener.backend_pid != first
        assert any("listener:" in r.getMessage() for r in caplog.records)
        listening = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (listener.backend_pid,)
        ).fetchone()
        assert listening == (1,)
        # heard again: an enqueue in the watched queue wakes the quiet stream
        enqueue(dsn, "quiet")
        (event,) = stream.until(lambda _: True)
        assert event["data"]["counts"]["queued"] == 1
    # the viewer gone, its watch is too; one LISTEN served it, not one per viewer
    wait_until(lambda: not hub.watches, READ_SECONDS)


def test_one_listen_connection_serves_viewers_and_long_polls(
    server: Server, browser: httpx.Client, dsn: str, conn: psycopg.Connection
) -> None:
    """A dashboard viewer and a client long-polling for a result share the API
    process's one LISTEN connection, and the long-poll still hears its job at once."""
    token = add_token(conn, "poller", "read")
    (job_id,) = enqueue(dsn, "polled")
    listens = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
    )
    with events(browser, "/jobs?queue=polled") as stream:
        stream.until(lambda _: True)
        with httpx.Client(base_url=server.url, timeout=READ_SECONDS) as api:
            # the job finishes while the long-poll waits on it
            started = time.monotonic()
            with ThreadPoolExecutor(1) as pool:
                answer = pool.submit(
                    api.get,
                    f"/api/v1/jobs/{job_id}/result",
                    params={"wait": 20},
                    headers={"Authorization": f"Bearer {token}"},
                )
                waiting = hub_of(server).notifications.subscribers[0]
                wait_until(lambda: answer.done() or waiting.prompt, READ_SECONDS)
                assert not answer.done(), answer.result().text
                assert conn.execute(listens).fetchone() == (1,)
                worker = uuid.uuid4()
                conn.execute("SELECT * FROM skiplock.claim_jobs(%s, ARRAY['polled'], 1)", (worker,))
                conn.execute(
                    "SELECT skiplock.complete_jobs(%s, ARRAY[%s]::bigint[], ARRAY[1],"
                    " ARRAY['{}'::jsonb])",
                    (worker, job_id),
                )
                response = answer.result()
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "succeeded"
            # woken by the notification, not by a re-read after the wait ran out
            assert time.monotonic() - started < 20
    assert conn.execute(listens).fetchone() == (1,)
