"""skiplock tasks: list, show, publish, forget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from skiplock.cli import main

APP_MODULE = '''
from skiplock import App

app = App()


@app.task(name="send_email", queue="emails", args_schema={"type": "object", "required": ["to"]})
def send_email(to: str) -> None:
    """Send one email.

    More words here."""


@app.task(name="plain")
def plain() -> None: ...
'''


def run(dsn: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--dsn", dsn, *args])
    return result.exit_code, result.stdout, result.stderr


def test_publish_list_show_forget(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(dsn, "tasks")[1].startswith("no tasks registered")
    (tmp_path / "cli_tasks_app.py").write_text(APP_MODULE)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(dsn, "tasks", "publish", "--app", "cli_tasks_app:app")
    assert (code, out) == (0, "published 2 task(s)\n")

    code, out, _ = run(dsn, "tasks")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["NAME", "QUEUE", "SCHEMA"]
    assert lines[2].split()[:4] == ["send_email", "emails", "yes", "0"]
    assert lines[2].endswith("Send one email.")
    listed = json.loads(run(dsn, "tasks", "--json")[1])
    assert [t["name"] for t in listed] == ["plain", "send_email"]

    code, out, _ = run(dsn, "tasks", "show", "send_email")
    assert code == 0 and "Send one email.\n\nMore words here." in out
    assert '"required": [' in out
    shown = json.loads(run(dsn, "tasks", "show", "send_email", "--json")[1])
    assert shown["args_schema"] == {"type": "object", "required": ["to"]}

    assert run(dsn, "tasks", "forget", "plain")[:2] == (0, "task plain forgotten\n")
    code, _, err = run(dsn, "tasks", "forget", "plain")
    assert (code, err) == (1, "error: task plain not found\n")
    code, _, err = run(dsn, "tasks", "show", "plain")
    assert (code, err) == (1, "error: task plain not found\n")


def test_enqueue_with_the_app_checks_args(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "cli_tasks_app2.py").write_text(APP_MODULE)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(dsn, "enqueue", "send_email", "--app", "cli_tasks_app2:app")
    assert code == 1
    assert err == (
        "error: args does not match the schema of task send_email: 'to' is a required property\n"
    )
