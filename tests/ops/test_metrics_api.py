"""The API's /metrics: the per-queue wait histogram, worker and busy slots, build and
schema info, and the standard process collectors; and the exposition passes
`promtool check metrics`."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from ops_binaries import binary
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app
from skiplock.migrate import load_migrations
from skiplock.version import __version__

W1 = uuid.UUID("00000000-0000-4000-8000-0000000000b1")
W2 = uuid.UUID("00000000-0000-4000-8000-0000000000b2")
W_GONE = uuid.UUID("00000000-0000-4000-8000-0000000000b3")


@pytest.fixture
def client(dsn: str) -> Iterator[TestClient]:
    with TestClient(create_app(skiplock.App(dsn))) as c:
        yield c


def waited(conn: psycopg.Connection, queue: str, seconds: float, n: int = 1) -> None:
    """n jobs of `queue` that became ready `seconds` ago, claimed and completed now."""
    conn.execute(
        "INSERT INTO skiplock.jobs (task, queue, run_at, created_at)"
        " SELECT 't', %s, now() - make_interval(secs => %s), now() - make_interval(secs => %s)"
        " FROM generate_series(1, %s)",
        (queue, seconds, seconds, n),
    )
    jobs = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, ARRAY[%s], 100)", (W1, queue)
    ).fetchall()
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], NULL)",
        (W1, [j for j, _ in jobs], [a for _, a in jobs]),
    )


def register(conn: psycopg.Connection, worker: uuid.UUID, queues: list[str], slots: int) -> None:
    conn.execute(
        "SELECT skiplock.register_worker(%s, 'h', 1, %s, %s, 'v')", (worker, queues, slots)
    )


def samples(client: TestClient) -> dict[str, list[Sample]]:
    text = client.get("/metrics").text
    found: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found.setdefault(s.name, []).append(s)
    return found


def value(found: dict[str, list[Sample]], name: str, **labels: str) -> float:
    return next(s.value for s in found[name] if s.labels == labels)


def test_wait_histogram_by_queue(client: TestClient, conn: psycopg.Connection) -> None:
    with conn.transaction():  # one clock: each wait is exactly what was asked
        waited(conn, "emails", 3, n=2)  # bucket le=5
        waited(conn, "emails", 40)  # le=60
        waited(conn, "reports", 0.02)  # le=0.05
    found = samples(client)
    bucket = "skiplock_queue_wait_seconds_bucket"
    assert value(found, bucket, queue="emails", le="2.5") == 0
    assert value(found, bucket, queue="emails", le="5") == 2
    assert value(found, bucket, queue="emails", le="30") == 2
    assert value(found, bucket, queue="emails", le="60") == 3
    assert value(found, bucket, queue="emails", le="+Inf") == 3
    assert value(found, "skiplock_queue_wait_seconds_count", queue="emails") == 3
    assert value(found, "skiplock_queue_wait_seconds_sum", queue="emails") == pytest.approx(46)
    assert value(found, bucket, queue="reports", le="0.01") == 0
    assert value(found, bucket, queue="reports", le="0.05") == 1
    # counters, not a window: a second scrape after more jobs only adds
    waited(conn, "emails", 0)
    assert value(samples(client), bucket, queue="emails", le="+Inf") == 4


def test_slots_and_busy_slots_by_queue(client: TestClient, conn: psycopg.Connection) -> None:
    register(conn, W1, ["emails"], 8)
    register(conn, W2, ["emails", "reports"], 4)
    register(conn, W_GONE, ["emails"], 100)
    conn.execute(  # W_GONE's heartbeat is old: it is not live, its slots do not count
        "UPDATE skiplock.workers SET last_heartbeat_at = now() - interval '1 hour' WHERE id = %s",
        (W_GONE,),
    )
    conn.execute("SELECT skiplock.enqueue('t', queue => 'emails') FROM generate_series(1, 5)")
    conn.execute("SELECT skiplock.claim_jobs(%s, ARRAY['emails'], 3)", (W1,))
    found = samples(client)
    assert value(found, "skiplock_queue_worker_slots", queue="emails") == 12
    assert value(found, "skiplock_queue_worker_slots", queue="reports") == 4
    assert value(found, "skiplock_queue_busy_slots", queue="emails") == 3
    assert value(found, "skiplock_worker_slots") == 12
    assert value(found, "skiplock_worker_running_jobs") == 3


def test_build_schema_and_process_series(client: TestClient, conn: psycopg.Connection) -> None:
    found = samples(client)
    shipped = str(len(load_migrations()))
    assert value(found, "skiplock_build_info", version=__version__, schema_version=shipped) == 1
    assert value(found, "skiplock_database_schema_info", schema_version=shipped) == 1
    # prometheus-client's standard collectors
    assert value(found, "process_cpu_seconds_total") >= 0
    assert value(found, "process_resident_memory_bytes") > 0
    assert "python_info" in found and "python_gc_collections_total" in found
    # the database's schema, as read at the scrape
    conn.execute(
        "INSERT INTO skiplock.schema_migrations (version, name, checksum)"
        " VALUES (%s, 'future', 'x')",
        (int(shipped) + 1,),
    )
    found = samples(client)
    assert value(found, "skiplock_database_schema_info", schema_version=str(int(shipped) + 1))


def test_exposition_passes_promtool(client: TestClient, conn: psycopg.Connection) -> None:
    promtool = binary("promtool")
    register(conn, W1, ["emails"], 8)
    with conn.transaction():
        waited(conn, "emails", 3)
    text = client.get("/metrics").text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_rescued_jobs_are_counted(client: TestClient, conn: psycopg.Connection) -> None:
    conn.execute("SELECT skiplock.enqueue('t', queue => 'emails') FROM generate_series(1, 3)")
    conn.execute("SELECT skiplock.enqueue('u', queue => 'emails', max_attempts => 1)")
    conn.execute("SELECT skiplock.claim_jobs(%s, ARRAY['emails'], 10)", (W1,))
    rescued = conn.execute(
        "SELECT status FROM skiplock.rescue_expired_jobs(p_now => now() + interval '1 hour')"
    ).fetchall()
    assert sorted(rescued) == [("failed",), ("retrying",), ("retrying",), ("retrying",)]
    # nothing left to rescue: counted once
    conn.execute("SELECT skiplock.rescue_expired_jobs(p_now => now() + interval '1 hour')")
    found = samples(client)
    assert value(found, "skiplock_jobs_rescued_total", queue="emails", task="t") == 3
    assert value(found, "skiplock_jobs_rescued_total", queue="emails", task="u") == 1
    assert value(found, "skiplock_jobs_retried_total", queue="emails", task="t") == 3
