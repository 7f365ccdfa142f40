"""The worker runtime in-process against a real database: execution, outcomes, leases,
cancellation, timeouts, NOTIFY wake-ups, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest

import skiplock
from conftest import async_wait_until
from skiplock import RetryPolicy
from skiplock.worker import Worker
from skiplock.worker.listener import Listener


def status_of(dsn: str, job_id: int) -> str | None:
    with psycopg.connect(dsn) as c:
        row = c.execute("SELECT status FROM skiplock.all_jobs WHERE id = %s", (job_id,)).fetchone()
    return row[0] if row else None


def job_row(dsn: str, job_id: int, columns: str = "status, result, attempt") -> tuple[Any, ...]:
    with psycopg.connect(dsn) as c:
        row = c.execute(
            f"SELECT {columns} FROM skiplock.all_jobs WHERE id = %s", (job_id,)
        ).fetchone()
    assert row is not None
    return row


def run_worker(
    app: skiplock.App, body: Callable[[Worker], Awaitable[None]], **settings: Any
) -> Worker:
    """Run a worker while `body` drives the test, then stop it and wait for it to exit."""
    settings.setdefault("poll_interval", 0.05)
    worker = Worker(app, **settings)

    async def main() -> None:
        runner = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(worker.started.wait(), 30)
            await body(worker)
        finally:
            worker.stop()
            await asyncio.wait_for(runner, 30)

    asyncio.run(main())
    return worker


def finished(dsn: str, job_id: int, status: str = "succeeded") -> Callable[[], bool]:
    return lambda: status_of(dsn, job_id) == status


@pytest.fixture
def app(dsn: str) -> skiplock.App:
    application = skiplock.App(dsn)
    yield application
    application.close()


def test_async_and_sync_handlers_store_results_and_progress(app, dsn):
    @app.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="shout")
    def shout(ctx: skiplock.JobContext, text: str) -> dict[str, Any]:
        ctx.progress(0.5, "halfway")
        time.sleep(0.2)  # long enough for the coalesced progress write to land
        return {"text": text.upper(), "thread": threading.current_thread().name}

    a = add.enqueue(a=2, b=3)
    s = app.enqueue("shout", {"text": "hi"})

    async def body(worker: Worker) -> None:
        await async_wait_until(finished(dsn, a))
        await async_wait_until(finished(dsn, s))

    run_worker(app, body)
    assert job_row(dsn, a) == ("succeeded", 5, 1)
    status, result, _ = job_row(dsn, s)
    assert status == "succeeded"
    assert result["text"] == "HI" and result["thread"].startswith("skiplock-job")
    (progress,) = job_row(dsn, s, "progress")
    assert progress["fraction"] == 0.5 and progress["message"] == "halfway"


def test_failures_retry_by_policy_then_dead_letter(app, dsn):
    calls = []

    @app.task(name="flaky", max_attempts=3, retry_policy=RetryPolicy.fixed(0))
    async def flaky() -> None:
        calls.append(1)
        raise ValueError("broken")

    job_id = flaky.enqueue()

    async def body(worker: Worker) -> None:
        await async_wait_until(finished(dsn, job_id, "failed"))

    run_worker(app, body)
    assert len(calls) == 3
    (errors,) = job_row(dsn, job_id, "errors")
    assert [e["attempt"] for e in errors] == [1, 2, 3]
    assert errors[-1]["error"] == "ValueError: broken" and "Traceback" in errors[-1]["traceback"]
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM skiplock.dead_jobs").fetchone()[0] == 1


def test_retry_and_discard_exceptions(app, dsn):
    @app.task(name="later")
    async def later() -> None:
        raise skiplock.Retry(delay=3600, message="not yet")

    @app.task(name="hopeless")
    async def hopeless() -> None:
        raise skiplock.Discard("bad input")

    r = later.enqueue()
    d = hopeless.enqueue()

    async def body(worker: Worker) -> None:
        await async_wait_until(finished(dsn, r, "retrying"))
        await async_wait_until(finished(dsn, d, "failed"))

    run_worker(app, body)
    with psycopg.connect(dsn) as c:
        delay = c.execute(
            "SELECT extract(epoch FROM run_at - now()) FROM skiplock.jobs WHERE id = %s", (r,)
        ).fetchone()[0]
    assert 3500 < delay <= 3600
    assert job_row(dsn, d, "attempt, max_attempts") == (1, 20)


def test_timeout_fails_the_attempt(app, dsn):
    @app.task(name="slow", timeout=0.2, max_attempts=1)
    async def slow() -> None:
        await asyncio.sleep(30)

    job_id = slow.enqueue()

    async def body(worker: Worker) -> None:
        await async_wait_until(finished(dsn, job_id, "failed"))

    run_worker(app, body)
    (last_error,) = job_row(dsn, job_id, "last_error")
    assert last_error["error"] == "TimeoutError: timed out after 0.2 s"


def test_queue_defaults_time_out_and_retry_jobs_without_their_own(app, dsn):
    app.set_queue_defaults("slow", retry_policy=RetryPolicy.fixed(600), timeout=0.2)

    @app.task(name="stuck", queue="slow")
    async def stuck() -> None:
        await asyncio.sleep(30)

    job_id = stuck.enqueue()

    async def body(worker: Worker) -> None:
        await async_wait_until(finished(dsn, job_id, "retrying"))

    run_worker(app, body, queues=["slow"])
    (last_error,) = job_row(dsn, job_id, "last_error")
    assert last_error["error"] == "TimeoutError: timed out after 0.2 s"
    with psycopg.connect(dsn) as c:
        delay = c.execute(
            "SELECT extract(epoch FROM run_at - now()) FROM skiplock.jobs WHERE id = %s", (job_id,)
        ).fetchone()[0]
    assert 590 < delay <= 600


def test_cancel_running_async_job(app, dsn):
    started = threading.Event()
    saw_cancel = threading.Event()

    @app.task(name="forever")
    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            saw_cancel.set()
            raise

    job_id = forever.enqueue()

    async def body(worker: Worker) -> None:
        await async_wait_until(started.is_set)
        assert await app.cancel_job_async(job_id) == "running"
        await async_wait_until(finished(dsn, job_id, "cancelled"))

    run_worker(app, body)
    assert saw_cancel.is_set()


def test_cancel_running_sync_job_sets_its_signal(app, dsn):
    started = threading.Event()
    saw_signal = threading.Event()  # set by the handler itself: the worker cannot fake it

    @app.task(name="polling")
    def polling(ctx: skiplock.JobContext) -> None:
        started.set()
        if ctx.cancelled.wait(30):
            saw_signal.set()

    job_id = polling.enqueue()

    async def body(worker: Worker) -> None:
        await async_wait_until(started.is_set)
        await app.cancel_job_async(job_id)
        await async_wait_until(finished(dsn, job_id, "cancelled"))
        # the status alone comes from the cancel request; the thread must have been told
        await async_wait_until(saw_signal.is_set)

    run_worker(app, body)


def test_timeout_sets_a_sync_handlers_signal(app, dsn):
    saw_signal = threading.Event()  # set by the handler itself: the worker cannot fake it

    @app.task(name="polling", timeout=0.2, max_attempts=1)
    def polling(ctx: skiplock.JobContext) -> None:
        if ctx.cancelled.wait(30):
            saw_signal.set()

    job_id = polling.enqueue()

    async def body(worker: Worker) -> None:
        await async_wait_until(finished(dsn, job_id, "failed"))
        # a thread cannot be stopped: the handler must have been told that its time is up
        await async_wait_until(saw_signal.is_set)

    run_worker(app, body)


def test_cancel_reaches_the_worker_through_the_heartbeat_without_listener(app, dsn):
    started = threading.Event()

    @app.task(name="forever")
    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    job_id = forever.enqueue()

    async def body(worker: Worker) -> None:
        await async_wait_until(started.is_set)
        await app.cancel_job_async(job_id)
        await worker.heartbeat_once()
        await async_wait_until(finished(dsn, job_id, "cancelled"))

    run_worker(app, body, listen=False)


def test_lost_lease_stops_the_handler_and_writes_nothing(app, dsn):
    started = threading.Event()
    stopped = threading.Event()

    @app.task(name="forever")
    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            stopped.set()

    job_id = forever.enqueue()

    async def body(worker: Worker) -> None:
        await async_wait_until(started.is_set)
        # Another party took the job over: rescue after a (simulated) expiry.
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("SELECT skiplock.rescue_expired_jobs(p_now => now() + interval '1 hour')")
        await worker.heartbeat_once()
        await async_wait_until(stopped.is_set)
        assert worker.running_job_ids == []

    run_worker(app, body, listen=False)
    # The rescue's outcome stands: retrying with the LeaseExpired error, not overwritten.
    status, last_error = job_row(dsn, job_id, "status, last_error")
    assert status == "retrying" and last_error["type"] == "LeaseExpired"


def test_plain_insert_wakes_an_idle_worker_through_notify(app, dsn):
    @app.task(name="ping")
    async def ping() -> str:
        return "pong"

    async def body(worker: Worker) -> None:
        assert worker.listener is not None
        await asyncio.wait_for(worker.listener.connected.wait(), 10)
        await asyncio.sleep(0.2)  # let the worker go idle on its (long) poll wait
        with psycopg.connect(dsn, autocommit=True) as c:
            job_id = c.execute(
                "INSERT INTO skiplock.jobs (task, args) VALUES ('ping', '{}') RETURNING id"
            ).fetchone()[0]
        # Far below the 60 s poll interval: only the NOTIFY can have woken it.
        await async_wait_until(finished(dsn, job_id), timeout=10)

    run_worker(app, body, poll_interval=60)


def test_listener_reconnects_after_its_backend_is_terminated(app, dsn):
    @app.task(name="ping")
    async def ping() -> str:
        return "pong"

    async def body(worker: Worker) -> None:
        listener = worker.listener
        assert listener is not None
        await asyncio.wait_for(listener.connected.wait(), 10)
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid()"
                " AND datname = current_database()"
            )
        await async_wait_until(lambda: listener.reconnects >= 1, timeout=15)
        await asyncio.wait_for(listener.connected.wait(), 10)
        assert await listener.probe_once()
        job_id = await ping.enqueue_async()
        await async_wait_until(finished(dsn, job_id), timeout=10)

    run_worker(app, body, poll_interval=60)


def test_listener_gives_up_on_a_server_that_never_answers_and_tries_again():
    """A server gone silent while the listener connects must not hold it: the probe only
    watches a connection that is up, so the connect-and-LISTEN step is bounded itself."""
    accepted: list[socket.socket] = []
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    port = server.getsockname()[1]

    def accept_and_stay_silent() -> None:
        while server.fileno() != -1:
            with contextlib.suppress(OSError):
                accepted.append(server.accept()[0])

    threading.Thread(target=accept_and_stay_silent, daemon=True).start()
    listener = Listener(
        f"host=127.0.0.1 port={port} user=x dbname=x sslmode=disable",
        ["skiplock_jobs"],
        lambda channel, payload: None,
        probe_channel="probe",
        probe_pool=None,  # type: ignore[arg-type]  # run() never probes
        probe_timeout=0.3,
    )

    async def body() -> None:
        task = asyncio.create_task(listener.run())
        try:
            await async_wait_until(lambda: len(accepted) >= 2, timeout=15)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(body())
    finally:
        server.close()
        for conn in accepted:
            conn.close()
    assert not listener.connected.is_set()


def test_graceful_stop_releases_jobs_past_the_grace_period(app, dsn):
    started = threading.Event()

    @app.task(name="long")
    async def long() -> None:
        started.set()
        await asyncio.sleep(60)

    @app.task(name="short")
    async def short() -> str:
        await asyncio.sleep(0.3)
        return "done"

    long_id = long.enqueue()
    short_ids = [short.enqueue() for _ in range(3)]

    async def body(worker: Worker) -> None:
        await async_wait_until(lambda: started.is_set() and len(worker.running_job_ids) == 4)

    run_worker(app, body, shutdown_grace=1.0)
    assert all(status_of(dsn, i) == "succeeded" for i in short_ids)
    # Released, not failed: ready again at once, the attempt not counted.
    assert job_row(dsn, long_id, "status, attempt, worker_id") == ("queued", 0, None)


def test_middleware_and_hooks_see_every_job(app, dsn):
    seen: list[tuple[str, int]] = []

    @app.add_middleware
    async def record(ctx: skiplock.JobContext, call_next: Any) -> Any:
        seen.append(("before", ctx.id))
        result = await call_next()
        seen.append(("after", ctx.id))
        return result

    @app.on("succeeded")
    def on_success(event: str, ctx: Any, info: Any) -> None:
        seen.append((event, info["job_id"]))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    job_id = noop.enqueue()

    async def body(worker: Worker) -> None:
        await async_wait_until(lambda: ("succeeded", job_id) in seen)

    run_worker(app, body)
    assert seen == [("before", job_id), ("after", job_id), ("succeeded", job_id)]


def test_result_that_is_not_json_fails_the_attempt_cleanly(app, dsn):
    @app.task(name="bad_result", max_attempts=1)
    async def bad_result() -> Any:
        return {"value": float("nan")}

    @app.task(name="good")
    async def good() -> int:
        return 1

    bad = bad_result.enqueue()
    ok = good.enqueue()

    async def body(worker: Worker) -> None:
        await async_wait_until(finished(dsn, bad, "failed"))
        await async_wait_until(finished(dsn, ok))

    run_worker(app, body)
    (last_error,) = job_row(dsn, bad, "last_error")
    assert "not valid JSON" in last_error["error"]


def test_a_completer_falling_behind_pauses_claims_but_never_stalls_them(app, dsn):
    @app.task(name="noop")
    async def noop() -> None:
        return None

    ids = app.enqueue_many([{"task": "noop"}] * 300)

    async def body(worker: Worker) -> None:
        # Saturate at a single unwritten outcome: the fetch loop must wait for the
        # completer to drain and then claim again, even with no job running.
        assert worker._completer is not None
        worker._completer.max_pending = 1
        await async_wait_until(lambda: worker.processed >= len(ids), timeout=60)

    run_worker(app, body, concurrency=20)
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM skiplock.job_history").fetchone()[0] == 300


def test_only_the_claim_session_commits_without_waiting_for_the_flush(app, dsn):
    # Claims may be lost in a server crash (the jobs stay queued and run again); every
    # other write of the worker, its completions first, must stay durable.
    @app.task(name="noop")
    async def noop() -> None:
        return None

    job_id = noop.enqueue()
    settings: dict[str, str] = {}

    async def body(worker: Worker) -> None:
        await async_wait_until(lambda: status_of(dsn, job_id) == "succeeded", timeout=30)
        assert worker._claim_conn is not None
        cursor = await worker._claim_conn.execute("SHOW synchronous_commit")
        settings["claim"] = (await cursor.fetchone())[0]
        assert worker._pool is not None
        async with worker._pool.connection() as conn:
            cursor = await conn.execute("SHOW synchronous_commit")
            settings["pool"] = (await cursor.fetchone())[0]

    run_worker(app, body)
    assert settings == {"claim": "off", "pool": "on"}


def test_claim_jobs_plans_once_in_its_own_settings(app, dsn):
    # Generic plans without seq scans for claim_jobs, from its own SET clause (so behind
    # a transaction-mode pooler too); no session of the worker changes its planner
    # settings (the batch functions need per-call plans).
    @app.task(name="noop")
    async def noop() -> None:
        return None

    job_id = noop.enqueue()
    query = "SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan')"
    settings: dict[str, tuple[str, str]] = {}

    async def body(worker: Worker) -> None:
        await async_wait_until(lambda: status_of(dsn, job_id) == "succeeded", timeout=30)
        assert worker._claim_conn is not None
        cursor = await worker._claim_conn.execute(query)
        settings["claim"] = await cursor.fetchone()
        assert worker._pool is not None
        async with worker._pool.connection() as conn:
            cursor = await conn.execute(query)
            settings["pool"] = await cursor.fetchone()

    run_worker(app, body)
    assert settings == {"claim": ("auto", "on"), "pool": ("auto", "on")}
    with psycopg.connect(dsn) as conn:
        (config,) = conn.execute(
            "SELECT proconfig FROM pg_proc WHERE oid = 'skiplock.claim_jobs'::regproc"
        ).fetchone()
    assert {"plan_cache_mode=force_generic_plan", "enable_seqscan=off"} <= set(config)


def test_every_worker_connection_notices_a_silent_database(app, dsn):
    # keepalives and a send timeout of about one lease, unless the DSN sets its own
    assert "tcp_user_timeout" not in dsn
    app.dsn = f"{dsn} keepalives_count=5"
    seen: dict[str, dict[str, str]] = {}

    async def body(worker: Worker) -> None:
        await async_wait_until(lambda: worker._claim_conn is not None, timeout=30)
        assert worker._claim_conn is not None and worker._pool is not None
        assert worker.listener is not None
        await asyncio.wait_for(worker.listener.connected.wait(), 30)
        seen["claim"] = worker._claim_conn.info.get_parameters()
        assert worker.listener._conn is not None
        seen["listen"] = worker.listener._conn.info.get_parameters()
        async with worker._pool.connection() as conn:
            seen["pool"] = conn.info.get_parameters()

    run_worker(app, body, lease=6)
    for name, params in seen.items():
        assert params.get("tcp_user_timeout") == "6000", name
        assert params.get("keepalives_idle") == "2", name
        assert params.get("keepalives_count") == "5", name  # the DSN's own wins
