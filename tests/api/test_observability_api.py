"""/ready, /api/v1/metrics, /metrics (Prometheus), /openapi.json, /docs, and the
database-level limits (statement timeout, database away)."""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
import pytest
from api_checks import DOCUMENT, DOWN_DSN, W1, assert_problem, claim, enqueue, kill, succeed
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app
from skiplock.api.routing import AliasRoute
from skiplock.migrate import load_migrations


def test_ready(client: TestClient) -> None:
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "schema_version": len(load_migrations())}


def test_not_ready_when_schema_is_behind(client: TestClient, conn: psycopg.Connection) -> None:
    conn.execute(
        "DELETE FROM skiplock.schema_migrations WHERE version = %s", (len(load_migrations()),)
    )
    response = client.get("/ready")
    assert_problem(response, 503, "schema not current")
    assert "skiplock migrate" in response.json()["detail"]


def test_not_ready_when_functions_differ(client: TestClient, conn: psycopg.Connection) -> None:
    conn.execute("UPDATE skiplock.schema_functions SET checksum = 'older'")
    response = client.get("/ready")
    assert_problem(response, 503, "schema not current")
    assert "SQL functions" in response.json()["detail"]
    assert "skiplock migrate" in response.json()["detail"]


def test_not_ready_and_503_when_database_is_away() -> None:
    with TestClient(create_app(skiplock.App(DOWN_DSN), db_timeout=0.5)) as client:
        for path in ("/ready", "/metrics", "/api/v1/metrics", "/api/v1/queues"):
            response = client.get(path)
            assert_problem(response, 503, "database unavailable")
            assert response.headers["retry-after"]
        assert client.get("/health").status_code == 200
        assert client.get("/openapi.json").status_code == 200


def test_statement_timeout_is_503(dsn: str, conn: psycopg.Connection) -> None:
    enqueue(conn, 1, queue="q")
    succeed(conn, "q")
    with psycopg.connect(dsn) as locker:  # holds the queue row: delete_queue must wait
        locker.execute("SELECT 1 FROM skiplock.queues WHERE name = 'q' FOR UPDATE")
        with TestClient(create_app(skiplock.App(dsn), statement_timeout=0.2)) as client:
            response = client.delete("/api/v1/queues/q")
        locker.rollback()
    assert_problem(response, 503, "query timeout")
    assert conn.execute("SELECT count(*) FROM skiplock.queues").fetchone() == (1,)


@pytest.fixture
def activity(conn: psycopg.Connection) -> None:
    enqueue(conn, 3, queue="emails")
    succeed(conn, "emails")
    enqueue(conn, 2, queue="emails")
    kill(conn, "emails")
    enqueue(conn, 4, queue="emails")
    enqueue(conn, 1, queue="reports", delay=3600)
    conn.execute("SELECT skiplock.pause_queue('reports')")
    conn.execute("SELECT skiplock.register_worker(%s, 'h', 1, ARRAY['emails'], 8, 'v')", (W1,))


def test_metrics_json(client: TestClient, activity: None) -> None:
    body = client.get("/api/v1/metrics").json()
    assert [q["queue"] for q in body["queues"]] == ["emails", "reports"]
    totals = body["totals"]
    assert (totals["queued"], totals["scheduled"], totals["succeeded"], totals["failed"]) == (
        4,
        1,
        3,
        2,
    )
    assert body["workers"] == {
        "registered": 1,
        "alive": 1,
        "unhealthy": 0,
        "running_jobs": 0,
        "concurrency": 8,
    }
    assert body["uptime_seconds"] >= 0


def test_prometheus_text_parses_with_expected_metrics(client: TestClient, activity: None) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert (
        samples[("skiplock_jobs_finished_total", (("queue", "emails"), ("status", "succeeded")))]
        == 3
    )
    assert (
        samples[("skiplock_jobs_finished_total", (("queue", "emails"), ("status", "failed")))] == 2
    )
    assert samples[("skiplock_queue_jobs", (("queue", "emails"), ("status", "queued")))] == 4
    assert samples[("skiplock_queue_jobs", (("queue", "reports"), ("status", "scheduled")))] == 1
    assert samples[("skiplock_queue_paused", (("queue", "reports"),))] == 1
    assert samples[("skiplock_queue_paused", (("queue", "emails"),))] == 0
    assert samples[("skiplock_workers_alive", ())] == 1
    assert samples[("skiplock_workers_registered", ())] == 1
    assert samples[("skiplock_workers_unhealthy", ())] == 0
    assert samples[("skiplock_worker_running_jobs", ())] == 0
    assert samples[("skiplock_api_uptime_seconds", ())] >= 0


