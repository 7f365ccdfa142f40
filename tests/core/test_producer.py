"""The producer API: enqueue (sync, async, transactional, bulk), read, wait for results."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

import skiplock
from skiplock import RetryPolicy, store
from skiplock.jobs import JSONError, encode_json


def test_task_defaults_and_per_call_options_reach_the_row(app, conn):
    @app.task(
        name="mail",
        queue="emails",
        priority=5,
        max_attempts=4,
        retry_policy=RetryPolicy.linear(2),
        timeout=30,
    )
    def mail(to: str) -> None: ...

    a = mail.enqueue(to="a@b.c")
    b = app.enqueue("mail", {"to": "x"}, priority=-3, delay=60, tags=["t"], meta={"k": 1})
    rows = dict(
        (r[0], r[1:])
        for r in conn.execute(
            "SELECT id, queue, priority, max_attempts, retry_policy->>'kind', timeout, status,"
            " tags, meta FROM skiplock.all_jobs"
        ).fetchall()
    )
    assert rows[a] == ("emails", 5, 4, "linear", timedelta(seconds=30), "queued", [], {})
    assert rows[b] == (
        "emails",
        -3,
        4,
        "linear",
        timedelta(seconds=30),
        "scheduled",
        ["t"],
        {"k": 1},
    )


def test_enqueue_joins_the_callers_transaction(app, dsn, conn):
    with psycopg.connect(dsn) as own:  # not autocommit: enqueue joins its transaction
        app.enqueue("echo", {"n": 1}, conn=own)
        own.commit()
        app.enqueue("echo", {"n": 2}, conn=own)
        assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()[0] == 1
        own.rollback()
    args = [r[0] for r in conn.execute("SELECT args FROM skiplock.jobs").fetchall()]
    assert args == [{"n": 1}]


def test_async_enqueue_in_a_rolled_back_transaction_leaves_no_job(app, dsn, conn):
    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as own:
            await app.enqueue_async("echo", {"n": 1}, conn=own)
            await own.rollback()
            await app.enqueue_async("echo", {"n": 2}, conn=own)
            await own.commit()
        await app.aclose()

    asyncio.run(main())
    args = [r[0] for r in conn.execute("SELECT args FROM skiplock.jobs").fetchall()]
    assert args == [{"n": 2}]


def test_bulk_enqueue_is_one_statement_and_keeps_order(app, conn):
    jobs = [{"task": "echo", "args": {"i": i}, "queue": f"q{i % 3}"} for i in range(5000)]
    ids = app.enqueue_many(jobs)
    assert len(ids) == 5000 and ids == sorted(ids)
    rows = conn.execute("SELECT id, args->>'i', queue FROM skiplock.jobs ORDER BY id").fetchall()
    assert [(r[1], r[2]) for r in rows] == [(str(i), f"q{i % 3}") for i in range(5000)]


def test_bad_input_is_refused_before_anything_is_written(app, conn):
    with pytest.raises(ValueError, match="NUL"):
        app.enqueue("echo", {"s": "a\x00b"})
    with pytest.raises(ValueError, match="not valid JSON"):
        app.enqueue("echo", {"x": float("nan")})
    # options are checked by their declaration (skiplock.options) before any SQL
    with pytest.raises(skiplock.ConfigError, match=r"^queue: must be 1 to 64 characters"):
        app.enqueue("echo", queue="bad queue!")
    with pytest.raises(skiplock.ConfigError, match=r"^priority: Expected `int` <= 100"):
        app.enqueue_many([{"task": "echo"}, {"task": "echo", "priority": 1000}])
    with pytest.raises(skiplock.ConfigError, match=r"^delay: Expected `float` >= 0"):
        app.enqueue("echo", delay=-1)
    with pytest.raises(skiplock.ConfigError, match=r"^unknown job option"):
        app.enqueue("echo", retry=skiplock.RetryPolicy.fixed(1))
    # and what only the database knows is refused by it
    with pytest.raises(psycopg.errors.CheckViolation, match="task_name_valid"):
        app.enqueue("bad task!")
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()[0] == 0


def test_get_job_and_not_found(app):
    job_id = app.enqueue("echo", {"a": 1})
    job = app.get_job(job_id)
    assert (job.status, job.args, job.attempt) == ("queued", {"a": 1}, 0)
    assert job.to_json()["created_at"].endswith("+00:00")
    with pytest.raises(skiplock.JobNotFound, match="job 999999 not found"):
        app.get_job(999999)


def finish(conn, job_id: int, *, result: str | None = None, error: str | None = None) -> None:
    worker = "00000000-0000-0000-0000-000000000001"
    conn.execute("SELECT skiplock.claim_jobs(%s, '{default}', 100)", (worker,))
    if result is not None:
        conn.execute(
            "SELECT skiplock.complete_jobs(%s, ARRAY[%s]::bigint[], '{1}', ARRAY[%s]::jsonb[])",
            (worker, job_id, result),
        )
    else:
        conn.execute(
            "SELECT skiplock.fail_jobs(%s, ARRAY[%s]::bigint[], '{1}', ARRAY[%s]::jsonb[])",
            (worker, job_id, error),
        )


def test_wait_for_result_wakes_on_notify_from_another_connection(app, conn):
    job_id = app.enqueue("echo")
    timer = threading.Timer(0.3, finish, args=(conn, job_id), kwargs={"result": '{"ok": true}'})
    timer.start()
    assert app.wait_for_result(job_id, timeout=20) == {"ok": True}


def test_wait_for_result_raises_for_failed_cancelled_and_timeout(app, conn):
    dead = app.enqueue("echo")
    finish(conn, dead, error='{"error": "boom", "retry": false}')
    with pytest.raises(skiplock.JobFailed, match="boom"):
        app.wait_for_result(dead, timeout=5)

    cancelled = app.enqueue("echo")
    app.cancel_job(cancelled)
    with pytest.raises(skiplock.JobCancelled):
        asyncio.run(app.wait_for_result_async(cancelled, timeout=5))

    pending = app.enqueue("echo")
    with pytest.raises(TimeoutError):
        app.wait_for_result(pending, timeout=0.3)
    with pytest.raises(skiplock.JobNotFound):
        app.wait_for_result(424242, timeout=1)


def test_a_sync_wait_answers_inside_a_running_event_loop(app, conn):
    """Sync code that an event loop runs may call the sync wait (blocking that loop, as
    any sync call does): it waits on a loop of its own, in a thread of its own."""
    job_id = app.enqueue("echo")
    finish(conn, job_id, result='{"ok": true}')
    workflow = app.workflow(skiplock.Step("echo", name="only"))
    finish(conn, workflow.jobs["only"], result="1")

    async def caller():
        return app.wait_for_result(job_id, timeout=5), workflow.wait(timeout=5).state

    assert asyncio.run(caller()) == ({"ok": True}, "succeeded")


def test_cancel_and_retry_through_the_app(app, conn):
    job_id = app.enqueue("echo")
    assert app.cancel_job(job_id) == "cancelled"
    assert app.cancel_job(job_id) == "cancelled"
    assert app.retry_job(job_id) == "queued"
    assert app.get_job(job_id).status == "queued"
    with pytest.raises(skiplock.JobNotFound):
        app.cancel_job(987654)


def test_enqueued_hooks_see_every_job(app):
    seen = []

    @app.on("enqueued")
    def record(event, ctx, info):
        seen.append((event, info["task"], info["job_id"]))

    one = app.enqueue("echo")
    many = app.enqueue_many([{"task": "a"}, {"task": "b"}])
    assert seen == [
        ("enqueued", "echo", one),
        ("enqueued", "a", many[0]),
        ("enqueued", "b", many[1]),
    ]


def test_unique_key_returns_the_holder_in_single_and_bulk_enqueues(app, conn):
    first = app.enqueue("echo", {"n": 1}, unique_key="report-2026-11")
    assert app.enqueue("echo", {"n": 2}, unique_key="report-2026-11") == first
    other = app.enqueue("echo", unique_key="other", unique_for=3600)
    assert other != first
    bulk = app.enqueue_many(
        [
            {"task": "echo", "unique_key": "report-2026-11"},
            {"task": "echo", "unique_key": "new"},
            {"task": "echo", "args": {"n": 3}, "unique_key": "new"},
        ]
    )
    assert bulk[0] == first and bulk[1] == bulk[2] and bulk[1] not in (first, other)
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()[0] == 3


# Jobs sharing their options go in as one INSERT, or as one COPY past INSERT_MAX_JOBS.
BULK_SIZES = pytest.mark.parametrize(
    "n, path", [(300, "insert"), (store.INSERT_MAX_JOBS + 1, "copy")], ids=["insert", "copy"]
)


def bulk_path(app, specs) -> str:
    call = store.enqueue_many(app._requests(specs))
    return "copy" if isinstance(call, store.CopyCall) else "insert"


@BULK_SIZES
def test_bulk_keeps_every_value_and_the_input_order(app, conn, n, path):
    # Text that COPY would read as separators or escapes, or JSON as quotes, must arrive
    # unchanged, and every shared option must land.
    tricky = {"s": 'tab\there\nnew\\line "quoted" \r end', "n": [1, {"k": None}]}
    run_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    common = {
        "queue": "bulk",
        "priority": 7,
        "max_attempts": 3,
        "timeout": 12.5,
        "tags": ["a b", 'q"t', "back\\slash"],
        "meta": {"origin": "tab\t"},
        "run_at": run_at,
        "retry_policy": RetryPolicy.fixed(4),
    }
    specs = [{"task": "echo", "args": {**tricky, "i": i}, **common} for i in range(n)]
    assert bulk_path(app, specs) == path
    ids = app.enqueue_many(specs)
    assert ids == sorted(ids) and len(ids) == n
    rows = conn.execute(
        "SELECT id, args, queue, priority, max_attempts, timeout, tags, meta, run_at,"
        " retry_policy->>'kind', state FROM skiplock.jobs ORDER BY id"
    ).fetchall()
    assert [r[0] for r in rows] == ids
    for i, row in enumerate(rows):
        assert row[1] == {**tricky, "i": i}
        assert row[2:] == (
            "bulk",
            7,
            3,
            timedelta(seconds=12.5),
            ["a b", 'q"t', "back\\slash"],
            {"origin": "tab\t"},
            run_at,
            "fixed",
            "queued",
        )


def test_one_job_goes_through_skiplock_enqueue_and_keeps_every_option(app, conn):
    args = {"s": 'tab\there "quoted" \\ end', "n": [1, {"k": None}]}
    run_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    options = {
        "queue": "one",
        "priority": -3,
        "max_attempts": 2,
        "timeout": 1.5,
        "tags": ["a b", 'q"t'],
        "meta": {"origin": "here"},
        "run_at": run_at,
        "retry_policy": RetryPolicy.fixed(4),
        "expires_at": run_at + timedelta(days=1),
        "callback_url": "https://example.com/hooks?x=1",
    }
    [request] = app._requests([{"task": "echo", "args": args, **options}])
    assert store.enqueue(request).sql.startswith("SELECT skiplock.enqueue(")
    job_id = app.enqueue("echo", args, **options)
    row = conn.execute(
        "SELECT task, args, queue, priority, max_attempts, timeout, tags, meta, run_at,"
        " retry_policy->>'kind', expires_at, callback_url, state, attempt"
        " FROM skiplock.jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == (
        "echo",
        args,
        "one",
        -3,
        2,
        timedelta(seconds=1.5),
        ["a b", 'q"t'],
        {"origin": "here"},
        run_at,
        "fixed",
        run_at + timedelta(days=1),
        "https://example.com/hooks?x=1",
        "queued",
        0,
    )
    # and so do the options read against the database's clock or other rows
    later = app.enqueue("echo", delay=timedelta(seconds=60))
    expiring = app.enqueue("echo", expires_in=timedelta(hours=1))
    keyed = app.enqueue("echo", unique_key="k")
    waiting = app.enqueue("echo", depends_on=(job_id,))
    checks = conn.execute(
        "SELECT bool_or(id = %s AND run_at > now() + interval '59 seconds'),"
        " bool_or(id = %s AND expires_at > now() + interval '59 minutes'),"
        " bool_or(id = %s AND unique_key = 'k'),"
        " bool_or(id = %s AND state = 'waiting' AND depends_on = ARRAY[%s]::bigint[])"
        " FROM skiplock.jobs",
        (later, expiring, keyed, waiting, job_id),
    ).fetchone()
    assert checks == (True, True, True, True)
    # and a bad name is refused
    with pytest.raises(skiplock.ConfigError, match=r"^queue: must be"):
        app.enqueue("echo", queue="bad queue")
    with pytest.raises(psycopg.errors.CheckViolation, match="task_name_valid"):
        app.enqueue("bad task")
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()[0] == 5


def test_bulk_of_several_tasks_keeps_each_task_and_checks_every_name(app, conn):
    # One task: it is read once for the whole insert; several: each job carries its own.
    specs = [{"task": "echo" if i % 3 else "other.task", "args": {"i": i}} for i in range(50)]
    assert bulk_path(app, specs) == "insert"
    ids = app.enqueue_many(specs)
    rows = conn.execute("SELECT id, task, args->>'i', queue FROM skiplock.jobs ORDER BY id")
    assert rows.fetchall() == [
        (job_id, spec["task"], str(i), "default")
        for i, (job_id, spec) in enumerate(zip(ids, specs, strict=True))
    ]
    # the names read once are checked all the same, and a bad one writes nothing
    with pytest.raises(psycopg.errors.CheckViolation, match="task_name_valid"):
        app.enqueue_many([{"task": "echo"}, {"task": "bad task"}])
    with pytest.raises(psycopg.errors.CheckViolation, match="task_name_valid"):
        app.enqueue_many([{"task": "bad task"}] * 3)
    with pytest.raises(skiplock.ConfigError, match=r"^queue: must be"):
        app.enqueue_many([{"task": "echo", "queue": "bad queue"}] * 3)
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()[0] == 50


def test_bulk_with_mixed_or_relative_options_takes_the_statement(app, conn):
    mixed = [{"task": "echo", "args": {"i": 1}}, {"task": "echo", "priority": 3}]
    relative = [{"task": "echo", "delay": 60}, {"task": "echo", "delay": 60}]
    assert store.shared_options(app._requests(mixed)) is None
    assert store.shared_options(app._requests(relative)) is None
    ids = app.enqueue_many(mixed) + app.enqueue_many(relative)
    rows = conn.execute(
        "SELECT priority, run_at > now() + interval '50 seconds' FROM skiplock.jobs ORDER BY id"
    ).fetchall()
    assert len(ids) == 4 and rows == [(0, False), (3, False), (0, True), (0, True)]


@BULK_SIZES
def test_bulk_joins_the_callers_transaction_and_wakes_once(app, dsn, conn, n, path):
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute("LISTEN skiplock_jobs")
        with psycopg.connect(dsn) as producer:
            assert bulk_path(app, [{"task": "echo"}] * n) == path
            app.enqueue_many([{"task": "echo"}] * n, conn=producer)
            producer.rollback()
            assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()[0] == 0
            ids = app.enqueue_many([{"task": "echo"}] * n, conn=producer)
            producer.commit()
        assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone()[0] == n
        assert len(ids) == n
        notices = list(listener.notifies(timeout=0.5))
        assert [(n.channel, n.payload) for n in notices] == [("skiplock_jobs", "default")]
    with pytest.raises(psycopg.errors.CheckViolation, match="task_name_valid"):
        app.enqueue_many([{"task": "bad\ttask"}] * n)


@BULK_SIZES
def test_bulk_from_async_code(app, conn, n, path):
    specs = [{"task": "echo", "args": {"i": i}} for i in range(n)]
    assert bulk_path(app, specs) == path

    async def main() -> list[int]:
        try:
            return await app.enqueue_many_async(specs)
        finally:
            await app.aclose()

    ids = asyncio.run(main())
    rows = conn.execute("SELECT id, args->>'i' FROM skiplock.jobs ORDER BY id").fetchall()
    assert rows == [(job_id, str(i)) for i, job_id in enumerate(ids)]


def test_encode_json_writes_what_json_dumps_writes():
    # encode_json reuses one C encoder; its text must be the standard encoder's.
    values = [
        {"user": 1, "email": "a@example.com", "tags": ["x", "y"], "ok": True, "none": None},
        {"é": "ünïcode ☃ \U0001f600", "quote": '"\\', 1: "int key", 2.5: "float key"},
        [1.5, -0.0, 1e300, 10**40, {"nested": [{"deep": []}]}],
        "just a string",
        42,
        None,
    ]
    for value in values:
        assert encode_json(value, what="args") == json.dumps(
            value, separators=(",", ":"), allow_nan=False
        )
    with pytest.raises(JSONError, match="args is not valid JSON"):
        encode_json({"a": float("nan")}, what="args")
    with pytest.raises(JSONError, match="args is not valid JSON"):
        encode_json({"a": object()}, what="args")
    looped: dict[str, object] = {}
    looped["self"] = looped
    with pytest.raises(JSONError, match="contains itself"):
        encode_json(looped, what="args")
    # and the encoder is still sound after those errors, from many threads at once
    batches = [[{"n": n, "s": str(n) * (n % 7)} for n in range(k, k + 500)] for k in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        texts = list(pool.map(lambda batch: [encode_json(v, what="args") for v in batch], batches))
    assert texts == [[json.dumps(v, separators=(",", ":")) for v in batch] for batch in batches]


def test_durations_and_priorities_by_name(app, conn):
    job_id = app.enqueue("echo", timeout="5m", priority="high", expires_in="PT1H")
    row = conn.execute(
        "SELECT timeout, priority, expires_at - created_at FROM skiplock.jobs WHERE id = %s",
        (job_id,),
    ).fetchone()
    assert row == (timedelta(minutes=5), 50, timedelta(hours=1))


def test_each_event_loop_gets_its_own_async_pool(app: skiplock.App) -> None:
    """A script may call asyncio.run(app.enqueue_async(...)) more than once: each loop
    gets a pool of its own, opened before the call returns, so no connection is still
    being made when asyncio.run cancels what its loop left behind."""
    first = asyncio.run(app.enqueue_async("t"))
    first_pool = app._async_pool
    second = asyncio.run(app.enqueue_async("t"))
    assert app._async_pool is not first_pool
    assert app.get_job(first).task == app.get_job(second).task == "t"
