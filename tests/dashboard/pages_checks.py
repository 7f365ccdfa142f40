"""Helpers of the tests of the schedules, workflows, tasks, audit and export pages."""

from __future__ import annotations

import json
from typing import Any

import psycopg
from dashboard_checks import PASSWORD, add_user, csrf_of, log_in
from starlette.testclient import TestClient

from skiplock import store


def logged_in(
    client: TestClient, conn: psycopg.Connection, name: str, scope: str, queues: str | None = None
) -> str:
    """Log `client` in as a new user; its CSRF token (from the overview)."""
    add_user(conn, name, scope, queues)
    assert log_in(client, username=name, password=PASSWORD).status_code == 303
    return csrf_of(client.get("/dashboard/").text)


def add_schedule(conn: psycopg.Connection, name: str, task: str = "t", enabled: bool = True) -> None:
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
