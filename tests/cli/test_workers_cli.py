"""`skiplock workers` lists the registered worker processes; `workers stop ID` asks one to
stop (skiplock.stop_worker: NOTIFY skiplock_control 'stop:<id>')."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import psycopg
from cli_checks import ok, refused, run

from skiplock import store

W = uuid.UUID("00000000-0000-4000-8000-0000000000d1")


def register(conn: psycopg.Connection, worker_id: uuid.UUID) -> None:
    """A worker row, as a starting worker writes it."""
    store.register_worker(
        worker_id,
        host="box",
        pid=4242,
        queues=["default", "mail"],
        concurrency=4,
        version="test",
        signs_webhooks=False,
    ).run(conn)


def test_workers_lists_them_as_before(dsn: str, conn: psycopg.Connection) -> None:
    assert ok(run(dsn, "workers")).strip() == "no workers registered"
    register(conn, W)
    (row,) = json.loads(ok(run(dsn, "workers", "--json")))
    assert (row["id"], row["queues"], row["alive"]) == (str(W), ["default", "mail"], True)
    lines = ok(run(dsn, "workers")).splitlines()
    assert lines[0].split()[:3] == ["ID", "HOST", "PID"]
    assert lines[1].split()[:5] == [str(W), "box", "4242", "default,mail", "0/4"]


def test_stop_notifies_that_worker(
    dsn: str, conn: psycopg.Connection, connect: Callable[..., psycopg.Connection]
) -> None:
    register(conn, W)
    listener = connect(autocommit=True)
    listener.execute("LISTEN skiplock_control")
    assert ok(run(dsn, "workers", "stop", str(W))).strip() == f"worker {W} told to stop"
    out = ok(run(dsn, "workers", "stop", str(W), "--json"))
    assert json.loads(out) == {"id": str(W), "stopping": True}  # the API's 202 body
    # Delivered at commit, so both are already queued on the listener's connection.
    payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=2)]
    assert payloads == [f"stop:{W}", f"stop:{W}"]
    # Asking changes no row: the worker itself unregisters when it has stopped.
    (row,) = json.loads(ok(run(dsn, "workers", "--json")))
    assert row["id"] == str(W)


def test_stop_an_unknown_worker_is_refused(
    dsn: str, conn: psycopg.Connection, connect: Callable[..., psycopg.Connection]
) -> None:
    register(conn, W)
    listener = connect(autocommit=True)
    listener.execute("LISTEN skiplock_control")
    other = uuid.uuid4()
    assert refused(run(dsn, "workers", "stop", str(other))) == f"error: worker {other} not found"
    ok(run(dsn, "workers", "stop", str(W)))
    # Notifications arrive in commit order: the first is this stop, none for `other`.
    (first,) = listener.notifies(timeout=5, stop_after=1)
    assert first.payload == f"stop:{W}"
    assert run(dsn, "workers", "stop", "not-a-uuid").exit_code == 2
    assert run(dsn, "workers", "stop").exit_code == 2
