"""`skiplock.export` against a real PostgreSQL: a named query of the settings, its
parameters bound and typed, rows streamed to CSV or JSON Lines in the configured folder,
read-only, under a statement timeout and a row cap; nothing from args reaches the SQL
or the file's path."""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import skiplock
from skiplock.builtins.export import ExportSettings, run_export
from skiplock.errors import ConfigError, Discard
from skiplock.testing import run_jobs
from skiplock.validation import InvalidArgs

QUERIES = {
    "numbers": {
        "sql": "SELECT n, n * %(factor)s AS scaled, %(label)s AS label,"
        " %(since)s::timestamptz AS since FROM generate_series(1, %(upto)s) AS n",
        "params": {"factor": "numeric", "label": "text", "since": "timestamptz", "upto": "integer"},
    },
    "typed": {
        "sql": "SELECT 1 AS id, NULL::text AS missing, '{\"a\": [1]}'::jsonb AS doc,"
        " DATE '2026-01-02' AS day, 'x,\"y\"' AS awkward"
    },
    "many": {"sql": "SELECT n FROM generate_series(1, 2500) AS n"},
    "too_many": {"sql": "SELECT n FROM generate_series(1, 11) AS n"},
    # a cursor takes no DELETE; a function that writes is how a SELECT would
    "writes": {"sql": "SELECT skiplock.enqueue('planted', '{}') AS id"},
    "slow": {"sql": "SELECT pg_sleep(30)"},
    "empty": {"sql": "SELECT 1 AS one WHERE false"},
}
NUMBERS_PARAMS = {
    "factor": 1.5,
    "label": "a'b; DROP TABLE x",
    "since": "2026-01-01T00:00:00Z",
    "upto": 3,
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "exports"


@pytest.fixture
def exporter(dsn: str, folder: Path) -> Iterator[skiplock.App]:
    app = skiplock.App(dsn)
    app.serve_builtins(
        {
            "export": {
                "folder": str(folder),
                "max_rows": 10,
                "statement_timeout": 0.2,
                "queries": QUERIES,
            }
        }
    )
    yield app
    app.close()


def run(app: skiplock.App, **args: Any) -> skiplock.Job:
    job_id = app.enqueue("skiplock.export", args)
    assert run_jobs(app) == 1
    return app.get_job(job_id)


def test_csv_export_binds_typed_params_and_reports_path_rows_bytes_sha256(
    exporter: skiplock.App, folder: Path
) -> None:
    job = run(exporter, query="numbers", params=NUMBERS_PARAMS)
    assert job.status == "succeeded", job.last_error
    path = Path(job.result["path"])
    assert path == (folder / f"numbers-{job.id}.csv").resolve()
    data = path.read_bytes()
    assert job.result["rows"] == 3
    assert job.result["bytes"] == len(data)
    assert job.result["sha256"] == hashlib.sha256(data).hexdigest()
    rows = list(csv.reader(data.decode().splitlines()))
    assert rows[0] == ["n", "scaled", "label", "since"]
    assert rows[1] == ["1", "1.5", "a'b; DROP TABLE x", "2026-01-01T00:00:00+00:00"]
    assert [r[1] for r in rows[1:]] == ["1.5", "3.0", "4.5"]
    assert list(folder.iterdir()) == [path]  # no temporary file left


def test_json_lines_export_writes_one_object_per_row(exporter: skiplock.App) -> None:
    job = run(exporter, query="typed", format="jsonl")
    assert job.status == "succeeded", job.last_error
    path = Path(job.result["path"])
    assert path.suffix == ".jsonl"
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"id": 1, "missing": None, "doc": {"a": [1]}, "day": "2026-01-02", "awkward": 'x,"y"'}
    ]


def test_csv_quotes_awkward_values_and_writes_json_cells(exporter: skiplock.App) -> None:
    job = run(exporter, query="typed")
    text = Path(job.result["path"]).read_text()
    assert list(csv.reader(text.splitlines())) == [
        ["id", "missing", "doc", "day", "awkward"],
        ["1", "", '{"a":[1]}', "2026-01-02", 'x,"y"'],
    ]


def test_an_empty_result_still_has_its_header(exporter: skiplock.App) -> None:
    job = run(exporter, query="empty")
    assert job.result["rows"] == 0
    assert Path(job.result["path"]).read_text().strip() == "one"


def test_results_larger_than_one_fetch_are_written_whole(dsn: str, folder: Path) -> None:
    app = skiplock.App(dsn)
    app.serve_builtins({"export": {"folder": str(folder), "queries": QUERIES}})
    try:
        job = run(app, query="many", format="jsonl")
        assert job.result["rows"] == 2500
        lines = Path(job.result["path"]).read_text().splitlines()
        assert json.loads(lines[-1]) == {"n": 2500}
    finally:
        app.close()


