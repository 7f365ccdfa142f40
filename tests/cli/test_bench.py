"""`skiplock bench` against the test database with tiny numbers: the report's shape, that
every job the bench enqueued ran and succeeded, and its refusals. Never its timings."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner, Result

from skiplock.bench import QUEUE
from skiplock.cli import main

pytestmark = pytest.mark.slow  # spawns worker processes


def bench(dsn: str, *args: str) -> Result:
    return CliRunner().invoke(main, ["--dsn", dsn, "bench", *args])


SMALL = ("--jobs", "200", "--rounds", "1", "--workers", "1", "--concurrency", "20")


def test_bench_reports_every_scenario_and_runs_every_job(
    dsn: str, conn: psycopg.Connection
) -> None:
    result = bench(
        dsn,
        *SMALL,
        "--scenario",
        "drain",
        "--scenario",
        "bulk-enqueue",
        "--scenario",
        "latency",
        "--json",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["settings"]["jobs"] == 200
    assert report["machine"]["nproc"] >= 1
    # SCENARIOS order, whatever the order of the flags
    assert list(report["scenarios"]) == ["bulk-enqueue", "drain", "latency"]
    expected = {
        "bulk-enqueue": {"jobs_per_s"},
        "drain": {"jobs_per_s", "seconds"},
        "latency": {"p50_ms", "p90_ms", "p99_ms", "max_ms", "ack_p50_ms", "ack_p99_ms"},
    }
    for name, figures in expected.items():
        scenario = report["scenarios"][name]
        assert figures <= set(scenario["figures"]), (name, scenario["figures"])
        for figure in scenario["figures"].values():
            assert set(figure) == {"min", "median", "max"}
            assert figure["min"] <= figure["median"] <= figure["max"]
    for name in ("drain", "latency"):
        scenario = report["scenarios"][name]
        assert scenario["jobs_succeeded"] == scenario["jobs_enqueued"] > 0, scenario
        assert scenario["jobs_left"] == 0
    assert report["scenarios"]["drain"]["jobs_enqueued"] == 200
    # the last scenario's jobs stay for inspection: all ran once and succeeded
    rows = conn.execute(
        "SELECT status, attempt, count(*) FROM skiplock.job_history GROUP BY 1, 2"
    ).fetchall()
    assert rows == [("succeeded", 1, report["scenarios"]["latency"]["jobs_enqueued"])]
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM skiplock.dead_jobs").fetchone() == (0,)


def test_bench_table_output(dsn: str) -> None:
    result = bench(dsn, *SMALL, "--scenario", "single-enqueue")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == ["SCENARIO", "FIGURE"] for line in lines), result.stdout
    assert any(line.startswith("single-enqueue  calls_per_s") for line in lines), result.stdout


def test_bench_refuses_a_database_that_holds_jobs(dsn: str, conn: psycopg.Connection) -> None:
    conn.execute("SELECT skiplock.enqueue('keep_me')")
    result = bench(dsn, *SMALL, "--scenario", "bulk-enqueue")
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "--yes" in lines[0] and "1 jobs" in lines[0]
    # nothing was touched
    assert conn.execute("SELECT task FROM skiplock.jobs").fetchall() == [("keep_me",)]


def test_bench_with_yes_empties_the_tables_and_warns(dsn: str, conn: psycopg.Connection) -> None:
    conn.execute("SELECT skiplock.enqueue('doomed')")
    result = bench(dsn, *SMALL, "--scenario", "bulk-enqueue", "--json", "--yes")
    assert result.exit_code == 0, result.output
    assert "WARNING" in result.stderr
    assert json.loads(result.stdout)["scenarios"]["bulk-enqueue"]["jobs_enqueued"] == 200
    tasks = conn.execute("SELECT DISTINCT queue FROM skiplock.jobs").fetchall()
    assert tasks == [(QUEUE,)]


def test_a_previous_bench_run_is_not_a_reason_to_refuse(dsn: str) -> None:
    first = bench(dsn, *SMALL, "--scenario", "bulk-enqueue", "--json")
    assert first.exit_code == 0, first.output
    second = bench(dsn, *SMALL, "--scenario", "bulk-enqueue", "--json")
    assert second.exit_code == 0, second.output


@pytest.mark.parametrize(
    "args",
    [
        ("--jobs", "0"),
        ("--workers", "0"),
        ("--rounds", "-1"),
        ("--handler", "nope"),
        ("--scenario", "warp-speed"),
        ("--batch-size", "0"),
        ("--args-bytes", "-5"),
        ("--jobs", "many"),
    ],
)
def test_bench_bad_options_are_usage_errors(dsn: str, args: tuple[str, ...]) -> None:
    result = bench(dsn, *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_soak_reports_a_timeline(dsn: str) -> None:
    result = bench(dsn, *SMALL, "--soak", "3", "--sample-interval", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rate"] > 0 and report["seconds"] == 3
    assert len(report["timeline"]) >= 2
    for row in report["timeline"]:
        assert {
            "at_s",
            "enqueued_per_s",
            "completed_per_s",
            "backlog",
            "jobs_table_mb",
            "dead_tuples",
            "worker_rss_mb",
            "jobs_autovacuums",
            "checkpoints",
        } <= set(row), row
        assert row["worker_rss_mb"] > 0 and row["jobs_table_mb"] > 0
        assert row["jobs_autovacuums"] >= 0 and row["checkpoints"] >= 0


def test_held_transaction_reports_before_during_and_after(
    dsn: str, conn: psycopg.Connection
) -> None:
    result = bench(
        dsn,
        *SMALL,
        "--scenario",
        "held-transaction",
        "--hold-seconds",
        "2",
        "--hold-margin",
        "1.5",
        "--sample-interval",
        "0.5",
        "--json",
    )
    assert result.exit_code == 0, result.output
    scenario = json.loads(result.stdout)["scenarios"]["held-transaction"]
    figures = scenario["figures"]
    for key in ("before_per_s", "during_min_per_s", "during_per_s", "after_per_s"):
        assert figures[key]["median"] >= 0, (key, figures)
    assert scenario["jobs_succeeded"] > 0
    # the held transaction was rolled back and closed: nothing of it is left open
    idle = conn.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND state = 'idle in transaction'"
    ).fetchone()
    assert idle == (0,)