def test_prometheus_counts_jobs_by_queue_and_task_with_durations(
    client: TestClient, activity: None, conn: psycopg.Connection
) -> None:
    enqueue(conn, 2, queue="emails", max_attempts=3)
    ids = claim(conn, "emails", 2)
    retry_entry = json.dumps({"error": "again"})
    conn.execute(  # both attempts fail and will run again
        "SELECT skiplock.fail_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (W1, ids, [1] * len(ids), [retry_entry] * len(ids)),
    )
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    emails_t = {"queue": "emails", "task": "t"}

    def value(name: str, labels: dict[str, str]) -> float:
        return next(s.value for s in families[name].samples if s.labels == labels)

    # created: 3 + 2 + 4 + 2 in emails, 1 in reports
    assert value("skiplock_jobs_created", emails_t) == 11
    assert value("skiplock_jobs_created", {"queue": "reports", "task": "t"}) == 1
    assert value("skiplock_jobs_succeeded", emails_t) == 3
    assert value("skiplock_jobs_failed", emails_t) == 2
    assert value("skiplock_jobs_retried", emails_t) == 2
    assert families["skiplock_jobs_created"].type == "counter"

    duration = families["skiplock_job_duration_seconds"]
    assert duration.type == "histogram"
    succeeded = {**emails_t, "status": "succeeded"}
    buckets = [
        s
        for s in duration.samples
        if s.name.endswith("_bucket") and s.labels.items() >= succeeded.items()
    ]
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 3
    assert [b.value for b in buckets] == sorted(b.value for b in buckets)  # cumulative
    count = next(s for s in duration.samples if s.name.endswith("_count") and s.labels == succeeded)
    assert count.value == 3


def test_metrics_json_by_task(client: TestClient, activity: None) -> None:
    body = client.get("/api/v1/metrics").json()
    emails = next(r for r in body["tasks"] if r["queue"] == "emails")
    assert emails == {
        "queue": "emails",
        "task": "t",
        "created": 9,
        "succeeded": 3,
        "failed": 2,
        "retried": 0,
        "cancelled": 0,
        "expired": 0,
        "rescued": 0,
    }


def app_operations(routes: list[object], prefix: str = "") -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount):
            found |= app_operations(list(route.routes), prefix + route.path)
        elif isinstance(route, AliasRoute):  # documented once, at the path it stands for
            found |= {(route.of, m.lower()) for m in route.methods or () if m != "HEAD"}
        elif isinstance(route, Route):
            for method in route.methods or ():
                if method != "HEAD":
                    # OpenAPI spells `{name:path}` (a Starlette converter) as `{name}`
                    path = re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path)
                    found.add((path, method.lower()))
    return found


def test_openapi_describes_every_route_and_nothing_else(dsn: str) -> None:
    api = create_app(skiplock.App(dsn))
    documented = {(path, method) for path, item in DOCUMENT["paths"].items() for method in item}
    assert documented == app_operations(list(api.routes))
    with TestClient(api) as client:
        served = client.get("/openapi.json").json()
    assert served["openapi"].startswith("3.")
    for path, item in served["paths"].items():
        for method, op in item.items():
            assert op["summary"] and op["responses"], (path, method)
            names = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert names == {part[1:-1] for part in path.split("/") if part.startswith("{")}
    # Every documented error answer uses the one error shape.
    for item in served["paths"].values():
        for op in item.values():
            for status, answer in op["responses"].items():
                if int(status) >= 400:
                    schema = answer["content"]["application/problem+json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Problem"}


def test_docs_page_is_offline_html(client: TestClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    # relative, so the page works under a mount prefix too (tests/api/test_auth.py)
    assert 'fetch("openapi.json")' in response.text
    assert "https://" not in response.text and "http://" not in response.text


def test_openapi_is_fit_for_generated_clients() -> None:
    operation_ids = [
        operation["operationId"]
        for item in DOCUMENT["paths"].values()
        for operation in item.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", name) for name in operation_ids)

    def walk(node: Any, where: str) -> None:
        if isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}[{i}]")
        elif isinstance(node, dict):
            if node.get("type") == "array":
                assert "items" in node, where
            if node.get("type") == "object" and "properties" not in node:
                assert "additionalProperties" in node, where
            for key, value in node.items():
                walk(value, f"{where}.{key}")

    walk(DOCUMENT, "$")
    schemas = DOCUMENT["components"]["schemas"]
    for name in ("Job", "JobState", "Queue", "Workflow", "DeadLetter", "Schedule", "Worker"):
        assert set(schemas[name]["required"]) == set(schemas[name]["properties"]), name
    assert schemas["Problem"]["required"] == ["type", "title", "status", "error"]
