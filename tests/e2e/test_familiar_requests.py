"""Requests as other job systems' clients send them, verbatim but for the Authorization
header, against a real `skiplock dev`: accepted, and run where the task exists."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import wait_until
from dev_process import DevProcess, run_dev

USER_LINE = "API user (admin, admin; password shown once): "

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


def test_familiar_requests_for_tasks_dev_does_not_serve(dsn: str) -> None:
    """Accepted all the same (publishing order must not matter); each job says that no
    worker has published its task, and waits without spending attempts."""
    with run_dev(dsn) as dev:
        password = dev.banner_value(USER_LINE)
        login = dev.api.post("/api/login", json={"username": "admin", "password": password})
        assert login.status_code == 200 and login.json()["token"], login.text
        email = dev.api.post(
            "/api/v1/jobs",
            json={
                "type": "newsletter",
                "queue": "notifications",
                "payload": {"to": "user@example.com", "subject": "Hi"},
                "max_retries": 5,
                "retry_strategy": "exponential",
                "timeout": "5m",
            },
        )
        assert email.status_code == 201, email.text
        job = dev.api.get(f"/api/v1/jobs/{email.json()['id']}").json()
        assert (job["queue"], job["max_attempts"], job["timeout"]) == ("notifications", 6, 300)
        assert job["retry_policy"]["kind"] == "exponential"
        assert job["task_published"] is False
        report = dev.api.post(
            "/api/v1/jobs",
            json={
                "type": "report",
                "queue": "reports",
                "payload": {"type": "weekly"},
                "scheduled_at": "2024-12-31T23:59:59Z",
            },
        )
        assert report.status_code == 201, report.text
        assert (
            dev.api.get(f"/api/v1/jobs/{report.json()['id']}")
            .json()["run_at"]
            .startswith("2024-12-31T23:59:59")
        )
        resize = dev.api.post(
            "/api/v1/jobs",
            json={"type": "thumbnail", "payload": {"width": 800}, "priority": "normal"},
        )
        assert resize.status_code == 201, resize.text
        assert dev.api.get(f"/api/v1/jobs/{resize.json()['id']}").json()["priority"] == 0
        short = dev.api.post("/jobs", json={"type": "newsletter", "payload": {"to": "a@b.c"}})
        assert short.status_code == 201 and short.json()["id"], short.text

        critical = dev.api.post(
            "/api/v1/queues",
            json={
                "name": "critical",
                "max_workers": 20,
                "max_retries": 5,
                "retry_strategy": "exponential",
                "priority": 10,
                "weight": 3,
            },
        )
        assert critical.status_code == 201, critical.text
        queue = critical.json()
        assert (queue["max_running"], queue["max_attempts"]) == (20, 6)
        assert (queue["priority"], queue["weight"]) == (10, 3)
        assert queue["retry_policy"]["kind"] == "exponential"

        backup = dev.api.post(
            "/api/v1/schedules",
            json={
                "name": "daily-backup",
                "job_type": "backup",
                "queue": "maintenance",
                "cron_expr": "0 2 * * *",
                "payload": {"target": "s3://backups"},
            },
        )
        assert backup.status_code == 201, backup.text
        path = f"/api/v1/schedules/{backup.json()['id']}"
        assert dev.api.get(path).json()["name"] == "daily-backup"
        assert dev.api.delete(path).status_code == 204
        assert dev.api.get(path).status_code == 404
