"""`skiplock queues create|set` with every queue setting (skiplock/queue_settings.py) as a
flag, and the settings in `skiplock queues`; a bad value is exit 2 with one line naming
the flag, and nothing is written."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from cli_checks import ok, refused, run
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app
from skiplock.queue_settings import NAMES

EVERY_FLAG = (
    "--max-running",
    "20",
    "--rate",
    "100/1m",
    "--retry-policy",
    '{"kind": "exponential", "base": 2}',
    "--timeout",
    "5m",
    "--max-attempts",
    "6",
    "--priority",
    "high",
    "--weight",
    "3",
)
SETTINGS = {
    "paused": True,
    "max_running": 20,
    "rate_limit": 100,
    "rate_period": 60.0,
    "retry_policy": {"kind": "exponential", "base": 2},
    "timeout": 300.0,
    "max_attempts": 6,
    "priority": 50,
    "weight": 3,
}


def listed(dsn: str) -> dict[str, Any]:
    return {row["queue"]: row for row in json.loads(ok(run(dsn, "queues", "--json")))}


def test_create_takes_every_setting_as_the_api_does(dsn: str) -> None:
    created = json.loads(ok(run(dsn, "queues", "create", "cli", "--paused", *EVERY_FLAG, "--json")))
    assert {name: created[name] for name in NAMES} == SETTINGS
    with TestClient(create_app(skiplock.App(dsn))) as client:
        response = client.post(
            "/api/v1/queues",
            json={"name": "api", **SETTINGS, "rate_period": "1m", "priority": "high"},
        )
    assert response.status_code == 201, response.text
    queues = listed(dsn)
    assert queues["cli"] == created
    assert {**queues["api"], "queue": "cli"} == created


def test_set_changes_only_what_it_is_given(dsn: str) -> None:
    ok(run(dsn, "queues", "create", "q", *EVERY_FLAG))
    assert ok(run(dsn, "queues", "set", "q", "--priority", "-5")) == (
        "queue q: priority -5, weight 3\n"
    )
    assert listed(dsn)["q"] == {**listed(dsn)["q"], **SETTINGS, "paused": False, "priority": -5}
    text = ok(run(dsn, "queues", "set", "q", "--max-attempts", "2", "--clear", "timeout"))
    assert text == 'queue q: defaults: retry {"base": 2, "kind": "exponential"}, 2 attempts\n'
    ok(run(dsn, "queues", "set", "q", "--clear", "rate", "--clear", "weight"))
    row = listed(dsn)["q"]
    assert (row["rate_limit"], row["rate_period"], row["weight"]) == (None, None, 1)
    assert (row["max_running"], row["timeout"], row["max_attempts"]) == (20, None, 2)


def test_the_listing_shows_priority_and_weight(dsn: str) -> None:
    ok(run(dsn, "queues", "create", "q", "--priority", "7", "--weight", "4", "--max-attempts", "3"))
    lines = ok(run(dsn, "queues")).splitlines()
    header = lines[0].split()
    assert header[-4:] == ["PRIORITY", "WEIGHT", "LIMITS", "DEFAULTS"]
    values = lines[1].split()
    assert values[header.index("PRIORITY")] == "7" and values[header.index("WEIGHT")] == "4"
    assert lines[1].endswith("3 attempts")


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--max-running", "0"], "--max-running:"),
        (["--rate", "5"], "--rate:"),
        (["--rate", "0/60"], "--rate:"),
        (["--rate", "5/1e300"], "--rate:"),
        (["--retry-policy", '{"kind": "random"}'], "--retry-policy:"),
        (["--timeout", "5 minutes"], "--timeout:"),
        (["--max-attempts", "0"], "--max-attempts:"),
        (["--priority", "101"], "--priority:"),
        (["--priority", "urgent"], "--priority:"),
        (["--weight", "0"], "--weight:"),
        (["--weight", "1001"], "--weight:"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_flag(
    dsn: str, conn: psycopg.Connection, flags: list[str], words: str
) -> None:
    assert refused(run(dsn, "queues", "create", "new", *flags), code=2).startswith(
        f"error: {words}"
    )
    ok(run(dsn, "queues", "create", "q", "--weight", "2"))
    before = listed(dsn)["q"]
    assert refused(run(dsn, "queues", "set", "q", "--priority", "1", *flags), code=2).startswith(
        f"error: {words}"
    )
    assert listed(dsn)["q"] == before
    assert conn.execute("SELECT count(*) FROM skiplock.queues WHERE name = 'new'").fetchone() == (
        0,
    )


def test_set_needs_a_setting_and_clears_none_it_sets(dsn: str) -> None:
    line = refused(run(dsn, "queues", "set", "q"), code=2)
    assert line == "error: give a setting to change (see --help)"
    line = refused(run(dsn, "queues", "set", "q", "--timeout", "5", "--clear", "timeout"), code=2)
    assert line == "error: --clear timeout: it is set by --timeout too"
    assert run(dsn, "queues", "set", "q", "--clear", "paused").exit_code == 2
    assert "q" not in listed(dsn)
