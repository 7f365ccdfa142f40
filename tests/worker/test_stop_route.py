"""POST /api/v1/workers/{id}/stop reaches a running worker (NOTIFY skiplock_control, and
the request recorded on its row for its next heartbeat) and it stops gracefully; the
workers listing shows it while it runs."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
from starlette.testclient import TestClient

import skiplock
from conftest import wait_until
from dev_process import run_dev
from skiplock.api import create_app
from skiplock.worker import Worker


def test_stop_route_stops_that_worker(dsn: str) -> None:
    app = skiplock.App(dsn)
    worker = Worker(app, poll_interval=0.05)
    with TestClient(create_app(skiplock.App(dsn))) as client:

        async def main() -> None:
            runner = asyncio.create_task(worker.run())
            await asyncio.wait_for(worker.started.wait(), 30)
            assert worker.listener is not None
            await asyncio.wait_for(worker.listener.connected.wait(), 30)
            listed = await asyncio.to_thread(client.get, "/api/v1/workers")
            (row,) = listed.json()["workers"]
            assert row["id"] == str(worker.id) and row["alive"] is True
            assert row["queues"] == ["default"] and row["running_jobs"] == 0
            other = await asyncio.to_thread(client.post, f"/api/v1/workers/{uuid.uuid4()}/stop")
            assert other.status_code == 404
            response = await asyncio.to_thread(client.post, f"/api/v1/workers/{worker.id}/stop")
            assert response.status_code == 202
            assert response.json() == {"id": str(worker.id), "stopping": True}
            # No worker.stop() here: only the notification can end the run.
            await asyncio.wait_for(runner, 30)

        asyncio.run(main())
        assert client.get("/api/v1/workers").json() == {"workers": []}
        assert client.post("/api/v1/workers/not-a-uuid/stop").status_code == 404
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM skiplock.workers").fetchone() == (0,)


def test_a_worker_that_missed_the_notification_stops_at_its_next_heartbeat(dsn: str) -> None:
    """listen=False: no NOTIFY reaches it; the request recorded on its row does."""
    worker = Worker(skiplock.App(dsn), listen=False, poll_interval=0.05, heartbeat_interval=0.1)

    async def main() -> None:
        runner = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.started.wait(), 30)
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute("SELECT skiplock.stop_worker(%s)", (worker.id,)).fetchone()
        assert row == (True,)
        await asyncio.wait_for(runner, 30)

    asyncio.run(main())
    assert worker._stopping.is_set()


def test_a_stop_for_another_worker_is_ignored(dsn: str) -> None:
    worker = Worker(skiplock.App(dsn), listen=False)
    worker._on_notify("skiplock_control", f"stop:{uuid.uuid4()}")
    assert not worker._stopping.is_set()
    worker._on_notify("skiplock_control", f"stop:{worker.id}")
    assert worker._stopping.is_set()


def test_stopping_the_dev_worker_keeps_the_dev_api_serving(dsn: str) -> None:
    with run_dev(dsn) as dev:
        wait_until(lambda: dev.api.get("/api/v1/workers").json()["workers"], timeout=60)
        (row,) = dev.api.get("/api/v1/workers").json()["workers"]
        response = dev.api.post(f"/api/v1/workers/{row['id']}/stop")
        assert response.status_code == 202, response.text
        # Either the worker's stop is reported and the process goes on, or (as before)
        # the whole process ends with it.
        wait_until(lambda: dev.logged("stopped on request") or dev.proc.poll() is not None, 60)
        assert dev.proc.poll() is None, dev.log
        assert dev.api.get("/api/v1/workers").json() == {"workers": []}
        assert dev.api.get("/health").status_code == 200
        enqueued = dev.api.post("/api/v1/jobs", json={"task": "echo", "args": {"n": 1}})
        assert enqueued.status_code == 201, enqueued.text
        assert dev.api.get(f"/api/v1/jobs/{enqueued.json()['id']}").json()["status"] == "queued"
    # and Ctrl-C still stops it all, cleanly
    assert dev.proc.returncode == 0, dev.log
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM skiplock.workers").fetchone() == (0,)
