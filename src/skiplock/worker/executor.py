"""Runs one job's handler through the middleware, with its timeout, and says how it
went. Never touches the database: the completer writes what this returns."""

from __future__ import annotations

import asyncio
import threading
import time
import traceback
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from skiplock.app import App
from skiplock.context import JobContext
from skiplock.errors import Discard, Retry, UnknownTask
from skiplock.jobs import ClaimedJob, JSONError, encode_json, undecodable_error
from skiplock.logs import current_job
from skiplock.tracing import RunSpan
from skiplock.validation import rejected_args
from skiplock.worker.deadline import within

OutcomeKind = Literal["succeeded", "failed", "released"]


@dataclass
class Outcome:
    """What happened to one attempt: the JSON to record and how long it took."""

    job: ClaimedJob
    ctx: JobContext
    kind: OutcomeKind
    payload_json: str  # the result (succeeded) or the error object (failed)
    duration: float
    # released: seconds until the job is due again (None: at once)
    delay: float | None = None

    @property
    def error(self) -> str:
        return self.payload_json if self.kind == "failed" else ""


class JobThreads(ThreadPoolExecutor):
    """The thread pool of sync handlers, knowing which threads outlived their job.

    Python cannot stop a thread: a sync handler that ignores `ctx.cancelled` keeps its
    thread after its attempt timed out. Such a thread still holds one of the pool's
    `concurrency` threads, so the worker must not count its slot as free, or it would
    claim jobs that then wait behind the stuck thread while their leases are renewed.
    """

    def __init__(self, max_workers: int, thread_name_prefix: str = "") -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=thread_name_prefix)
        self._owners: dict[Future[Any], asyncio.Task[Any] | None] = {}
        self._lock = threading.Lock()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        try:
            owner = asyncio.current_task()  # the job's task when called from the loop
        except RuntimeError:
            owner = None
        with self._lock:
            self._owners[future] = owner
        future.add_done_callback(self._finished)
        return future

    def _finished(self, future: Future[Any]) -> None:
        with self._lock:
            self._owners.pop(future, None)

    def stuck(self) -> int:
        """Threads still running a handler whose job is over (timed out, cancelled)."""
        with self._lock:
            return sum(1 for owner in self._owners.values() if owner is not None and owner.done())


def error_json(exc: BaseException, *, with_traceback: bool = True, **extra: Any) -> str:
    """The error object fail_jobs records: {"error", "type", "traceback", ...}."""
    detail: dict[str, Any] = {"error": f"{type(exc).__name__}: {exc}", "type": type(exc).__name__}
    if with_traceback:
        detail["traceback"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    detail.update(extra)
    try:
        return encode_json(detail, what="error")
    except JSONError:
        return encode_json(
            {"error": repr(str(exc))[:2000], "type": type(exc).__name__, **extra}, what="error"
        )


async def execute(
    app: App, ctx: JobContext, threads: Executor | None, *, unknown_task_delay: float
) -> Outcome:
    """Run the job; CancelledError propagates (the caller knows why it cancelled).

    A job whose task this worker has no handler for is released, due again in
    `unknown_task_delay` seconds, its attempt not spent: a worker that serves the task
    may come up at any time.

    With opentelemetry installed the attempt runs inside a CONSUMER span (see tracing).
    Records logged meanwhile in this context, a sync handler's thread included, carry the
    job's id, task, queue and attempt, and go to the attempt's stored log (see
    logs.current_job, worker/job_logs.py)."""
    job = ctx.job
    token = current_job.set(ctx)
    try:
        span = RunSpan.start(job)
        if span is None:
            return await _execute(app, ctx, threads, None, unknown_task_delay)
        with span:
            return await _execute(app, ctx, threads, span, unknown_task_delay)
    finally:
        current_job.reset(token)


async def _execute(
    app: App,
    ctx: JobContext,
    threads: Executor | None,
    span: RunSpan | None,
    unknown_task_delay: float,
) -> Outcome:
    job = ctx.job
    started = time.perf_counter()

    def outcome(
        kind: OutcomeKind,
        payload: str,
        exc: BaseException | None = None,
        label: str = "failed",
        delay: float | None = None,
    ) -> Outcome:
        if span is not None:
            span.finish("succeeded" if kind == "succeeded" else label, exc)
        return Outcome(job, ctx, kind, payload, time.perf_counter() - started, delay)

    if (unreadable := undecodable_error(job)) is not None:
        return outcome("failed", unreadable)

    task = app.tasks.get(job.task) or app.builtin_tasks.get(job.task)
    if task is None:
        unknown = UnknownTask(f"no task named {job.task!r} is registered in this worker")
        return outcome("released", "null", unknown, "unknown_task", unknown_task_delay)

    if (invalid := rejected_args(task, job.args)) is not None:
        return outcome("failed", invalid, None, "invalid_args")

    async def call_handler() -> Any:
        return await task.run(ctx, job.args, threads)

    call = call_handler
    for middleware in reversed(app.middleware):
        call = _wrap(middleware, ctx, call)

    try:
        if job.timeout is not None:
            result = await within(job.timeout.total_seconds(), call)
        else:
            result = await call()
        return outcome("succeeded", encode_json(result, what="the result"))
    except Retry as exc:
        payload = error_json(exc, with_traceback=False, retry_in=exc.delay)
        return outcome("failed", payload, exc, "retry")
    except Discard as exc:
        return outcome("failed", error_json(exc, retry=False), exc, "discarded")
    except asyncio.TimeoutError as exc:
        error: BaseException = exc
        label = "failed"
        if job.timeout is not None and time.perf_counter() - started >= job.timeout.total_seconds():
            ctx.cancelled.set()
            error = TimeoutError(f"timed out after {job.timeout.total_seconds():g} s")
            label = "timeout"
        return outcome("failed", error_json(error), error, label)
    except Exception as exc:
        return outcome("failed", error_json(exc), exc)


def _wrap(middleware: Any, ctx: JobContext, call_next: Any) -> Any:
    async def wrapped() -> Any:
        return await middleware(ctx, call_next)

    return wrapped
