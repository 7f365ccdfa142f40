"""Jobs of tasks no worker has published, from the command line: `jobs show` says why
such a job waits, `worker --unknown-task-delay` hands it back, `serve
--accept-unknown-tasks` and `dev` take it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cli_checks import ok, run
from test_environment import params, usage_error

from conftest import wait_until
from dev_process import free_port, run_dev
from skiplock.cli import main

SKIPLOCK = (sys.executable, "-m", "skiplock")
WAITS = "no worker has published this task; it waits (no attempts spent) until one does"
HANDED_BACK = "no handler for it in this worker"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKIPLOCK_")}
    return {**env, **extra}


def enqueue(conn: psycopg.Connection, task: str) -> int:
    return int(conn.execute("SELECT skiplock.enqueue(%s)", (task,)).fetchone()[0])


def task_line(out: str) -> str:
    (line,) = [line for line in out.splitlines() if line.startswith("task:")]
    return " ".join(line.split())


def shown_json(dsn: str, job_id: int) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(ok(run(dsn, "jobs", "show", str(job_id), "--json")))
    return shown


def test_jobs_show_says_why_a_job_of_an_unpublished_task_waits(
    dsn: str, conn: psycopg.Connection
) -> None:
    job_id = enqueue(conn, "report")

    assert task_line(ok(run(dsn, "jobs", "show", str(job_id)))) == f"task: report — {WAITS}"
    assert shown_json(dsn, job_id)["task_published"] is False

    conn.execute('SELECT skiplock.publish_tasks(NULL, \'[{"name": "report"}]\')')
    assert task_line(ok(run(dsn, "jobs", "show", str(job_id)))) == "task: report"
    assert shown_json(dsn, job_id)["task_published"] is True


def test_a_finished_job_of_an_unpublished_task_does_not_say_it_waits(
    dsn: str, conn: psycopg.Connection
) -> None:
    job_id = enqueue(conn, "report")
    ok(run(dsn, "jobs", "cancel", str(job_id)))
    assert task_line(ok(run(dsn, "jobs", "show", str(job_id)))) == "task: report"


def test_the_options_come_from_their_flags_and_variables() -> None:
    app = ("--app", "skiplock.demo:app")  # a tuple: click consumes the list it is given
    assert params("worker", [*app], {})["unknown_task_delay"] == 60.0
    env = {"SKIPLOCK_UNKNOWN_TASK_DELAY": "5"}
    assert params("worker", [*app], env)["unknown_task_delay"] == 5.0
    flag = [*app, "--unknown-task-delay", "2.5"]
    assert params("worker", flag, env)["unknown_task_delay"] == 2.5
    assert params("serve", [], {})["accept_unknown_tasks"] is False
    assert params("serve", ["--accept-unknown-tasks"], {})["accept_unknown_tasks"] is True
    env = {"SKIPLOCK_ACCEPT_UNKNOWN_TASKS": "true"}
    assert params("serve", [], env)["accept_unknown_tasks"] is True


def test_a_bad_delay_is_refused_naming_its_variable() -> None:
    from click.testing import CliRunner

    result = CliRunner().invoke(
        main,
        ["--dsn", "host=/nonexistent port=1", "worker", "--app", "skiplock.demo:app"],
        env={"SKIPLOCK_UNKNOWN_TASK_DELAY": "0"},
    )
    assert usage_error(result) == (
        "error: invalid SKIPLOCK_UNKNOWN_TASK_DELAY (for --unknown-task-delay):"
        " unknown_task_delay must be >= 0.1, got 0.0"
    )


@contextmanager
def process(*args: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen([*SKIPLOCK, *args], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


@pytest.mark.slow
def test_a_worker_hands_back_a_job_it_has_no_handler_for_after_its_delay(
    dsn: str, conn: psycopg.Connection, tmp_path: Path
) -> None:
    job_id = enqueue(conn, "report")
    log = tmp_path / "worker.log"
    args = ("--dsn", dsn, "worker", "--app", "skiplock.demo:app", "--unknown-task-delay", "90")
    with process(*args, env=clean_env(), log=log):
        wait_until(lambda: HANDED_BACK in log.read_text(), timeout=60)
    assert f"job {job_id} of task 'report'" in log.read_text()
    assert "due again in 90 s, no attempt spent" in log.read_text()
    row = conn.execute(
        "SELECT status, attempt, run_at > now() + interval '60 s' FROM skiplock.all_jobs"
        " WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == ("scheduled", 0, True)


@pytest.mark.slow
def test_serve_takes_unknown_tasks_when_told_to(dsn: str, tmp_path: Path) -> None:
    for env, status in (
        (clean_env(), 422),
        (clean_env(SKIPLOCK_ACCEPT_UNKNOWN_TASKS="1"), 201),
    ):
        port = free_port()
        log = tmp_path / f"serve-{status}.log"
        args = ("--dsn", dsn, "serve", "--no-auth", "--port", str(port))
        with process(*args, env=env, log=log) as proc:
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: serving(proc, url, log), timeout=60)  # noqa: B023
            response = httpx.post(f"{url}/api/v1/jobs", json={"task": "ghost"})
            assert response.status_code == status, response.text


def serving(proc: subprocess.Popen[bytes], url: str, log: Path) -> bool:
    assert proc.poll() is None, log.read_text()
    try:
        return httpx.get(f"{url}/health").status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
def test_dev_takes_a_newcomers_job_and_shows_it_waiting_for_a_worker(dsn: str) -> None:
    with run_dev(dsn, env=clean_env()) as dev:
        response = dev.api.post("/api/v1/jobs", json={"type": "report", "args": {"day": 1}})
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        # the demo worker has no handler for it: it hands it back and says so
        wait_until(lambda: dev.logged(HANDED_BACK), timeout=60)
        job = dev.api.get(f"/api/v1/jobs/{job_id}").json()
        assert (job["task"], job["attempt"], job["task_published"]) == ("report", 0, False)
        assert job["status"] == "scheduled"
        assert task_line(ok(run(dsn, "jobs", "show", str(job_id)))) == f"task: report — {WAITS}"
