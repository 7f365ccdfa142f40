"""List responses stay small whatever the rows hold: a JSON value longer than the preview
comes as a bounded preview (its size and first characters), the full value from the
item's own endpoint; keyset pages still walk every row."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import psycopg
from api_checks import DOCUMENT, W1
from starlette.testclient import TestClient

import skiplock
from skiplock import store
from skiplock.api import AuthConfig, create_app
from skiplock.api.auth import hash_token, new_token
from skiplock.store import PREVIEW_CHARS

ROWS = 150
BIG = 1_000_000  # characters in each big value: ~1 MB of JSON text
# 150 rows of 1 MB args and 1 MB results: ~300 MB in full; the page must stay under this.
PAGE_BYTES_MAX = 1_000_000


def enqueue_big(conn: psycopg.Connection, n: int = ROWS, *, queue: str = "default") -> list[int]:
    """n jobs whose args hold a 1 MB string, built in SQL so the test sends no megabytes."""
    rows = conn.execute(
        "INSERT INTO skiplock.jobs (task, queue, args, meta, tags)"
        " SELECT 't', %s, jsonb_build_object('blob', repeat('x', %s)),"
        "        jsonb_build_object('note', repeat('m', %s)), ARRAY[repeat('g', %s)]"
        " FROM generate_series(1, %s) RETURNING id",
        (queue, BIG, BIG, BIG, n),
    ).fetchall()
    return [row[0] for row in rows]


def claim_all(conn: psycopg.Connection, queue: str = "default") -> tuple[list[int], list[int]]:
    rows = conn.execute(
        "SELECT id, attempt FROM skiplock.claim_jobs(%s, ARRAY[%s], 1000)", (W1, queue)
    ).fetchall()
    return [r[0] for r in rows], [r[1] for r in rows]


def succeed_big(conn: psycopg.Connection) -> None:
    """Claim every job and complete it with a 1 MB result."""
    ids, attempts = claim_all(conn)
    conn.execute(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[],"
        " array_fill(jsonb_build_object('blob', repeat('y', %s)), ARRAY[%s]))",
        (W1, ids, attempts, BIG, len(ids)),
    )


def kill_big(conn: psycopg.Connection, queue: str = "default") -> None:
    """Claim every job and fail it for good with a 1 MB error message."""
    ids, attempts = claim_all(conn, queue)
    conn.execute(
        "SELECT skiplock.fail_jobs(%s, %s::bigint[], %s::integer[],"
        " array_fill(jsonb_build_object('error', repeat('e', %s), 'retry', false), ARRAY[%s]))",
        (W1, ids, attempts, BIG, len(ids)),
    )


def inlined(node: Any) -> Any:
    """`node` with each $ref to a component replaced by the component (none refers to
    itself)."""
    if isinstance(node, list):
        return [inlined(value) for value in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return inlined(DOCUMENT["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]])
    return {key: inlined(value) for key, value in node.items()}


def check_schema(items: list[dict[str, Any]], schema: str) -> None:
    """The items are what /openapi.json says a list holds."""
    validator = jsonschema.Draft202012Validator(inlined(DOCUMENT["components"]["schemas"][schema]))
    for item in items:
        validator.validate(item)


def check_preview(item: dict[str, Any], field: str, start: str) -> None:
    assert item[field] is None
    cut = item["truncated"][field]
    assert cut["bytes"] > BIG
    assert len(cut["preview"]) == PREVIEW_CHARS and cut["preview"].startswith(start)


def test_job_list_over_big_rows_is_bounded(client: TestClient, conn: psycopg.Connection) -> None:
    ids = enqueue_big(conn)
    succeed_big(conn)
    response = client.get("/api/v1/jobs", params={"limit": "500"})
    assert response.status_code == 200, response.text[:300]
    assert len(response.content) < PAGE_BYTES_MAX
    jobs = response.json()["jobs"]
    assert sorted(job["id"] for job in jobs) == sorted(ids)
    check_schema(jobs, "JobListItem")
    for job in jobs:
        assert job["status"] == "succeeded"
        check_preview(job, "args", '{"blob": "xxx')
        check_preview(job, "result", '{"blob": "yyy')
        check_preview(job, "meta", '{"note": "mmm')
        check_preview(job, "tags", '["ggg')
        assert job["truncated"]["args"]["url"] == f"/api/v1/jobs/{job['id']}"
    # The full value is the job's own.
    full = client.get(f"/api/v1/jobs/{ids[0]}").json()
    assert full["args"] == {"blob": "x" * BIG} and full["result"] == {"blob": "y" * BIG}


def test_small_values_are_listed_whole(client: TestClient, conn: psycopg.Connection) -> None:
    fits = "a" * (PREVIEW_CHARS - len('{"s": ""}'))
    conn.execute(
        "SELECT skiplock.enqueue('t', %s::jsonb, tags => ARRAY['x'])", (json.dumps({"s": fits}),)
    )
    conn.execute("SELECT skiplock.enqueue('t', %s::jsonb)", (json.dumps({"s": fits + "a"}),))
    listed = client.get("/api/v1/jobs").json()["jobs"]
    check_schema(listed, "JobListItem")
    over, whole = listed
    assert whole["args"] == {"s": fits} and whole["tags"] == ["x"] and whole["truncated"] == {}
    assert over["args"] is None
    assert over["truncated"]["args"]["bytes"] == PREVIEW_CHARS + 1
    assert over["truncated"]["args"]["preview"] == json.dumps({"s": fits + "a"})[:PREVIEW_CHARS]


def test_job_pages_of_big_rows_walk_every_row(client: TestClient, conn: psycopg.Connection) -> None:
    ids = enqueue_big(conn, 30)
    for sort in ("id", "created_at", "priority", "finished_at"):
        seen: list[int] = []
        cursor = None
        while True:
            params = {"limit": "7", "sort": sort, **({"cursor": cursor} if cursor else {})}
            body = client.get("/api/v1/jobs", params=params).json()
            seen += [job["id"] for job in body["jobs"]]
            assert all(job["args"] is None for job in body["jobs"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert sorted(seen) == sorted(ids), sort


def test_dead_letter_list_over_big_rows_is_bounded(
    client: TestClient, conn: psycopg.Connection
) -> None:
    ids = enqueue_big(conn)
    kill_big(conn)
    response = client.get("/api/v1/dead-letters", params={"limit": "500"})
    assert response.status_code == 200, response.text[:300]
    assert len(response.content) < PAGE_BYTES_MAX
    letters = response.json()["dead_letters"]
    assert sorted(letter["id"] for letter in letters) == sorted(ids)
    check_schema(letters, "DeadLetterListItem")
    for letter in letters:
        check_preview(letter, "args", '{"blob": "xxx')
        check_preview(letter, "last_error", '"eee')
        check_preview(letter, "errors", "[{")
        assert letter["truncated"]["args"]["url"] == f"/api/v1/dead-letters/{letter['id']}"
    one = client.get(f"/api/v1/dead-letters/{ids[0]}").json()
    assert one["args"] == {"blob": "x" * BIG} and one["last_error"] == "e" * BIG
    # and the pages still walk every row
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": "40", **({"cursor": cursor} if cursor else {})}
        body = client.get("/api/v1/dead-letters", params=params).json()
        seen += [letter["id"] for letter in body["dead_letters"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)


def test_workflow_list_over_big_meta_is_bounded(
    client: TestClient, conn: psycopg.Connection
) -> None:
    ids = [
        row[0]
        for row in conn.execute(
            "SELECT skiplock.enqueue_workflow(jsonb_build_object("
            " 'meta', jsonb_build_object('blob', repeat('w', %s)),"
            ' \'steps\', \'[{"name": "s", "task": "t"}]\'::jsonb)) FROM generate_series(1, %s)',
            (BIG, ROWS),
        )
    ]
    response = client.get("/api/v1/workflows", params={"limit": "500"})
    assert response.status_code == 200, response.text[:300]
    assert len(response.content) < PAGE_BYTES_MAX
    workflows = response.json()["workflows"]
    assert sorted(w["id"] for w in workflows) == sorted(ids)
    check_schema(workflows, "WorkflowSummary")
    for workflow in workflows:
        check_preview(workflow, "meta", '{"blob": "www')
        assert workflow["counts"]["steps"] == 1
        assert workflow["truncated"]["meta"]["url"] == f"/api/v1/workflows/{workflow['id']}"
    assert client.get(f"/api/v1/workflows/{ids[0]}").json()["meta"] == {"blob": "w" * BIG}


def test_workflow_steps_with_big_results_are_bounded(
    client: TestClient, conn: psycopg.Connection
) -> None:
    steps = json.dumps([{"name": f"s{i}", "task": "t"} for i in range(ROWS)])
    (workflow_id,) = conn.execute(
        "SELECT skiplock.enqueue_workflow(jsonb_build_object('steps', %s::jsonb))", (steps,)
    ).fetchone() or (None,)
    succeed_big(conn)
    response = client.get(f"/api/v1/workflows/{workflow_id}", params={"wait": "0"})
    assert response.status_code == 200, response.text[:300]
    assert len(response.content) < PAGE_BYTES_MAX
    body = response.json()
    assert body["state"] == "succeeded" and len(body["steps"]) == ROWS
    check_schema([body], "Workflow")
    for step in body["steps"]:
        check_preview(step, "result", '{"blob": "yyy')
        assert step["truncated"]["result"]["url"] == f"/api/v1/jobs/{step['job_id']}"
    job_id = body["steps"][0]["job_id"]
    whole = client.get(f"/api/v1/jobs/{job_id}/result").json()["result"]
    assert whole == {"blob": "y" * BIG}


def test_previews_of_a_queue_limited_listing(dsn: str, conn: psycopg.Connection) -> None:
    """The queue filter of a limited token and the previews compose."""
    token = new_token()
    assert store.create_api_token("mine", "read", "mine", hash_token(token)).run(conn)
    mine = enqueue_big(conn, 3, queue="mine")
    enqueue_big(conn, 3, queue="other")
    with TestClient(create_app(skiplock.App(dsn), auth=AuthConfig())) as client:
        body = client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {token}"}).json()
    assert sorted(job["id"] for job in body["jobs"]) == sorted(mine)
    assert all(job["truncated"]["args"]["bytes"] > BIG for job in body["jobs"])


def test_store_listing_sends_no_big_value(conn: psycopg.Connection) -> None:
    """The bound holds in the database: the rows PostgreSQL sends hold previews, not values."""
    enqueue_big(conn, 5)
    call = store.list_job_previews(store.JobFilter(), limit=10)
    result = conn.execute(call.sql.encode(), call.params).pgresult
    assert result is not None and result.ntuples == 5
    sent = sum(
        len(result.get_value(row, column) or b"")
        for row in range(result.ntuples)
        for column in range(result.nfields)
    )
    # Four previews per row (args, meta, tags, and nothing else big) and small fields.
    assert sent < 5 * 5 * PREVIEW_CHARS
