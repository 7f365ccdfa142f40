"""GET /api/v1/jobs/{id}/webhooks: the deliveries of a job's callback with their status,
attempts and last error; read scope, 404 for an unknown job and for one outside a
queue-limited token's queues; in /openapi.json."""

from __future__ import annotations

from datetime import datetime

import psycopg
from starlette.testclient import TestClient

import skiplock
from skiplock import store
from skiplock.api import create_app
from skiplock.api.auth import AuthConfig, hash_token, new_token

W = "00000000-0000-0000-0000-0000000000dd"
HOOK = "https://example.com/hooks/skiplock"


def finished_with_callback(conn: psycopg.Connection, queue: str = "default") -> int:
    """A job with a callback URL, completed: its delivery waits in its queue."""
    (job_id,) = conn.execute(
        "SELECT skiplock.enqueue('report', queue => %s, callback_url => %s)", (queue, HOOK)
    ).fetchone()
    (attempt,) = conn.execute(
        "SELECT attempt FROM skiplock.claim_jobs(%s, ARRAY[%s], 1)", (W, queue)
    ).fetchone()
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s], '{null}')",
        (W, job_id, attempt),
    )
    return int(job_id)


def test_a_job_lists_its_deliveries(client: TestClient, conn: psycopg.Connection) -> None:
    job_id = finished_with_callback(conn)
    (delivery_id, attempt) = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, '{default}', 1)", (W,)
    ).fetchone()
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, ARRAY[%s]::bigint[], ARRAY[%s],"
        ' ARRAY[\'{"error": "receiver answered 503"}\'::jsonb])',
        (W, delivery_id, attempt),
    )

    body = client.get(f"/api/v1/jobs/{job_id}/webhooks").json()

    assert (body["job_id"], body["status"], body["callback_url"]) == (job_id, "succeeded", HOOK)
    (delivery,) = body["deliveries"]
    assert set(delivery) == {
        "delivery_id", "status", "attempt", "max_attempts", "url", "last_error",
        "created_at", "run_at", "finished_at",
    }  # fmt: skip
    assert delivery["delivery_id"] == delivery_id
    assert (delivery["status"], delivery["attempt"], delivery["max_attempts"]) == (
        "retrying",
        1,
        10,
    )
    assert delivery["last_error"] == "receiver answered 503" and delivery["url"] == HOOK
    assert datetime.fromisoformat(delivery["created_at"]).tzinfo is not None
    assert delivery["finished_at"] is None


def test_no_callback_no_deliveries_and_unknown_jobs(
    client: TestClient, conn: psycopg.Connection
) -> None:
    (plain,) = conn.execute("SELECT skiplock.enqueue('t')").fetchone()
    body = client.get(f"/api/v1/jobs/{plain}/webhooks").json()
    assert (body["callback_url"], body["deliveries"]) == (None, [])
    assert client.get("/api/v1/jobs/999999/webhooks").status_code == 404
    assert client.get("/api/v1/jobs/nope/webhooks").status_code == 404


def test_read_scope_and_queue_limited_tokens(dsn: str, conn: psycopg.Connection) -> None:
    mine = finished_with_callback(conn, "mine")
    other = finished_with_callback(conn, "other")
    limited, reader = new_token(), new_token()
    assert store.create_api_token("mine", "read", "mine", hash_token(limited)).run(conn)
    assert store.create_api_token("all", "read", None, hash_token(reader)).run(conn)
    with TestClient(create_app(skiplock.App(dsn), auth=AuthConfig())) as client:
        as_limited = {"Authorization": f"Bearer {limited}"}
        answer = client.get(f"/api/v1/jobs/{mine}/webhooks", headers=as_limited)
        assert answer.status_code == 200 and len(answer.json()["deliveries"]) == 1
        response = client.get(f"/api/v1/jobs/{other}/webhooks", headers=as_limited)
        assert response.status_code == 404
        assert response.json()["detail"] == f"job {other} not found"
        as_reader = {"Authorization": f"Bearer {reader}"}
        assert client.get(f"/api/v1/jobs/{other}/webhooks", headers=as_reader).status_code == 200
        assert client.get(f"/api/v1/jobs/{other}/webhooks").status_code == 401


def test_in_the_openapi_document(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/api/v1/jobs/{job_id}/webhooks"]["get"]
    assert operation["operationId"] == "get_job_webhooks"
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/JobWebhooks")
    delivery = document["components"]["schemas"]["WebhookDelivery"]
    assert {"delivery_id", "status", "last_error"} <= set(delivery["properties"])
