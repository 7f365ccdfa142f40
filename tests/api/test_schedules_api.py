"""/api/v1/schedules: create (and replace), list, read, enable/disable, delete, and a
created schedule fired by one scheduler tick."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import psycopg
import pytest
from api_checks import DOWN_DSN, assert_problem, publish_tasks
from starlette.testclient import TestClient

import skiplock
from skiplock import schedules
from skiplock.api import create_app
from skiplock.api import schedules as schedules_api

JSON = {"content-type": "application/json"}  # what a JSON body must be sent as

URL = "/api/v1/schedules"


@pytest.fixture(autouse=True)
def published(dsn: str) -> None:
    """The tasks these schedules name, published as a worker would: an unknown task is
    refused (test_an_unknown_task_is_422_unless_allowed)."""
    publish_tasks(dsn, "reports.build", "t", "report")


def stored(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM skiplock.schedules").fetchone()
    assert row is not None
    return int(row[0])


def test_create_list_get(client: TestClient) -> None:
    body = {
        "name": "nightly",
        "cron": "30 2 * * *",
        "task": "reports.build",
        "args": {"full": True},
        "queue": "reports",
        "priority": 5,
        "timezone": "Europe/Paris",
        "max_attempts": 3,
        "enabled": True,
    }
    response = client.post(URL, json=body)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == "/api/v1/schedules/nightly"
    created = response.json()
    assert {k: created[k] for k in body} == body
    assert created["next_run_at"] is None and created["last_run_at"] is None
    assert created["last_job_id"] is None and created["last_error"] is None
    minimal = client.post(URL, json={"name": "a.b:c-d_e", "cron": "@hourly", "task": "t"})
    assert minimal.status_code == 201, minimal.text
    assert {k: minimal.json()[k] for k in ("args", "queue", "priority", "timezone")} == {
        "args": {},
        "queue": "default",
        "priority": 0,
        "timezone": "UTC",
    }
    assert minimal.json()["max_attempts"] == 20 and minimal.json()["enabled"] is True
    listed = client.get(URL).json()["schedules"]
    assert [s["name"] for s in listed] == ["a.b:c-d_e", "nightly"]
    assert client.get(f"{URL}/nightly").json() == created
    assert client.get(f"{URL}/a.b:c-d_e").json() == minimal.json()


def test_create_disabled_and_nulls_are_defaults(client: TestClient) -> None:
    response = client.post(
        URL,
        json={
            "name": "off",
            "cron": " */15 * * * * ",
            "task": "t",
            "enabled": False,
            "timezone": None,
            "queue": None,
            "args": None,
        },
    )
    assert response.status_code == 201, response.text
    got = response.json()
    assert got["enabled"] is False and got["cron"] == "*/15 * * * *"
    assert (got["timezone"], got["queue"], got["args"]) == ("UTC", "default", {})


def test_unset_options_take_the_registered_tasks_defaults(dsn: str) -> None:
    app = skiplock.App(dsn)

    @app.task(name="reports.build", queue="reports", priority=7, max_attempts=2)
    def build() -> None: ...

    with TestClient(create_app(app)) as client:
        got = client.post(URL, json={"name": "r", "cron": "@daily", "task": "reports.build"})
        assert got.status_code == 201, got.text
        assert (got.json()["queue"], got.json()["priority"], got.json()["max_attempts"]) == (
            "reports",
            7,
            2,
        )
        given = {"name": "r2", "cron": "@daily", "task": "reports.build", "priority": 0}
        assert client.post(URL, json={**given, "queue": "q"}).json()["queue"] == "q"
        assert client.get(f"{URL}/r2").json()["priority"] == 0


def test_existing_name_is_409_unless_replace(client: TestClient, conn: psycopg.Connection) -> None:
    first = {"name": "s", "cron": "@hourly", "task": "t", "args": {"v": 1}}
    assert client.post(URL, json=first).status_code == 201
    response = client.post(URL, json={**first, "cron": "@daily"})
    assert_problem(response, 409, "conflict", "name")
    assert "replace=true" in response.json()["detail"]
    assert client.get(f"{URL}/s").json()["cron"] == "@hourly"
    replaced = client.post(URL, params={"replace": "true"}, json={**first, "cron": "@daily"})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["cron"] == "@daily" and replaced.json()["args"] == {"v": 1}
    assert replaced.headers["location"] == "/api/v1/schedules/s"
    fresh = client.post(URL, params={"replace": "true"}, json={**first, "name": "new"})
    assert fresh.status_code == 201
    response = client.post(URL, params={"replace": "yes"}, json={**first, "name": "x"})
    assert_problem(response, 422, "invalid parameter", "replace")
    response = client.post(URL, params={"force": "true"}, json={**first, "name": "x"})
    assert_problem(response, 422, "unknown parameter", "force")
    assert stored(conn) == 2


VALID = {"name": "s", "cron": "@hourly", "task": "t"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": None}, "name"),
        ({"name": "a b"}, "name"),
        ({"name": "reports/nightly"}, "name"),  # allowed in SQL, not addressable by URL
        ({"name": "x" * 201}, "name"),
        ({"name": ".."}, "name"),
        ({"name": 5}, "name"),
        ({"cron": None}, "cron"),
        ({"cron": "every minute"}, "cron"),
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * * * * *"}, "cron"),  # croniter takes seconds, SQL does not
        ({"cron": "@reboot"}, "cron"),
        ({"cron": "0 0 31 2 *"}, "cron"),  # valid but never fires
        ({"cron": ["@daily"]}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"timezone": ""}, "timezone"),
        ({"timezone": "utc"}, "timezone"),
        ({"timezone": "x" * 300}, "timezone"),
        ({"timezone": 1}, "timezone"),
        ({"task": None}, "task"),
        ({"task": "a b"}, "task"),
        ({"args": [1]}, "args"),
        ({"args": "{}"}, "args"),
        ({"args": {"s": "\u0000"}}, "args"),
        ({"queue": "a/b"}, "queue"),
        ({"priority": 101}, "priority"),
        ({"priority": True}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"enabled": "yes"}, "enabled"),
    ],
)
def test_bad_field_is_422_naming_it(
    client: TestClient, conn: psycopg.Connection, change: dict[str, Any], field: str
) -> None:
    response = client.post(URL, json={**VALID, **change})
    assert_problem(response, 422, "invalid field", field)
    assert stored(conn) == 0


def test_bad_bodies(dsn: str, client: TestClient, conn: psycopg.Connection) -> None:
    response = client.post(URL, json={**VALID, "every": "hour"})
    assert_problem(response, 422, "unknown field", "every")
    nan = b'{"name": "s", "cron": "@hourly", "task": "t", "args": {"x": NaN}}'
    assert_problem(client.post(URL, content=nan, headers=JSON), 422, "invalid field", "args")
    surrogate = b'{"name": "s", "cron": "@hourly", "task": "t", "args": {"x": "\\ud800"}}'
    assert_problem(client.post(URL, content=surrogate, headers=JSON), 422, "invalid field", "args")
    assert_problem(client.post(URL, content=b"[1]", headers=JSON), 400, "invalid json")
    assert_problem(client.post(URL, content=b"{", headers=JSON), 400, "invalid json")
    with TestClient(create_app(skiplock.App(dsn), max_body_bytes=64)) as small:
        response = small.post(URL, json={**VALID, "args": {"pad": "x" * 100}})
        assert_problem(response, 413, "body too large")
    assert stored(conn) == 0


def test_a_zone_postgresql_refuses_is_422_on_timezone(
    client: TestClient, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python's tzdata and PostgreSQL's can disagree; the database has the last word.
    monkeypatch.setattr(schedules_api, "validate", lambda cron, tz: None)
    monkeypatch.setattr(schedules_api, "next_fire", lambda cron, tz, after: after)
    response = client.post(URL, json={**VALID, "timezone": "Nowhere/Land"})
    assert_problem(response, 422, "invalid field", "timezone")
    assert "Nowhere/Land" in response.json()["detail"]
    assert stored(conn) == 0


def test_unknown_or_impossible_schedule_is_404(client: TestClient) -> None:
    for path in (f"{URL}/nope", f"{URL}/a%20b"):
        assert_problem(client.get(path), 404, "not found")
        assert_problem(client.delete(path), 404, "not found")
        for action in ("enable", "disable"):
            assert_problem(client.post(f"{path}/{action}"), 404, "not found")
    response = client.put(f"{URL}/nope", json={})
    assert_problem(response, 405, "method not allowed")
    assert {"GET", "DELETE"} <= set(response.headers["allow"].split(", "))


def test_enable_disable_delete(client: TestClient, conn: psycopg.Connection) -> None:
    client.post(URL, json=VALID)
    conn.execute("UPDATE skiplock.schedules SET next_run_at = now() + interval '1 hour'")
    disabled = client.post(f"{URL}/s/disable")
    assert disabled.status_code == 200, disabled.text
    assert disabled.json()["enabled"] is False and disabled.json()["name"] == "s"
    assert client.get(f"{URL}/s").json()["enabled"] is False
    enabled = client.post(f"{URL}/s/enable").json()
    # Enabling starts from now: the next fire time is computed again, no catch-up.
    assert enabled["enabled"] is True and enabled["next_run_at"] is None
    response = client.delete(f"{URL}/s")
    assert response.status_code == 204 and response.content == b""
    assert_problem(client.get(f"{URL}/s"), 404, "not found")
    assert_problem(client.delete(f"{URL}/s"), 404, "not found")
    assert client.get(URL).json() == {"schedules": []}


def test_run_now_enqueues_its_job_and_keeps_the_next_run(
    client: TestClient, conn: psycopg.Connection
) -> None:
    client.post(URL, json=VALID)
    conn.execute("UPDATE skiplock.schedules SET next_run_at = now() + interval '1 hour'")
    before = client.get(f"{URL}/s").json()["next_run_at"]
    ran = client.post(f"{URL}/s/run")
    assert ran.status_code == 201, ran.text
    job_id = ran.json()["job_id"]
    assert ran.json() == {"name": "s", "job_id": job_id}
    assert client.get(f"/api/v1/jobs/{job_id}").json()["meta"]["schedule"] == "s"
    after = client.get(f"{URL}/s").json()
    assert (after["next_run_at"], after["last_job_id"]) == (before, job_id)
    assert_problem(client.post(f"{URL}/nope/run"), 404, "not found")


def test_created_schedule_is_fired_by_a_scheduler_tick(
    dsn: str, client: TestClient, conn: psycopg.Connection
) -> None:
    body = {"name": "every5", "cron": "*/5 * * * *", "task": "report", "args": {"k": 1}}
    assert client.post(URL, json={**body, "queue": "reports", "priority": 3}).status_code == 201
    # The first worker to see it would compute next_run_at; write it as already due.
    conn.execute(
        "UPDATE skiplock.schedules SET next_run_at = date_trunc('minute', now())"
        " - interval '10 minutes' WHERE name = 'every5'"
    )

    async def tick() -> list[int]:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
            return await schedules.tick(c)

    fired = asyncio.run(tick())
    assert len(fired) == 1
    job = conn.execute(
        "SELECT task, args, queue, priority, meta FROM skiplock.all_jobs WHERE id = %s",
        (fired[0],),
    ).fetchone()
    assert job is not None
    assert job[:4] == ("report", {"k": 1}, "reports", 3) and job[4]["schedule"] == "every5"
    got = client.get(f"{URL}/every5").json()
    assert got["last_job_id"] == fired[0]
    assert datetime.fromisoformat(got["next_run_at"]) > datetime.fromisoformat(got["last_run_at"])
    assert client.get(f"/api/v1/jobs/{fired[0]}").json()["meta"]["schedule"] == "every5"


def test_503_when_the_database_is_away() -> None:
    with TestClient(create_app(skiplock.App(DOWN_DSN), db_timeout=0.5)) as client:
        assert_problem(client.get(URL), 503, "database unavailable")
        assert_problem(client.post(URL, json=VALID), 503, "database unavailable")


def test_an_unknown_task_is_422_unless_allowed(
    client: TestClient, conn: psycopg.Connection
) -> None:
    body = {"name": "s", "cron": "@hourly", "task": "nobody.serves.this"}
    response = client.post(URL, json=body)
    assert_problem(response, 422, "unknown task", "task")
    assert stored(conn) == 0
    allowed = client.post(URL, json={**body, "allow_unregistered_task": True})
    assert allowed.status_code == 201, allowed.text
    assert allowed.json()["queue"] == "default"


def test_unset_options_take_the_published_defaults(
    client: TestClient, conn: psycopg.Connection
) -> None:
    task = {
        "name": "mail.digest",
        "queue": "emails",
        "defaults": {"priority": 4, "max_attempts": 2},
    }
    conn.execute("SELECT skiplock.publish_tasks(NULL, %s::jsonb)", (json.dumps([task]),))
    created = client.post(URL, json={"name": "d", "cron": "@daily", "task": "mail.digest"})
    assert created.status_code == 201, created.text
    got = created.json()
    assert (got["queue"], got["priority"], got["max_attempts"]) == ("emails", 4, 2)


def test_schedules_by_id_and_in_other_systems_words(
    client: TestClient, conn: psycopg.Connection, dsn: str
) -> None:
    publish_tasks(dsn, "backup")
    body = {
        "name": "daily-backup",
        "job_type": "backup",
        "queue": "maintenance",
        "cron_expr": "0 2 * * *",
        "payload": {"target": "s3"},
    }
    created = client.post("/api/v1/schedules", json=body)
    assert created.status_code == 201, created.text
    schedule = created.json()
    assert (schedule["task"], schedule["cron"], schedule["args"]) == (
        "backup",
        "0 2 * * *",
        {"target": "s3"},
    )
    by_id = f"/api/v1/schedules/{schedule['id']}"
    assert client.get(by_id).json()["name"] == "daily-backup"
    assert client.post(f"{by_id}/disable").json()["enabled"] is False
    # a schedule whose name reads like another's id is found by its name
    other = client.post(
        "/api/v1/schedules", json={"name": str(schedule["id"]), "cron": "@daily", "task": "backup"}
    ).json()
    assert client.get(by_id).json()["id"] == other["id"] != schedule["id"]
    assert client.delete(f"/api/v1/schedules/{other['id']}").status_code == 204
    assert client.delete(by_id).status_code == 204  # now the id of daily-backup again
    assert client.get("/api/v1/schedules").json()["schedules"] == []
    conflict = client.post("/api/v1/schedules", json={**body, "cron": "@daily"})
    assert conflict.status_code == 422 and conflict.json()["field"] == "cron_expr"
