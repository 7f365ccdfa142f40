"""bench/insert_costs.py times each rung inside a transaction it rolls back, and
bench/counter_triggers.py switches the finish counters off and on again: after a run
the database is as it was. These check that and the report's shape, never a timing."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psycopg
import pytest

BENCH = Path(__file__).parents[2] / "bench"


def bench_module(name: str) -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture
def insert_costs() -> Iterator[ModuleType]:
    yield from bench_module("insert_costs")


@pytest.fixture
def counter_triggers() -> Iterator[ModuleType]:
    yield from bench_module("counter_triggers")


def state(conn: psycopg.Connection) -> tuple[object, ...]:
    """What a bench run must leave as it found it."""
    row = conn.execute(
        "SELECT pg_get_functiondef('skiplock._jobs_inserted'::regproc),"
        " (SELECT array_agg(tgname::text || tgenabled::text ORDER BY tgname) FROM pg_trigger"
        "  WHERE tgrelid IN ('skiplock.jobs'::regclass, 'skiplock.job_history'::regclass,"
        "                    'skiplock.dead_jobs'::regclass) AND NOT tgisinternal),"
        " to_regclass('public.skiplock_bench_job_row'), to_regclass('public.pgqueuer'),"
        " (SELECT count(*) FROM skiplock.jobs), (SELECT count(*) FROM skiplock.job_counts),"
        " (SELECT count(*) FROM skiplock.queues)"
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_insert_costs_reports_every_rung_and_leaves_the_database_as_it_was(
    insert_costs: ModuleType,
    dsn: str,
    conn: psycopg.Connection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = state(conn)
    out = tmp_path / "costs.json"
    argv = ["insert_costs.py", "--dsn", dsn, "--statements", "20", "--rows", "10"]
    monkeypatch.setattr(sys, "argv", [*argv, "--rounds", "2", "--json", str(out)])
    insert_costs.main()
    report = json.loads(out.read_text())
    assert list(report["us"]) == list(insert_costs.rungs())
    assert {"row", "jobs", "notify", "trigger", "enqueue"} <= set(report["us"])
    for figures in report["us"].values():
        assert len(figures["one"]) == len(figures["many"]) == 2
        assert all(value > 0 for value in figures["one"] + figures["many"])
    assert state(conn) == before


def test_insert_costs_refuses_an_unknown_rung(
    insert_costs: ModuleType, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["insert_costs.py", "--dsn", dsn, "--rungs", "jobs,nope"])
    with pytest.raises(SystemExit, match=r"unknown rung.*nope"):
        insert_costs.main()


def test_counter_triggers_runs_and_switches_the_counters_back_on(
    counter_triggers: ModuleType,
    dsn: str,
    conn: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    triggers_before = state(conn)[1]
    monkeypatch.setattr(sys, "argv", ["counter_triggers.py", "--dsn", dsn, "--batch", "5"])
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--rounds", "1"])
    counter_triggers.main()
    assert "with counters" in capsys.readouterr().out
    assert state(conn)[1] == triggers_before
