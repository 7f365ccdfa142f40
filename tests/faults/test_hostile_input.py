"""Scenario 10: hostile input at SQL, Python and HTTP. Whatever comes in is refused with
a clear exception or 4xx, or it is stored as a row a worker can claim and decode; never
a 5xx, never a half-written batch, never a row that breaks the claim."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from harness import Figures
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

import skiplock
from skiplock import store
from skiplock.api import create_app
from skiplock.errors import SkiplockError
from skiplock.jobs import JSONError
from skiplock.worker import Worker

BODY_LIMIT = 65_536
WORKER = uuid.UUID("00000000-0000-4000-8000-00000000f10a")
HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def app(dsn: str) -> Iterator[skiplock.App]:
    application = skiplock.App(dsn)
    yield application
    application.close()


@pytest.fixture
def client(app: skiplock.App, conn: psycopg.Connection[Any]) -> Iterator[TestClient]:
    # POST /jobs takes only tasks a worker has published
    conn.execute(
        "SELECT skiplock.publish_tasks(NULL, %s::jsonb)",
        (json.dumps([{"name": "t"}, {"name": "t" * 200}]),),
    )
    with TestClient(create_app(app, max_body_bytes=BODY_LIMIT)) as c:
        yield c


def nested(depth: int, leaf: str = "1") -> str:
    return '{"a":' * depth + leaf + "}" * depth


HOSTILE_TEXTS = [
    '{"a": "\\u0000"}',
    '{"a": "x\\ud800y"}',
    '{"a": NaN}',
    '{"a": Infinity}',
    '{"a": 1e400}',
    '{"a": -1e-400}',
    '{"a": ' + "9" * 4300 + "}",
    nested(150),
    nested(200),
    nested(201),
    nested(1_000),
    nested(5_000),
    nested(100_000),
    "[1, 2]",
    '"just a string"',
    "null",
    "{" * 10,
]

# Hostile JSON values as Python builds them: NUL and lone surrogates in text, NaN and
# infinities, huge integers, deep nesting.
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**5000), max_value=10**5000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF))
    | st.sampled_from(["\x00", "\ud800", "a\udfffb"])
)
VALUES = st.recursive(
    LEAVES,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=20,
)


def deep_value(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def claim_everything(conn: psycopg.Connection[Any]) -> int:
    """Claim and decode every ready job, as a worker does; any undecodable row raises."""
    claimed = store.claim_jobs(WORKER, ["default"], 1000, timedelta(seconds=30)).run(conn)
    for job in claimed:
        json.dumps(job.args)  # and the handler can hand it on
    return len(claimed)


def test_10_sql_refuses_or_stores_decodable_rows(conn: psycopg.Connection[Any]) -> None:
    stored = refused = 0
    for text in HOSTILE_TEXTS:
        try:
            conn.execute("SELECT skiplock.enqueue('t', %s::jsonb)", (text,))
            stored += 1
        except psycopg.Error as exc:
            assert exc.diag.message_primary, text[:40]
            refused += 1
        # A plain INSERT is held to the same rules.
        try:
            conn.execute("INSERT INTO skiplock.jobs (task, args) VALUES ('t', %s::jsonb)", (text,))
            stored += 1
        except psycopg.Error:
            refused += 1
    assert claim_everything(conn) == stored
    figures = Figures("10-sql")
    figures["stored"], figures["refused"] = stored, refused
    figures.report()


@HYPOTHESIS
@given(args=st.dictionaries(st.text(max_size=5), VALUES, max_size=4))
def test_10_python_enqueue_refuses_or_stores_decodable_rows(
    app: skiplock.App, conn: psycopg.Connection[Any], args: dict[str, Any]
) -> None:
    try:
        app.enqueue("t", args)
    except (SkiplockError, JSONError, psycopg.errors.DataError, psycopg.errors.CheckViolation):
        return
    (job,) = store.claim_jobs(WORKER, ["default"], 10, timedelta(seconds=30)).run(conn)
    assert job.args.keys() == args.keys()
    conn.execute("DELETE FROM skiplock.jobs")


@pytest.mark.parametrize("depth", [200, 201, 5_000, 100_000])
def test_10_python_deep_nesting(
    app: skiplock.App, conn: psycopg.Connection[Any], depth: int
) -> None:
    try:
        app.enqueue("t", deep_value(depth))
    except (JSONError, psycopg.errors.CheckViolation) as exc:
        assert depth > 200, exc
        return
    assert depth <= 200
    assert claim_everything(conn) == 1


def post(client: TestClient, body: bytes) -> Any:
    return client.post("/api/v1/jobs", content=body, headers={"content-type": "application/json"})


@HYPOTHESIS
@given(body=st.binary(max_size=200) | st.sampled_from([t.encode() for t in HOSTILE_TEXTS]))
def test_10_http_never_answers_5xx(
    client: TestClient, conn: psycopg.Connection[Any], body: bytes
) -> None:
    for payload in (body, b'{"task": "t", "args": ' + body + b"}"):
        response = post(client, payload)
        assert response.status_code < 500, (payload[:60], response.text[:200])
        assert "Traceback" not in response.text
        if response.status_code >= 400:
            assert response.json()["error"], response.text
    claim_everything(conn)
    conn.execute("DELETE FROM skiplock.jobs")


def test_10_http_hostile_bodies(client: TestClient, conn: psycopg.Connection[Any]) -> None:
    figures = Figures("10-http")
    cases = {
        "nul": b'{"task": "t", "args": {"a": "\\u0000"}}',
        "invalid_utf8": b'{"task": "t", "args": {"a": "\xff\xfe"}}',
        "nan": b'{"task": "t", "args": {"a": NaN}}',
        "huge_int": b'{"task": "t", "args": {"a": ' + b"9" * 5000 + b"}}",
        "deep_100000": b'{"task": "t", "args": ' + nested(100_000).encode() + b"}",
        "deep_201": b'{"task": "t", "args": ' + nested(201).encode() + b"}",
        "task_201": json.dumps({"task": "t" * 201}).encode(),
        "queue_65": json.dumps({"task": "t", "queue": "q" * 65}).encode(),
    }
    padding = BODY_LIMIT - len(b'{"task": "t", "args": {"a": ""}}')
    cases["at_limit"] = b'{"task": "t", "args": {"a": "' + b"x" * padding + b'"}}'
    cases["over_limit"] = b'{"task": "t", "args": {"a": "' + b"x" * (padding + 1) + b'"}}'
    for name, body in cases.items():
        response = post(client, body)
        figures[name] = response.status_code
        if name == "at_limit":
            assert response.status_code == 201, response.text
            continue
        assert 400 <= response.status_code < 500, (name, response.text[:200])
        assert response.json()["error"] and "Traceback" not in response.text
    assert json.loads(
        post(client, json.dumps({"task": "t" * 200, "queue": "q" * 64}).encode()).text
    )
    assert claim_everything(conn) == 1  # at_limit; names at the limit go to queue q*64
    figures.report()


def test_10_names_at_and_above_their_limits(
    app: skiplock.App, conn: psycopg.Connection[Any]
) -> None:
    app.enqueue("t" * 200, queue="q" * 64)
    for task, queue in (("t" * 201, "default"), ("t", "q" * 65), ("t\x00", "default"), ("t", "")):
        with pytest.raises(
            (SkiplockError, psycopg.errors.CheckViolation, psycopg.errors.DataError)
        ):
            app.enqueue(task, queue=queue)
    # Many long queue names in one statement: the wake-up NOTIFY stays under 8,000 bytes.
    queues = [f"{i:03d}" + "q" * 61 for i in range(200)]
    ids = app.enqueue_many([{"task": "t", "queue": q} for q in queues])
    assert len(ids) == 200


HUGE_INT = "1" + "0" * 5000  # jsonb keeps it; Python's json stops at 4,300 digits


def record_runs(app: skiplock.App) -> list[dict[str, Any]]:
    ran: list[dict[str, Any]] = []

    @app.task(name="t", max_attempts=3)
    def t(**args: Any) -> None:
        ran.append(args)

    return ran


def run_worker_once(app: skiplock.App, concurrency: int) -> int:
    async def once() -> int:
        worker = Worker(app, concurrency=concurrency)
        try:
            return await worker.run_once()
        finally:
            await worker.close()

    return asyncio.run(once())


def test_10_sql_huge_integer_fails_only_its_job(
    app: skiplock.App, conn: psycopg.Connection[Any]
) -> None:
    ran = record_runs(app)
    # Raw SQL stores it (refusing it in SQL would walk every document: ~25% of enqueue).
    bad = conn.execute(f"SELECT skiplock.enqueue('t', '{{\"a\": {HUGE_INT}}}'::jsonb)")
    bad_id = bad.fetchone()[0]  # type: ignore[index]
    # One claim, one batch: the undecodable job fails alone, without a retry; the
    # others run.
    assert run_worker_once(app, concurrency=10) == 1
    row = conn.execute(
        "SELECT a.status, a.attempt, d.last_error FROM skiplock.dead_letters d"
        " JOIN skiplock.all_jobs a USING (id) WHERE id = %s",
        (bad_id,),
    ).fetchone()
    assert row is not None, "the job is not in the dead letters"
    status, attempt, last_error = row
    assert (status, attempt) == ("failed", 1)
    assert "UndecodableJSON: the job's args cannot be decoded" in last_error
    assert "4300" in last_error
    assert ran == []
    assert run_worker_once(app, concurrency=10) == 0  # never claimed again


def test_10_undecodable_job_among_good_ones_in_one_claim(
    app: skiplock.App, conn: psycopg.Connection[Any]
) -> None:
    ran = record_runs(app)
    good_before = app.enqueue_many([{"task": "t", "args": {"n": n}} for n in range(5)])
    bad_args = conn.execute(
        f"SELECT skiplock.enqueue('t', '{{\"a\": [{HUGE_INT}]}}'::jsonb)"
    ).fetchone()[0]  # type: ignore[index]
    bad_meta = conn.execute(
        f"SELECT skiplock.enqueue('t', '{{}}', meta => '{{\"m\": {HUGE_INT}}}'::jsonb)"
    ).fetchone()[0]  # type: ignore[index]
    good_after = app.enqueue_many([{"task": "t", "args": {"n": n}} for n in range(5, 10)])
    assert run_worker_once(app, concurrency=20) == 12  # all in one claim
    assert sorted(args["n"] for args in ran) == list(range(10))
    statuses = dict(
        conn.execute("SELECT id, status FROM skiplock.all_jobs").fetchall()  # type: ignore[arg-type]
    )
    assert {statuses[i] for i in good_before + good_after} == {"succeeded"}
    assert statuses[bad_args] == statuses[bad_meta] == "failed"
    errors = dict(
        conn.execute("SELECT id, last_error FROM skiplock.dead_letters").fetchall()  # type: ignore[arg-type]
    )
    assert "the job's args cannot be decoded" in errors[bad_args]
    assert "the job's meta cannot be decoded" in errors[bad_meta]


def test_10_undecodable_job_can_still_be_inspected(
    app: skiplock.App, client: TestClient, conn: psycopg.Connection[Any]
) -> None:
    bad_id = conn.execute(
        f"SELECT skiplock.enqueue('t', '{{\"a\": {HUGE_INT}, \"b\": 7}}'::jsonb)"
    ).fetchone()[0]  # type: ignore[index]
    app.enqueue("t", {"b": 8})
    # Inspection shows the too-long integer as its digits, and lists the other jobs.
    assert app.get_job(bad_id).args == {"a": HUGE_INT, "b": 7}
    response = client.get(f"/api/v1/jobs/{bad_id}")
    assert response.status_code == 200, response.text
    assert response.json()["args"] == {"a": HUGE_INT, "b": 7}
    listing = client.get("/api/v1/jobs")
    assert listing.status_code == 200, listing.text
    assert len(listing.json()["jobs"]) == 2
