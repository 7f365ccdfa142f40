"""Chaos tier, scenarios 6 and 7: the PostgreSQL server itself goes away under load
(fast shutdown, immediate shutdown, postmaster SIGKILL) and comes back on the same
data. Workers and the API must ride it out without a restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fault_fixtures import pg_server_fixture, workers_fixture  # noqa: F401
from harness import (
    AckedIds,
    Figures,
    PgServer,
    Workers,
    check_all,
    hot_count,
    listen_backend,
    running_count,
    wait_for,
)
from psycopg_pool import PoolTimeout
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(900)]
SETTINGS = {
    "concurrency": 10,
    "lease": 5,
    "rescue_interval": 0.5,
    "schedule_interval": 0,
    "probe_interval": 2.0,
}


class Producer:
    """Enqueues small batches in a thread; ids are acknowledged (fsync'd) only once the
    enqueue returned. Failures while the server is down are counted, not acknowledged."""

    def __init__(self, dsn: str, acked: AckedIds) -> None:
        self.app = skiplock.App(dsn, pool_timeout=2)
        self.acked = acked
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ids = self.app.enqueue_many(
                    [{"task": "faults.sleep", "args": {"seconds": 0.05}}] * 10
                )
                self.acked.add(ids)
            except (psycopg.Error, PoolTimeout):
                self.failures += 1
                time.sleep(0.1)
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.app.close()


@pytest.fixture
def server_run(
    pg_server: PgServer, workers: Workers, tmp_path: Path
) -> Iterator[tuple[PgServer, Workers, AckedIds, Callable[[], psycopg.Connection[Any]]]]:
    workers.dsn = pg_server.dsn
    acked = AckedIds(tmp_path / "acked")
    opened: list[psycopg.Connection[Any]] = []

    def connect() -> psycopg.Connection[Any]:
        conn = wait_for(lambda: _try_connect(pg_server.dsn), 60, 0.2)
        opened.append(conn)
        return conn

    yield pg_server, workers, acked, connect
    for conn in opened:
        conn.close()
    acked.close()


def _try_connect(dsn: str) -> psycopg.Connection[Any] | None:
    try:
        return psycopg.connect(dsn, autocommit=True, connect_timeout=2)
    except psycopg.OperationalError:
        return None


def drained(connect: Callable[[], psycopg.Connection[Any]]) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with connect() as conn:
                return hot_count(conn) == 0
        except psycopg.OperationalError:
            return False

    return check


def test_6_fast_shutdown_and_restart_under_load(server_run: Any) -> None:
    server, workers, acked, connect = server_run
    names = [workers.start(**SETTINGS) for _ in range(2)]
    pids = [workers.pid(n) for n in names]
    producer = Producer(server.dsn, acked)
    api_app = skiplock.App(server.dsn, pool_timeout=2)
    codes: dict[int, int] = {}
    down_seconds = []
    with TestClient(create_app(api_app, db_timeout=2)) as client:
        for _ in range(3):
            time.sleep(3)
            server.stop("fast")
            went_down = time.monotonic()
            for _ in range(2):  # the API while the database is away
                for response in (
                    client.get("/api/v1/jobs?limit=1"),
                    client.post("/api/v1/jobs", json={"task": "faults.record"}),
                ):
                    codes[response.status_code] = codes.get(response.status_code, 0) + 1
                    assert response.status_code == 503, response.text
                    assert "Traceback" not in response.text
            server.start()
            down_seconds.append(round(time.monotonic() - went_down, 1))
            wait_for(lambda: client.get("/api/v1/jobs?limit=1").status_code == 200, 60, 0.2)
        producer.stop()
        # The same worker processes finish everything acknowledged.
        wait_for(drained(connect), 120, 0.5)
    assert [workers.pid(n) for n in names] == pids and all(workers.alive(n) for n in names)
    conn = connect()
    # Each listener is back on the restarted server (one reconnect may span two
    # outages when its backoff sleep outlasts the server's uptime in between).
    for name in names:
        wait_for(lambda name=name: listen_backend(conn, name), 30)
    figures = check_all(
        conn, acked.read(), rescue_interval=0.5, in_flight=3 * 2 * 10, figures=Figures("6")
    )
    figures["api_codes_while_down"] = codes
    figures["producer_failures_while_down"] = producer.failures
    figures["down_seconds"] = down_seconds
    figures["listener_reconnects"] = [workers.log(n).count("listener reconnected") for n in names]
    figures.report()
    api_app.close()


@pytest.mark.parametrize("crash", ["immediate", "postmaster_sigkill"])
def test_7_crash_keeps_every_acknowledged_job(server_run: Any, crash: str) -> None:
    server, workers, acked, connect = server_run
    for _ in range(2):
        workers.start(**SETTINGS)
    producer = Producer(server.dsn, acked)
    in_flight = 0
    for _ in range(2):
        time.sleep(3)
        with connect() as conn:
            in_flight += running_count(conn)
        if crash == "immediate":
            server.stop("immediate")
        else:
            server.kill_postmaster()
        time.sleep(1)
        server.start()  # crash recovery from the WAL
    time.sleep(2)
    producer.stop()
    wait_for(drained(connect), 120, 0.5)
    conn = connect()
    # I1 against the fsync'd file: every acknowledged id exists and finished.
    figures = check_all(
        conn, acked.read(), rescue_interval=0.5, in_flight=in_flight, figures=Figures(f"7-{crash}")
    )
    figures["acked"] = len(acked.read())
    figures["producer_failures"] = producer.failures
    figures.report()
    assert set(figures["statuses"]) == {"succeeded"}
