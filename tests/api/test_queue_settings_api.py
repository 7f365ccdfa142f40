"""Every queue setting through POST and PUT /api/v1/queues (skiplock/queue_settings.py),
in skiplock's words or other systems' (synonyms.QUEUE_SYNONYMS), read back in the Queue
answer; a bad one is a 422 naming it, and nothing is written."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from api_checks import assert_problem
from starlette.testclient import TestClient

from skiplock.queue_settings import NAMES

ROW = (
    "SELECT paused, max_running, rate_limit, rate_period, retry_policy, timeout,"
    " max_attempts, priority, weight FROM skiplock.queues WHERE name = %s"
)


def row(conn: psycopg.Connection, name: str) -> tuple[Any, ...] | None:
    found = conn.execute(ROW, (name,)).fetchone()
    return None if found is None else tuple(found)


def test_a_body_in_another_systems_words_creates_the_queue(client: TestClient) -> None:
    response = client.post(
        "/api/v1/queues",
        json={
            "name": "critical",
            "max_workers": 20,
            "max_retries": 5,
            "retry_strategy": "exponential",
            "priority": 10,
            "weight": 3,
        },
    )
    assert response.status_code == 201, response.text
    queue = response.json()
    assert (queue["max_running"], queue["max_attempts"]) == (20, 6)
    assert queue["retry_policy"]["kind"] == "exponential"
    assert (queue["priority"], queue["weight"]) == (10, 3)
    assert client.get("/api/v1/queues/critical").json() == queue


def test_post_takes_every_setting(client: TestClient, conn: psycopg.Connection) -> None:
    body = {
        "name": "reports",
        "paused": True,
        "max_running": 4,
        "rate_limit": 100,
        "rate_period": "1m",
        "retry_policy": {"kind": "fixed", "base": 30},
        "timeout": "PT5M",
        "max_attempts": 3,
        "priority": "high",
        "weight": 7,
    }
    assert set(body) - {"name"} == set(NAMES)  # every declared setting
    response = client.post("/api/v1/queues", json=body)
    assert response.status_code == 201, response.text
    queue = response.json()
    assert {name: queue[name] for name in NAMES} == {
        **{name: body[name] for name in NAMES},
        "rate_period": 60.0,
        "timeout": 300.0,
        "priority": 50,
    }
    assert row(conn, "reports") == (
        True,
        4,
        100,
        timedelta(minutes=1),
        {"kind": "fixed", "base": 30},
        timedelta(minutes=5),
        3,
        50,
        7,
    )
    listed = client.get("/api/v1/queues").json()["queues"]
    assert [(q["queue"], q["priority"], q["weight"]) for q in listed] == [("reports", 50, 7)]


def test_put_changes_what_it_names_and_null_clears(
    client: TestClient, conn: psycopg.Connection
) -> None:
    client.post(
        "/api/v1/queues",
        json={"name": "q", "max_running": 4, "max_attempts": 3, "priority": 5, "weight": 2},
    )
    response = client.put(
        "/api/v1/queues/q", json={"priority": "critical", "rate_limit": 10, "rate_period": 60}
    )
    assert response.status_code == 200, response.text
    assert row(conn, "q") == (False, 4, 10, timedelta(minutes=1), None, None, 3, 100, 2)
    response = client.put(
        "/api/v1/queues/q",
        json={
            "max_running": None,
            "rate_limit": None,
            "rate_period": None,
            "weight": None,
            "max_attempts": 8,
        },
    )
    assert response.status_code == 200, response.text
    assert row(conn, "q") == (False, None, None, None, None, None, 8, 100, 1)
    # other systems' words, a null one clearing its field
    response = client.put(
        "/api/v1/queues/q", json={"max_workers": 9, "max_retries": None, "retry_delay": "10s"}
    )
    assert response.status_code == 200, response.text
    assert (response.json()["max_running"], response.json()["max_attempts"]) == (9, None)
    assert response.json()["retry_policy"] == {"base": 10.0}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"max_running": 0}, "max_running", "between 1 and"),
        ({"rate_limit": 5, "rate_period": 0}, "rate_period", "> 0"),
        ({"rate_limit": 5}, "rate_period", "rate_limit and rate_period"),
        ({"rate_limit": None, "rate_period": 60}, "rate_limit", "rate_limit and rate_period"),
        ({"retry_policy": {"kind": "random"}}, "retry_policy", "retry"),
        ({"timeout": "5 minutes"}, "timeout", "duration such as"),
        ({"max_attempts": 0}, "max_attempts", "between 1 and"),
        ({"priority": 101}, "priority", "low, normal, high or critical"),
        ({"priority": "urgent"}, "priority", "low, normal, high or critical"),
        ({"weight": 1001}, "weight", "between 1 and 1000"),
        ({"weight": True}, "weight", "between 1 and 1000"),
        ({"max_workers": 3, "max_running": 3}, "max_workers", "max_workers and max_running"),
        ({"max_retries": -1}, "max_retries", "max_retries must be an integer"),
        ({"concurrency": 3}, "concurrency", "unknown field"),
    ],
)
def test_a_bad_setting_is_a_422_naming_it_and_nothing_is_written(
    client: TestClient, conn: psycopg.Connection, body: dict[str, Any], field: str, words: str
) -> None:
    response = client.post("/api/v1/queues", json={"name": "new", **body})
    assert response.status_code == 422 and response.json()["field"] == field, response.text
    assert words in response.json()["detail"]
    assert row(conn, "new") is None
    client.post("/api/v1/queues", json={"name": "q", "priority": 1})
    before = row(conn, "q")
    response = client.put("/api/v1/queues/q", json={"paused": True, **body})
    assert response.status_code == 422 and response.json()["field"] == field, response.text
    assert row(conn, "q") == before


def test_a_duration_beyond_any_interval_is_a_422_and_changes_nothing(
    client: TestClient, conn: psycopg.Connection
) -> None:
    client.post("/api/v1/queues", json={"name": "q"})
    response = client.put(
        "/api/v1/queues/q",
        json={"paused": True, "max_running": 2, "rate_limit": 1, "rate_period": 10**300},
    )
    assert_problem(response, 422, "invalid field", "rate_period")
    assert row(conn, "q") == (False, None, None, None, None, None, None, 0, 1)


def test_openapi_shows_every_setting(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(schemas["CreateQueue"]["properties"]) == {"name", *NAMES}
    assert schemas["CreateQueue"]["required"] == ["name"]
    assert set(schemas["UpdateQueue"]["properties"]) == set(NAMES)
    assert set(NAMES) <= set(schemas["Queue"]["properties"])
    assert "weight" in schemas["Queue"]["required"]
