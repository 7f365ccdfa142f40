"""Every job option through every seam: one job enqueued from SQL, from Python, over REST
and from the CLI with the same values is stored the same way, and reads back the same
through each of them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app
from skiplock.cli import main
from skiplock.options import NAMES

RUN_AT = datetime(2030, 1, 1, tzinfo=timezone.utc)
EXPIRES_AT = datetime(2031, 1, 1, tzinfo=timezone.utc)
POLICY = {"kind": "linear", "base": 2.0, "max_delay": 30.0, "jitter": 0.0}
URL = "http://127.0.0.1:9/hook"


def values(key: str, dependency: int) -> dict[str, Any]:
    """Every option, JSON-shaped; `expires_in` goes on a second job (`expires_at` would
    win over it)."""
    return {
        "queue": "every",
        "priority": 7,
        "run_at": RUN_AT.isoformat(),
        "delay": 60,
        "max_attempts": 4,
        "retry_policy": POLICY,
        "timeout": 90,
        "tags": ["a", "b"],
        "meta": {"m": 1},
        "unique_key": key,
        "unique_scope": "period",
        "unique_for": 3600,
        "expires_at": EXPIRES_AT.isoformat(),
        "depends_on": [dependency],
        "on_dependency_failure": "cancel",
        "callback_url": URL,
    }


def test_the_values_name_every_declared_option() -> None:
    assert set(values("k", 1)) | {"expires_in"} == set(NAMES)


def by_sql(conn: psycopg.Connection, key: str, dependency: int) -> list[int]:
    (first,) = conn.execute(
        "SELECT skiplock.enqueue('every', '{\"n\": 1}', queue => 'every', priority => 7,"
        " run_at => %s, delay => interval '60 seconds', max_attempts => 4,"
        " retry_policy => %s::jsonb, timeout => interval '90 seconds', tags => '{a,b}',"
        " meta => '{\"m\": 1}', unique_key => %s, unique_scope => 'period',"
        " unique_for => interval '1 hour', expires_at => %s, depends_on => ARRAY[%s::bigint],"
        " on_dependency_failure => 'cancel', callback_url => %s)",
        (RUN_AT, json.dumps(POLICY), key, EXPIRES_AT, dependency, URL),
    ).fetchone()
    (second,) = conn.execute(
        "SELECT skiplock.enqueue('every', '{\"n\": 1}', expires_in => interval '10 minutes')"
    ).fetchone()
    return [first, second]


def by_python(app: skiplock.App, key: str, dependency: int) -> list[int]:
    options = values(key, dependency)
    options.update(
        run_at=RUN_AT,
        delay=timedelta(seconds=60),
        retry_policy=skiplock.RetryPolicy.linear(2.0, max_delay=30.0, jitter=0.0),
        expires_at=EXPIRES_AT,
    )
    return [
        app.enqueue("every", {"n": 1}, **options),
        app.enqueue("every", {"n": 1}, expires_in=600),
    ]


def by_bulk(app: skiplock.App, key: str, dependency: int) -> list[int]:
    return app.enqueue_many(
        [
            {"task": "every", "args": {"n": 1}, **values(key, dependency)},
            {"task": "every", "args": {"n": 1}, "expires_in": 600},
        ]
    )


def by_rest(client: TestClient, key: str, dependency: int) -> list[int]:
    ids = []
    for body in (
        {"task": "every", "args": {"n": 1}, **values(key, dependency)},
        {"task": "every", "args": {"n": 1}, "expires_in": 600},
    ):
        response = client.post("/api/v1/jobs", json=body)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def by_rest_list(client: TestClient, key: str, dependency: int) -> list[int]:
    body = [
        {"task": "every", "args": {"n": 1}, **values(key, dependency)},
        {"task": "every", "args": {"n": 1}, "expires_in": 600},
    ]
    response = client.post("/api/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return list(response.json()["ids"])


def by_cli(dsn: str, key: str, dependency: int) -> list[int]:
    runner = CliRunner()
    flags = [
        "--queue=every",
        "--priority=7",
        f"--run-at={RUN_AT.isoformat()}",
        "--delay=60",
        "--max-attempts=4",
        f"--retry-policy={json.dumps(POLICY)}",
        "--timeout=90",
        "--tag=a",
        "--tag=b",
        '--meta={"m": 1}',
        f"--unique-key={key}",
        "--unique-scope=period",
        "--unique-for=3600",
        f"--expires-at={EXPIRES_AT.isoformat()}",
        f"--depends-on={dependency}",
        "--on-dependency-failure=cancel",
        f"--callback-url={URL}",
    ]
    ids = []
    for extra in (flags, ["--expires-in=600"]):
        result = runner.invoke(
            main, ["--dsn", dsn, "enqueue", "every", "--args", '{"n": 1}', "--json", *extra]
        )
        assert result.exit_code == 0, result.output
        ids.append(json.loads(result.output)["id"])
    return ids


STORED = (
    "SELECT j.task, j.args, j.queue, j.priority, j.run_at, j.max_attempts, j.retry_policy,"
    " j.timeout, j.tags, j.meta, k.scope::text, k.period, j.expires_at - j.created_at,"
    " j.expires_at, j.depends_on, j.on_dependency_failure::text, j.callback_url,"
    " array(SELECT d.depends_on FROM skiplock.job_dependencies d WHERE d.job_id = j.id)"
    " FROM skiplock.jobs j LEFT JOIN skiplock.unique_keys k ON k.job_id = j.id"
    " WHERE j.id = %s"
)


def stored(conn: psycopg.Connection, job_ids: list[int]) -> list[tuple[Any, ...]]:
    first, second = (conn.execute(STORED, (job_id,)).fetchone() for job_id in job_ids)
    assert first is not None and second is not None
    # the first job's deadline is absolute; the second's is ten minutes from its insert
    return [first[:12] + first[13:], (second[12],)]


@pytest.fixture
def seams(dsn: str, conn: psycopg.Connection) -> Iterator[dict[str, Callable[..., list[int]]]]:
    app = skiplock.App(dsn)
    conn.execute('SELECT skiplock.publish_tasks(NULL, \'[{"name": "every"}]\')')
    with TestClient(create_app(app)) as client:
        yield {
            "sql": lambda key, dep: by_sql(conn, key, dep),
            "python": lambda key, dep: by_python(app, key, dep),
            "bulk": lambda key, dep: by_bulk(app, key, dep),
            "rest": lambda key, dep: by_rest(client, key, dep),
            "rest_list": lambda key, dep: by_rest_list(client, key, dep),
            "cli": lambda key, dep: by_cli(dsn, key, dep),
        }
    app.close()


def test_every_option_through_every_seam_is_stored_and_read_alike(
    dsn: str, conn: psycopg.Connection, seams: dict[str, Callable[..., list[int]]]
) -> None:
    (dependency,) = conn.execute("SELECT skiplock.enqueue('every')").fetchone()
    ids = {seam: enqueue(f"key-{seam}", dependency) for seam, enqueue in seams.items()}
    rows = {seam: stored(conn, job_ids) for seam, job_ids in ids.items()}
    want = rows.pop("sql")
    assert want[0][2:5] == ("every", 7, RUN_AT + timedelta(seconds=60))
    assert want[1] == (timedelta(minutes=10),)
    for seam, row in rows.items():
        assert row == want, seam

    app = skiplock.App(dsn)
    with TestClient(create_app(app)) as client:
        for seam, (job_id, _) in ids.items():
            read = app.get_job(job_id).to_json()
            assert client.get(f"/api/v1/jobs/{job_id}").json() == read
            shown = CliRunner().invoke(main, ["--dsn", dsn, "jobs", "show", str(job_id), "--json"])
            assert json.loads(shown.output) == read
            assert read["unique_key"] == f"key-{seam}"
            assert read["depends_on"] == [dependency]
            assert read["expires_at"] == EXPIRES_AT.isoformat()
            assert read["retry_policy"] == POLICY
            assert read["on_dependency_failure"] == "cancel"
            assert read["callback_url"] == URL
    app.close()
