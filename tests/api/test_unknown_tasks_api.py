"""Jobs of tasks no worker has published: 422 by default, taken when the API accepts
unknown tasks (serve --accept-unknown-tasks, dev), and a job read by id says whether its
task is published (`task_published`); lists leave the field out."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from api_checks import DOCUMENT, W1, assert_problem
from starlette.testclient import TestClient
from test_task_defaults_api import unknown_task_jobs

import skiplock
from skiplock.api import create_app

CREATES: list[tuple[str, Any, str]] = [
    ("/api/v1/jobs", {"task": "ghost"}, "task"),
    ("/jobs", {"task": "ghost"}, "task"),  # an alias of POST /api/v1/jobs
    ("/api/jobs", {"task": "ghost"}, "task"),
    ("/api/v1/jobs", [{"task": "known"}, {"task": "ghost"}], "[1].task"),
    ("/api/v1/workflows", {"steps": [{"task": "ghost"}]}, "steps[0].task"),
    ("/api/v1/schedules", {"name": "s", "cron": "@hourly", "task": "ghost"}, "task"),
]


@pytest.fixture
def accepting(dsn: str, conn: psycopg.Connection) -> Iterator[TestClient]:
    publish_known(conn)
    with TestClient(create_app(skiplock.App(dsn), accept_unknown_tasks=True)) as c:
        yield c


@pytest.fixture
def refusing(dsn: str, conn: psycopg.Connection) -> Iterator[TestClient]:
    publish_known(conn)
    with TestClient(create_app(skiplock.App(dsn))) as c:
        yield c


def publish_known(conn: psycopg.Connection) -> None:
    conn.execute("SELECT skiplock.register_worker(%s, 'h', 1, ARRAY['default'], 1, 'v')", (W1,))
    conn.execute('SELECT skiplock.publish_tasks(%s, \'[{"name": "known"}]\')', (W1,))


def hot_jobs(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()[0])


@pytest.mark.parametrize(("path", "body", "field"), CREATES)
def test_an_unknown_task_is_422_by_default(
    refusing: TestClient, conn: psycopg.Connection, path: str, body: Any, field: str
) -> None:
    assert_problem(refusing.post(path, json=body), 422, "unknown task", field)
    assert hot_jobs(conn) == 0


@pytest.mark.parametrize(("path", "body", "field"), CREATES)
def test_an_api_that_accepts_unknown_tasks_takes_them(
    accepting: TestClient, path: str, body: Any, field: str
) -> None:
    response = accepting.post(path, json=body)
    assert response.status_code == 201, response.text


def test_a_job_read_by_id_says_whether_its_task_is_published(
    accepting: TestClient, conn: psycopg.Connection
) -> None:
    ghost = accepting.post("/api/v1/jobs", json={"task": "ghost"}).json()["id"]
    known = accepting.post("/api/v1/jobs", json={"task": "known"}).json()["id"]

    assert accepting.get(f"/api/v1/jobs/{ghost}").json()["task_published"] is False
    assert accepting.get(f"/api/v1/jobs/{known}").json()["task_published"] is True
    assert accepting.get(f"/jobs/{ghost}").json()["task_published"] is False  # alias
    # lists keep their reads: the field is not there
    for job in accepting.get("/api/v1/jobs").json()["jobs"]:
        assert "task_published" not in job

    # once a worker publishes the task, the same job says so
    conn.execute('SELECT skiplock.publish_tasks(%s, \'[{"name": "ghost"}]\')', (W1,))
    assert accepting.get(f"/api/v1/jobs/{ghost}").json()["task_published"] is True


def test_a_handed_back_job_stays_on_the_unknown_task_gauge(
    accepting: TestClient, conn: psycopg.Connection
) -> None:
    ghost = accepting.post("/api/v1/jobs", json={"task": "ghost"}).json()["id"]
    # what a worker without a handler for it does: claim, then hand back with a delay
    (attempt,) = conn.execute(
        "SELECT attempt FROM skiplock.claim_jobs(%s, ARRAY['default'], 1, '30 s')", (W1,)
    ).fetchone()
    conn.execute(
        "SELECT skiplock.release_jobs(%s, %s, %s, interval '1 minute')", (W1, [ghost], [attempt])
    )
    job = accepting.get(f"/api/v1/jobs/{ghost}").json()
    assert (job["status"], job["attempt"], job["task_published"]) == ("scheduled", 0, False)
    assert unknown_task_jobs(accepting) == {"ghost": 1}


def test_openapi_has_the_field_on_a_job_not_on_a_listed_one() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    assert "task_published" in schemas["Job"]["properties"]
    assert "task_published" in schemas["Job"]["required"]
    assert "task_published" not in schemas["JobListItem"]["properties"]
