"""Requests as other job systems' clients send them, verbatim but for the Authorization
header, against a real `skiplock dev`: accepted, and run where the task exists."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import wait_until
from dev_process import DevProcess, run_dev

pytestmark = pytest.mark.slow


def finished(dev: DevProcess, path: str) -> dict[str, Any]:
    """The job at `path` once it has finished (a dev worker runs it)."""
    wait_until(lambda: dev.api.get(path).json()["status"] in ("succeeded", "failed"), timeout=60)
    job: dict[str, Any] = dev.api.get(path).json()
    return job


def test_familiar_requests_against_skiplock_dev(dsn: str) -> None:
    with run_dev(dsn) as dev:
        echo = dev.api.post(
            "/api/v1/jobs",
            json={
                "type": "echo",
                "queue": "default",
                "payload": {"message": "Hello"},
                "priority": 1,
            },
        )
        assert echo.status_code == 201, echo.text
        math = dev.api.post(
            "/api/v1/jobs",
            json={
                "type": "math",
                "payload": {"operation": "multiply", "a": 42, "b": 2},
                "priority": 2,
            },
        )
        assert math.status_code == 201, math.text
        job = finished(dev, f"/api/v1/jobs/{math.json()['id']}")
        assert (job["status"], job["result"]) == ("succeeded", 84)
        assert finished(dev, f"/api/v1/jobs/{echo.json()['id']}")["status"] == "succeeded"

        # the same through the short paths other clients call
        short = dev.api.post("/jobs", json={"type": "echo", "payload": {"message": "hi"}})
        assert short.status_code == 201 and short.json()["status"] == "queued"
        assert finished(dev, f"/jobs/{short.json()['id']}")["status"] == "succeeded"
        listed = dev.api.post("/api/jobs", json={"type": "echo", "payload": {}})
        assert dev.api.get(f"/api/jobs/{listed.json()['id']}").status_code == 200
        assert dev.api.get("/api/jobs").status_code == 200

        # filters in other systems' words
        done = dev.api.get("/api/v1/jobs?status=success&limit=10").json()["jobs"]
        assert {job["id"] for job in done} >= {echo.json()["id"], math.json()["id"]}
        assert dev.api.get("/api/v1/jobs?status=pending&limit=50").status_code == 200

        health = dev.api.get("/health").json()
        assert health["status"] == "ok" and health["workers"] == 1
        assert dev.api.get("/api/v1/health").json()["status"] == "ok"
        assert "totals" in dev.api.get("/api/v1/stats").json()
        stats = dev.api.get("/api/v1/queues/default/stats").json()
        assert stats["name"] == "default" and stats["completed_jobs"] >= 3
