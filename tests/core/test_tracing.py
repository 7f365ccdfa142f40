"""OpenTelemetry: trace context written at enqueue, restored around the run, checked with
the SDK's in-memory exporter across real worker runs against a real database."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.testclient import TestClient

import skiplock
from conftest import async_wait_until
from skiplock import tracing
from skiplock.api import create_app
from skiplock.tracing import TRACE_META_KEY
from skiplock.worker import Worker


class _WhileRecording(SimpleSpanProcessor):
    """Keeps spans only during a test of this module: the global provider outlives it,
    and the tests that run after it must not fill the exporter."""

    recording = False

    def on_end(self, span: ReadableSpan) -> None:
        if self.recording:
            super().on_end(span)


_EXPORTER = InMemorySpanExporter()
_PROCESSOR = _WhileRecording(_EXPORTER)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    # The global provider can be set once per process: the first test sets it, and
    # skiplock, which may have seen none in an earlier test, looks again now.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(_PROCESSOR)
        trace.set_tracer_provider(provider)
        monkeypatch.setattr(tracing, "_look_again_at", 0.0)
    _EXPORTER.clear()
    _PROCESSOR.recording = True
    yield _EXPORTER
    _PROCESSOR.recording = False
    _EXPORTER.clear()


def run_jobs(app: skiplock.App) -> int:
    """Claim and run one batch in-process; returns how many jobs ran."""

    async def main() -> int:
        worker = Worker(app, listen=False, concurrency=10, queues=("default", "reports"))
        try:
            return await worker.run_once()
        finally:
            await worker.close()

    return asyncio.run(main())


def meta_of(conn: psycopg.Connection, job_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT meta FROM skiplock.all_jobs WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row[0]


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


def one(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    (span,) = named(exporter, name)
    return span


def test_the_run_of_a_job_enqueued_in_a_span_is_its_child(app, conn, spans):
    seen: list[trace.SpanContext] = []

    @app.task(name="reports/build", queue="reports")
    def build(n: int) -> int:
        # a sync handler, run in a thread: the run span is current there too
        seen.append(trace.get_current_span().get_span_context())
        return n

    with trace.get_tracer("test").start_as_current_span("POST /reports") as request:
        job_id = build.enqueue(n=3)

    carrier = meta_of(conn, job_id)[TRACE_META_KEY]
    assert carrier["traceparent"].startswith("00-")
    assert run_jobs(app) == 1

    enqueue = one(spans, "skiplock enqueue reports/build")
    run = one(spans, "skiplock run reports/build")
    trace_id = request.get_span_context().trace_id
    assert enqueue.kind is SpanKind.PRODUCER and run.kind is SpanKind.CONSUMER
    assert enqueue.context.trace_id == run.context.trace_id == trace_id
    assert enqueue.parent is not None
    assert enqueue.parent.span_id == request.get_span_context().span_id
    assert run.parent is not None and run.parent.span_id == enqueue.context.span_id
    assert seen == [run.context]
    assert enqueue.attributes["messaging.system"] == "skiplock"
    assert enqueue.attributes["messaging.destination.name"] == "reports"
    assert enqueue.attributes["messaging.message.id"] == str(job_id)
    assert dict(run.attributes) == {
        "messaging.system": "skiplock",
        "messaging.destination.name": "reports",
        "messaging.message.id": str(job_id),
        "skiplock.job.attempt": 1,
        "skiplock.job.outcome": "succeeded",
    }
    assert run.status.status_code is StatusCode.UNSET


def test_async_enqueue_and_async_handler(app, spans):
    seen: list[trace.SpanContext] = []

    @app.task(name="ping")
    async def ping() -> None:
        seen.append(trace.get_current_span().get_span_context())

    async def produce() -> int:
        with trace.get_tracer("test").start_as_current_span("request"):
            return await app.enqueue_async("ping")

    asyncio.run(produce())
    assert run_jobs(app) == 1
    enqueue, run = one(spans, "skiplock enqueue ping"), one(spans, "skiplock run ping")
    assert run.parent is not None and run.parent.span_id == enqueue.context.span_id
    assert seen == [run.context]


def test_a_failing_handler_records_its_exception(app, spans):
    @app.task(name="broken", max_attempts=1)
    def broken() -> None:
        raise ValueError("no such report")

    with trace.get_tracer("test").start_as_current_span("request"):
        broken.enqueue()
    run_jobs(app)

    run = one(spans, "skiplock run broken")
    assert run.status.status_code is StatusCode.ERROR
    assert run.status.description == "ValueError: no such report"
    assert run.attributes["skiplock.job.outcome"] == "failed"
    (event,) = run.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "no such report"


def test_timeout_retry_and_discard_are_marked(app, spans):
    @app.task(name="slow", timeout=0.05, max_attempts=1)
    async def slow() -> None:
        await asyncio.sleep(30)

    @app.task(name="later")
    def later() -> None:
        raise skiplock.Retry(delay=60)

    @app.task(name="hopeless")
    def hopeless() -> None:
        raise skiplock.Discard("bad input")

    for task in (slow, later, hopeless):
        task.enqueue()
    assert run_jobs(app) == 3

    outcomes = {
        name: (one(spans, f"skiplock run {name}").attributes["skiplock.job.outcome"])
        for name in ("slow", "later", "hopeless")
    }
    assert outcomes == {"slow": "timeout", "later": "retry", "hopeless": "discarded"}
    slow_run = one(spans, "skiplock run slow")
    assert slow_run.status.status_code is StatusCode.ERROR
    assert slow_run.events[0].attributes["exception.type"] == "TimeoutError"


def test_a_cancelled_run_is_marked(app, dsn, spans):
    started = threading.Event()

    @app.task(name="forever")
    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    job_id = forever.enqueue()

    async def main() -> None:
        worker = Worker(app, poll_interval=0.05)
        runner = asyncio.create_task(worker.run())
        try:
            await async_wait_until(started.is_set)
            await app.cancel_job_async(job_id)
            await async_wait_until(lambda: named(spans, "skiplock run forever"))
        finally:
            worker.stop()
            await asyncio.wait_for(runner, 30)

    asyncio.run(main())
    run = one(spans, "skiplock run forever")
    assert run.attributes["skiplock.job.outcome"] == "cancelled"
    assert app.get_job(job_id).status == "cancelled"


def test_without_a_current_span_nothing_is_written_and_the_run_is_a_root(app, conn, spans):
    @app.task(name="plain")
    def plain() -> str:
        return "ran"

    job_id = plain.enqueue()
    ids = app.enqueue_many([{"task": "plain"}, {"task": "plain"}])
    assert TRACE_META_KEY not in meta_of(conn, job_id)
    assert all(TRACE_META_KEY not in meta_of(conn, i) for i in ids)
    assert run_jobs(app) == 3
    assert named(spans, "skiplock enqueue plain") == []
    runs = named(spans, "skiplock run plain")
    assert len(runs) == 3 and all(run.parent is None for run in runs)
    assert app.get_job(job_id).result == "ran"


def test_a_bulk_enqueue_is_one_producer_span_and_keeps_the_copy_path(app, conn, spans):
    @app.task(name="bulk")
    def bulk(i: int) -> int:
        return i

    with trace.get_tracer("test").start_as_current_span("import"):
        ids = app.enqueue_many([{"task": "bulk", "args": {"i": i}} for i in range(5)])
    # one COPY: the shared meta (with the trace) still lets every row take it
    assert len({str(meta_of(conn, i)[TRACE_META_KEY]) for i in ids}) == 1
    assert run_jobs(app) == 5

    enqueue = one(spans, "skiplock enqueue bulk")
    assert enqueue.attributes["messaging.batch.message_count"] == 5
    runs = named(spans, "skiplock run bulk")
    assert len(runs) == 5
    assert all(r.parent is not None and r.parent.span_id == enqueue.context.span_id for r in runs)


def test_caller_meta_is_kept_and_a_caller_trace_key_wins(app, conn, spans):
    given = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with trace.get_tracer("test").start_as_current_span("request"):
        mine = app.enqueue("t", meta={"owner": "ops"})
        forwarded = app.enqueue("t", meta={TRACE_META_KEY: given})
    meta = meta_of(conn, mine)
    assert meta["owner"] == "ops" and "traceparent" in meta[TRACE_META_KEY]
    assert meta_of(conn, forwarded)[TRACE_META_KEY] == given


def test_workflow_steps_carry_the_trace(app, spans):
    @app.task(name="step")
    def step() -> int:
        return 1

    with trace.get_tracer("test").start_as_current_span("request") as request:
        app.chain(step.step(), step.step())
    trace_id = request.get_span_context().trace_id
    for _ in range(2):  # the second step waits for the first
        run_jobs(app)
    enqueue = one(spans, "skiplock enqueue step")
    runs = named(spans, "skiplock run step")
    assert len(runs) == 2
    assert all(r.context.trace_id == trace_id for r in runs)
    assert all(r.parent is not None and r.parent.span_id == enqueue.context.span_id for r in runs)


def test_a_raw_sql_job_with_a_hand_written_traceparent_is_its_child(app, conn, spans):
    @app.task(name="from_sql")
    def from_sql() -> None:
        pass

    conn.execute(
        "SELECT skiplock.enqueue('from_sql', '{}', meta => %s::jsonb)",
        ('{"trace": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}',),
    )
    assert run_jobs(app) == 1
    run = one(spans, "skiplock run from_sql")
    assert run.context.trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert run.parent is not None and run.parent.span_id == 0xB7AD6B7169203331
    assert run.parent.is_remote


def test_a_malformed_trace_key_is_ignored(app, conn, spans):
    @app.task(name="odd")
    def odd() -> str:
        return "ran"

    conn.execute(
        "INSERT INTO skiplock.jobs (task, meta) VALUES"
        " ('odd', '{\"trace\": \"not an object\"}'), ('odd', '{\"trace\": {\"traceparent\": 1}}')"
    )
    assert run_jobs(app) == 2
    runs = named(spans, "skiplock run odd")
    assert len(runs) == 2 and all(r.parent is None for r in runs)
    assert all(r.attributes["skiplock.job.outcome"] == "succeeded" for r in runs)


def test_an_api_callers_traceparent_parents_the_job(app, dsn, conn, spans):
    @app.task(name="api_job")
    def api_job() -> None:
        pass

    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    with TestClient(create_app(skiplock.App(dsn))) as client:
        one_job = client.post(
            "/api/v1/jobs",
            json={"task": "api_job", "allow_unregistered_task": True},
            headers={"traceparent": parent},
        )
        bulk = client.post(
            "/api/v1/jobs",
            json=[{"task": "api_job", "allow_unregistered_task": True}] * 2,
            headers={"traceparent": parent},
        )
        untraced = client.post(
            "/api/v1/jobs",
            json={"task": "api_job", "allow_unregistered_task": True},
            headers={"traceparent": "00-not-a-trace-01"},
        )
    job_id = one_job.json()["id"]
    assert TRACE_META_KEY not in meta_of(conn, untraced.json()["id"])
    assert run_jobs(app) == 4

    enqueues = named(spans, "skiplock enqueue api_job")
    assert len(enqueues) == 2
    for enqueue in enqueues:
        assert enqueue.context.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
        assert enqueue.parent is not None and enqueue.parent.span_id == 0x00F067AA0BA902B7
    (single,) = [e for e in enqueues if e.attributes.get("messaging.message.id") == str(job_id)]
    traced_runs = [r for r in named(spans, "skiplock run api_job") if r.parent is not None]
    assert len(traced_runs) == 3
    assert {r.parent.span_id for r in traced_runs} == {e.context.span_id for e in enqueues}
    assert bulk.status_code == 201 and single.kind is SpanKind.PRODUCER


def run_python(code: str, dsn: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), dsn],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


# A worker that enqueues and runs one job, reporting the job's meta and result.
_ENQUEUE_AND_RUN = """
    import asyncio, sys
    import skiplock
    from skiplock import tracing
    from skiplock.worker import Worker

    app = skiplock.App(sys.argv[1])

    @app.task(name="hello")
    def hello() -> str:
        return "ran"

    def produce():
        PRODUCE

    job_id = produce()

    async def main():
        worker = Worker(app, listen=False)
        try:
            await worker.run_once()
        finally:
            await worker.close()

    asyncio.run(main())
    job = app.get_job(job_id)
    print(sorted(job.meta), job.result, tracing._otel is None)
"""


def test_without_opentelemetry_installed_jobs_run_and_no_meta_is_written(dsn):
    blocker = """
    import importlib.abc, sys
    class NoOtel(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "opentelemetry":
                raise ImportError(f"blocked {name}")
    sys.meta_path.insert(0, NoOtel())
    """
    code = textwrap.dedent(blocker) + textwrap.dedent(
        _ENQUEUE_AND_RUN.replace("PRODUCE", "return hello.enqueue()")
    )
    assert run_python(code, dsn) == "[] ran True"


def test_with_the_api_but_no_tracer_configured_nothing_is_written(dsn):
    produce = """from opentelemetry import trace
        with trace.get_tracer("t").start_as_current_span("request"):
            return hello.enqueue()"""
    code = _ENQUEUE_AND_RUN.replace("PRODUCE", produce)
    assert run_python(code, dsn) == "[] ran False"