def test_more_rows_than_the_cap_fail_and_leave_no_file(
    exporter: skiplock.App, folder: Path
) -> None:
    job = run(exporter, query="too_many")
    assert job.status == "failed"
    assert "more than export.max_rows (10) rows" in job.last_error["error"]
    assert list(folder.iterdir()) == []


def test_the_transaction_is_read_only(exporter: skiplock.App, conn: psycopg.Connection) -> None:
    keep = exporter.enqueue("anything", {}, queue="elsewhere")
    job = run(exporter, query="writes")
    assert job.status == "failed"
    assert "read-only transaction" in job.last_error["error"]
    assert conn.execute("SELECT count(*) FROM skiplock.jobs WHERE id = %s", (keep,)).fetchone() == (
        1,
    )


def test_a_statement_timeout_bounds_the_query(exporter: skiplock.App, folder: Path) -> None:
    job = run(exporter, query="slow")
    assert job.status == "failed"
    assert "statement timeout" in job.last_error["error"]
    assert list(folder.iterdir()) == []


# ---- args refused at enqueue: no SQL, no path, only the configured queries ------------

BAD_ARGS = [
    ({"query": "nope"}, "args.query"),
    ({"query": "numbers"}, "args"),
    ({"query": "numbers", "params": {**NUMBERS_PARAMS, "upto": "3; DROP"}}, "args.params.upto"),
    ({"query": "numbers", "params": {**NUMBERS_PARAMS, "extra": 1}}, "args.params"),
    ({"query": "typed", "format": "xlsx"}, "args.format"),
    ({"query": "typed", "sql": "SELECT 1"}, "args"),
    ({"query": "typed", "path": "../../etc/passwd"}, "args"),
]


@pytest.mark.parametrize(("args", "path"), BAD_ARGS)
def test_bad_args_are_refused_at_enqueue_naming_the_field(
    exporter: skiplock.App, args: dict[str, Any], path: str
) -> None:
    with pytest.raises(InvalidArgs) as refused:
        exporter.enqueue("skiplock.export", args)
    assert refused.value.path == path


def test_args_that_bypass_the_schema_are_dead_at_run_time(
    exporter: skiplock.App, conn: psycopg.Connection
) -> None:
    # a plain INSERT is not checked at enqueue; the worker checks before running
    (job_id,) = conn.execute(
        "INSERT INTO skiplock.jobs (task, args) VALUES ('skiplock.export', %s) RETURNING id",
        (json.dumps({"query": "numbers", "params": {**NUMBERS_PARAMS, "upto": "x"}}),),
    ).fetchone()
    assert run_jobs(exporter) == 1
    job = exporter.get_job(job_id)
    assert (job.status, job.attempt) == ("failed", 1)
    assert "params.upto" in json.dumps(job.last_error)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"folders": "x"}, r"^export\.folders is not a setting"),
        ({"max_rows": 0}, r"^export\.max_rows must be an integer >= 1, got 0"),
        ({"statement_timeout": -1}, r"^export\.statement_timeout must be seconds > 0"),
        ({"queries": {"../x": {"sql": "SELECT 1"}}}, r"^export\.queries\.\.\./x: a query's name"),
        ({"queries": {"q": {"sql": ""}}}, r"^export\.queries\.q\.sql must be"),
        ({"queries": {"q": {"sql": "SELECT 1", "args": {}}}}, r"^export\.queries\.q\.args is not"),
        (
            {"queries": {"q": {"sql": "SELECT %(a)s", "params": {"a": "money"}}}},
            r"^export\.queries\.q\.params\.a must be one of",
        ),
    ],
)
def test_bad_export_settings_name_the_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExportSettings.parse(section)


def test_params_are_converted_strictly_to_their_declared_type(dsn: str, folder: Path) -> None:
    settings = ExportSettings.parse(
        {
            "folder": str(folder),
            "queries": {"flag": {"sql": "SELECT %(on)s AS on", "params": {"on": "boolean"}}},
        }
    )
    folder.mkdir()
    with pytest.raises(Discard, match=r"params\.on must be a boolean, got 'false'"):
        run_export(settings, "flag", {"on": "false"}, "csv", job_id=1, dsn=dsn)
    done = run_export(settings, "flag", {"on": False}, "csv", job_id=2, dsn=dsn)
    assert Path(done["path"]).read_text().splitlines() == ["on", "False"]
