"""Helpers of the tests of the schedules, workflows, tasks, audit and export pages."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from dashboard_checks import PASSWORD, add_user, csrf_of, log_in
from starlette.testclient import TestClient

import skiplock
from skiplock import Step, store
from skiplock.testing import run_jobs


def logged_in(
    client: TestClient, conn: psycopg.Connection, name: str, scope: str, queues: str | None = None
) -> str:
    """Log `client` in as a new user; its CSRF token (from the overview)."""
    add_user(conn, name, scope, queues)
    assert log_in(client, username=name, password=PASSWORD).status_code == 303
    return csrf_of(client.get("/dashboard/").text)


def add_schedule(
    conn: psycopg.Connection, name: str, task: str = "t", enabled: bool = True
) -> None:
    store.create_schedule(
        name,
        cron="0 3 * * *",
        task=task,
        args_json='{"n": 1}',
        queue="default",
        priority=None,
        timezone="Europe/Paris",
        max_attempts=None,
        enabled=enabled,
    ).run(conn)


def schedule_row(conn: psycopg.Connection, name: str) -> dict[str, Any] | None:
    rows = store.list_schedules(name).run(conn)
    return rows[0] if rows else None


def publish(conn: psycopg.Connection, *tasks: dict[str, Any]) -> None:
    """Publish `tasks` as a worker would (name, queue, description, args_schema)."""
    conn.execute("SELECT skiplock.publish_tasks(NULL, %s::jsonb)", (json.dumps(list(tasks)),))


def audit_actions(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT actor, action, target, status FROM skiplock.audit_log ORDER BY id"
    ).fetchall()


def diamond(dsn: str, *, fail: bool = False, queue: str = "default") -> tuple[int, dict[str, int]]:
    """A workflow fetch → (left, right) → merge; run until done when `fail` (right
    fails, so merge never runs); otherwise left queued. (id, {step: job id})."""
    app = skiplock.App(dsn)

    @app.task(name="ok")
    def ok() -> None:
        return None

    @app.task(name="boom")
    def boom() -> None:
        raise RuntimeError("boom")

    handle = app.workflow(
        Step("ok", {}, name="fetch", queue=queue),
        Step("ok", {}, name="left", after=["fetch"], queue=queue),
        Step("boom", {}, name="right", after=["fetch"], queue=queue, max_attempts=1),
        Step("ok", {}, name="merge", after=["left", "right"], queue=queue),
        name="diamond",
    )
    if fail:
        run_jobs(app, queues=[queue])
    app.close()
    return handle.id, handle.jobs
