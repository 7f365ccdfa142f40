"""The app: registered tasks with their defaults, middleware and lifecycle hooks, and
the producer calls (enqueue, read, wait, cancel, retry) in sync and async form."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar, overload

import psycopg
import psycopg.errors
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from skiplock import store
from skiplock.config import connection_kwargs, resolve_dsn, resolve_listen_dsn, resolve_pooler
from skiplock.context import JobContext
from skiplock.errors import ConfigError, JobCancelled, JobFailed, JobNotFound, WorkflowNotFound
from skiplock.jobs import Job, encode_json
from skiplock.retry import RetryPolicy
from skiplock.schedules import ScheduleSpec
from skiplock.schedules import validate as validate_schedule
from skiplock.store import Call, EnqueueRequest
from skiplock.tracing import EnqueueSpan
from skiplock.validation import Validator, check_args, compile_schema
from skiplock.webhooks import WEBHOOK_TASK, check_callback_url, deliver_webhook
from skiplock.workflows import Step, Workflow, chain, group, named
from skiplock.workflows import document as workflow_document

log = logging.getLogger("skiplock")
T = TypeVar("T")
Handler = Callable[..., Any]
CallNext = Callable[[], Awaitable[Any]]
Middleware = Callable[[JobContext, CallNext], Awaitable[Any]]
Hook = Callable[[str, JobContext | None, Mapping[str, Any]], Any]

_PLAIN_SPEC = frozenset({"task", "args"})
HOOK_EVENTS = ("enqueued", "started", "succeeded", "retrying", "failed", "cancelled")
FINISHED_CHANNEL = "skiplock_finished"
# Workflows deleted per statement by App.prune_workflows.
PRUNE_BATCH = 1000


@dataclass(frozen=True)
class TaskOptions:
    """Per-job settings; None means "the task's default", then the database default."""

    queue: str | None = None
    priority: int | None = None
    run_at: datetime | None = None
    delay: timedelta | float | None = None
    max_attempts: int | None = None
    retry: RetryPolicy | None = None
    timeout: timedelta | float | None = None
    tags: Sequence[str] = ()
    meta: Mapping[str, Any] | None = None
    # At most one job with this key at a time; scope "queued", "active" (default) or,
    # with unique_for, that long after the job finishes. See skiplock.enqueue.
    unique_key: str | None = None
    unique_scope: str | None = None
    unique_for: timedelta | float | None = None
    # A deadline: not started by then, the job ends `expired` instead.
    expires_at: datetime | None = None
    expires_in: timedelta | float | None = None
    # Jobs that must succeed first; if one does not: "fail" (default), "cancel" or "run".
    depends_on: Sequence[int] = ()
    on_dependency_failure: str | None = None
    # Where the outcome is POSTed when the job finishes (see skiplock.webhooks).
    callback_url: str | None = None

    def merged(self, override: TaskOptions) -> TaskOptions:
        changes = {k: v for k, v in override.__dict__.items() if v not in (None, ())}
        return replace(self, **changes) if changes else self

    def request(self, task: str, args: Mapping[str, Any] | None) -> EnqueueRequest:
        return EnqueueRequest(
            task=task,
            args_json=encode_json(dict(args or {}), what="args"),
            queue=self.queue,
            priority=self.priority,
            run_at=self.run_at,
            delay=_seconds(self.delay, "delay"),
            max_attempts=self.max_attempts,
            retry_policy=self.retry.to_json() if self.retry else None,
            timeout=_seconds(self.timeout, "timeout"),
            tags=tuple(self.tags),
            meta=self.meta,
            unique_key=self.unique_key,
            unique_scope=self.unique_scope,
            unique_for=_seconds(self.unique_for, "unique_for"),
            expires_at=self.expires_at,
            expires_in=_seconds(self.expires_in, "expires_in"),
            depends_on=tuple(self.depends_on),
            on_dependency_failure=self.on_dependency_failure,
            callback_url=(
                None if self.callback_url is None else check_callback_url(self.callback_url)
            ),
        )


def _seconds(value: timedelta | float | None, name: str) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if value < 0:
        raise ConfigError(f"{name} must be >= 0 seconds, got {value}")
    return timedelta(seconds=value)


class Task:
    """A registered handler with its defaults. Call it directly to run it inline.

    `schema` is the JSON Schema of its args (None: any object), compiled once into
    `validator`; `description` documents it in the task registry.
    """

    def __init__(
        self,
        app: App,
        fn: Handler,
        name: str,
        defaults: TaskOptions,
        *,
        schema: Mapping[str, Any] | bool | None = None,
        description: str | None = None,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.defaults = defaults
        self.schema = schema
        self.validator: Validator | None = (
            None if schema is None else compile_schema(schema, what=f"the schema of task {name}")
        )
        self.description = (inspect.getdoc(fn) or "") if description is None else description
        self.is_async = inspect.iscoroutinefunction(fn)
        self.wants_context = "ctx" in inspect.signature(fn).parameters
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def enqueue(self, conn: psycopg.Connection[Any] | None = None, **args: Any) -> int:
        """Enqueue this task with `args` as its JSON arguments; returns the job id."""
        return self.app.enqueue(self.name, args, conn=conn)

    async def enqueue_async(
        self, conn: psycopg.AsyncConnection[Any] | None = None, **args: Any
    ) -> int:
        return await self.app.enqueue_async(self.name, args, conn=conn)

    def step(self, **args: Any) -> Step:
        """This task as a workflow step with `args` as its arguments (see App.workflow,
        chain, group); use Step(...) for a name, after, result_arg or enqueue options."""
        return Step(self.name, args)

    async def run(self, ctx: JobContext, args: Mapping[str, Any], threads: Executor | None) -> Any:
        """Run the handler for one job: async on the loop, sync on the thread pool."""
        call_args = {"ctx": ctx, **args} if self.wants_context else dict(args)
        if self.is_async:
            return await self.fn(**call_args)
        loop = asyncio.get_running_loop()
        # In the job's context (as asyncio.to_thread does), so contextvars set around the
        # run, such as the current trace span, are seen by the handler's thread too.
        run_in_context = contextvars.copy_context().run
        return await loop.run_in_executor(
            threads, functools.partial(run_in_context, self.fn, **call_args)
        )


class App:
    """Tasks, middleware and hooks, and the producer API against one database.

    `dsn` follows the one resolution order: the argument, then SKIPLOCK_DSN, then
    DATABASE_URL. Producer calls accept `conn=` to join the caller's own transaction
    (rolled back → no job); without it they use a small pool and commit at once.

    `pooler="transaction"` (or SKIPLOCK_POOLER) says the DSN leads to a transaction-mode
    pooler such as PgBouncer: every connection skiplock opens then avoids what needs a
    session of its own (see docs/worker.md, "Connection poolers"). `listen_dsn` (or
    SKIPLOCK_LISTEN_DSN) is a direct DSN for LISTEN, which no such pooler carries.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool_timeout: float = 30.0,
        pooler: str | None = None,
        listen_dsn: str | None = None,
    ) -> None:
        self._dsn = dsn
        self._pooler = resolve_pooler(pooler) if pooler else None
        self._listen_dsn = listen_dsn
        # How long a producer call waits for a pooled connection before PoolTimeout.
        self.pool_timeout = pool_timeout
        self.tasks: dict[str, Task] = {}
        # Served by every worker of this app without registration (not published).
        self.builtin_tasks: dict[str, Task] = {
            WEBHOOK_TASK: Task(
                self,
                self._deliver_webhook,
                WEBHOOK_TASK,
                TaskOptions(),
                description="POST a finished job's outcome to its callback URL, signed.",
            )
        }
        # The HMAC key of webhook deliveries; None: SKIPLOCK_WEBHOOK_SECRET (see webhooks).
        self.webhook_secret: str | None = None
        self.middleware: list[Middleware] = []
        self.hooks: dict[str, list[Hook]] = {event: [] for event in HOOK_EVENTS}
        self.schedules: dict[str, ScheduleSpec] = {}
        self._pool: ConnectionPool | None = None
        self._async_pool: AsyncConnectionPool | None = None
        self._pool_lock = threading.Lock()

    def _deliver_webhook(
        self, ctx: JobContext, url: str, outcome: Mapping[str, Any]
    ) -> dict[str, Any]:
        return deliver_webhook(ctx, url, outcome, secret=self.webhook_secret)

    # ---- configuration ----------------------------------------------------------------

    @property
    def dsn(self) -> str:
        dsn = self._dsn or resolve_dsn()
        if not dsn:
            raise ConfigError(
                "no database configured: pass dsn=, or set SKIPLOCK_DSN or DATABASE_URL"
            )
        return dsn

    @dsn.setter
    def dsn(self, value: str) -> None:
        self._dsn = value

    @property
    def pooler(self) -> str:
        """ "transaction" when the DSN leads to a transaction-mode pooler, else "none"."""
        return self._pooler or resolve_pooler()

    @pooler.setter
    def pooler(self, value: str) -> None:
        self._pooler = resolve_pooler(value)

    @property
    def connection_kwargs(self) -> dict[str, Any]:
        """psycopg.connect's keyword arguments for this app's connections (autocommit)."""
        return connection_kwargs(self.pooler)

    @property
    def listen_dsn(self) -> str | None:
        """Where LISTEN goes: the listen DSN (argument, then SKIPLOCK_LISTEN_DSN), else the
        DSN itself, except through a transaction-mode pooler, where a LISTEN stays on a
        server connection that later serves others and hears nothing itself: None, poll."""
        given = self._listen_dsn or resolve_listen_dsn()
        if given:
            return given
        return None if self.pooler == "transaction" else self.dsn

    @listen_dsn.setter
    def listen_dsn(self, value: str | None) -> None:
        self._listen_dsn = value

    @overload
    def task(self, fn: Handler, /) -> Task: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
        tags: Sequence[str] = (),
        schema: Mapping[str, Any] | bool | None = None,
        description: str | None = None,
    ) -> Callable[[Handler], Task]: ...

    def task(
        self,
        fn: Handler | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
        tags: Sequence[str] = (),
        schema: Mapping[str, Any] | bool | None = None,
        description: str | None = None,
    ) -> Task | Callable[[Handler], Task]:
        """Register a handler: `@app.task` or `@app.task(queue="emails", timeout=30)`.

        The job's JSON args are passed as keyword arguments; a parameter named `ctx`
        receives the JobContext. Handlers may be `async def` or plain `def` (run in a
        thread). A job can run more than once (at-least-once): make handlers idempotent.

        `schema` (a JSON Schema) is checked against the args on enqueue, by the API and
        by the worker before the handler runs (a job whose args fail it is not retried:
        it goes to the dead letters). `description` (default: the docstring) and the
        schema are published to the task registry when a worker starts.
        """
        defaults = TaskOptions(
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            retry=retry,
            timeout=timeout,
            tags=tags,
        )

        def register(f: Handler) -> Task:
            task_name = name or f"{f.__module__}.{f.__qualname__}"
            if task_name in self.tasks:
                raise ConfigError(f"task {task_name!r} is already registered")
            task = Task(self, f, task_name, defaults, schema=schema, description=description)
            self.tasks[task_name] = task
            return task

        return register(fn) if fn is not None else register

    def periodic(
        self,
        cron: str,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        args: Mapping[str, Any] | None = None,
    ) -> Callable[[Task | Handler], Task]:
        """Run a task on a cron schedule: put `@app.periodic("0 3 * * *")` above
        `@app.task(...)` (a plain function is registered as a task with defaults).

        Workers write the schedule to the database when they start (replacing one of the
        same name), and any worker may fire it; each fire time is enqueued once.
        """
        validate_schedule(cron, timezone)
        args_json = encode_json(dict(args or {}), what="args")

        def register(target: Task | Handler) -> Task:
            task = target if isinstance(target, Task) else self.task(target)
            schedule_name = name or task.name
            if schedule_name in self.schedules:
                raise ConfigError(f"schedule {schedule_name!r} is already declared")
            self.schedules[schedule_name] = ScheduleSpec(
                name=schedule_name,
                cron=cron,
                task=task.name,
                args_json=args_json,
                queue=task.defaults.queue or "default",
                priority=task.defaults.priority or 0,
                timezone=timezone,
                max_attempts=task.defaults.max_attempts or 20,
            )
            return task

        return register

    def add_middleware(self, middleware: Middleware) -> Middleware:
        """Wrap every job execution: `async def mw(ctx, call_next): ... await call_next()`."""
        self.middleware.append(middleware)
        return middleware

    def on(self, event: str) -> Callable[[Hook], Hook]:
        """Register a hook `fn(event, ctx, info)` for one of HOOK_EVENTS (sync or async)."""
        if event not in HOOK_EVENTS:
            raise ConfigError(f"hook event must be one of {', '.join(HOOK_EVENTS)}, got {event!r}")

        def register(fn: Hook) -> Hook:
            self.hooks[event].append(fn)
            return fn

        return register

    async def emit(self, event: str, ctx: JobContext | None, info: Mapping[str, Any]) -> None:
        """Run the hooks of `event`; a failing hook is logged, never fatal."""
        for hook in self.hooks[event]:
            try:
                result = hook(event, ctx, info)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("hook %s for %s failed", getattr(hook, "__name__", hook), event)

    def _enqueued(self, requests: Sequence[EnqueueRequest], ids: Sequence[int]) -> None:
        """Run the `enqueued` hooks, which must be plain functions: they are called from
        sync and async producers alike, after the insert (not after the caller's commit)."""
        for hook in self.hooks["enqueued"]:
            for request, job_id in zip(requests, ids, strict=True):
                try:
                    hook(
                        "enqueued",
                        None,
                        {"job_id": job_id, "task": request.task, "queue": request.queue},
                    )
                except Exception:
                    log.exception("hook %s for enqueued failed", getattr(hook, "__name__", hook))

    def _sync_pool(self) -> ConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.dsn,
                    min_size=1,
                    max_size=4,
                    open=True,
                    timeout=self.pool_timeout,
                    kwargs=self.connection_kwargs,
                    configure=store.show_readable_json,
                )
            return self._pool

    async def async_pool(self) -> AsyncConnectionPool:
        """The app's async connection pool (autocommit), opened on first use."""
        if self._async_pool is None:
            pool = AsyncConnectionPool(
                self.dsn,
                min_size=1,
                max_size=4,
                open=False,
                timeout=self.pool_timeout,
                kwargs=self.connection_kwargs,
                configure=store.ashow_readable_json,
            )
            await pool.open()
            if self._async_pool is None:
                self._async_pool = pool
            else:  # another caller opened one while we awaited: keep theirs
                await pool.close()
        return self._async_pool

    def run(self, call: Call[T], conn: psycopg.Connection[Any] | None = None) -> T:
        """Run one store call on `conn` (joining its transaction) or on the app's pool."""
        if conn is not None:
            return call.run(conn)
        with self._sync_pool().connection() as pooled:
            return call.run(pooled)

    async def arun(self, call: Call[T], conn: psycopg.AsyncConnection[Any] | None = None) -> T:
        if conn is not None:
            return await call.arun(conn)
        async with (await self.async_pool()).connection() as pooled:
            return await call.arun(pooled)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def aclose(self) -> None:
        if self._async_pool is not None:
            await self._async_pool.close()
            self._async_pool = None

    # ---- producing ----------------------------------------------------------------------

    def _request(
        self, task: str, args: Mapping[str, Any] | None, options: TaskOptions
    ) -> EnqueueRequest:
        registered = self.tasks.get(task)
        if registered is None:
            return options.request(task, args)
        if registered.validator is not None:
            check_args(task, registered.validator, dict(args or {}))
        return registered.defaults.merged(options).request(task, args)

    def enqueue(
        self,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        conn: psycopg.Connection[Any] | None = None,
        **options: Any,
    ) -> int:
        """Enqueue one job and return its id. Options: queue, priority, run_at, delay,
        max_attempts, retry, timeout, tags, meta (unset ones take the task's defaults),
        unique_key / unique_scope / unique_for (when another job holds the key, no job
        is created and the holder's id is returned), expires_at / expires_in (a deadline:
        a job not started by then ends `expired`), depends_on / on_dependency_failure
        (the job waits until those jobs succeed; see skiplock.enqueue), and callback_url
        (its outcome is POSTed there, signed, when it finishes; see skiplock.webhooks)."""
        request = self._request(task, args, TaskOptions(**options))
        with EnqueueSpan([request]) as traced:
            job_id: int = self.run(store.enqueue(traced.requests[0]), conn)
            traced.done([job_id])
        self._enqueued([request], [job_id])
        return job_id

    async def enqueue_async(
        self,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        conn: psycopg.AsyncConnection[Any] | None = None,
        **options: Any,
    ) -> int:
        request = self._request(task, args, TaskOptions(**options))
        with EnqueueSpan([request]) as traced:
            job_id: int = await self.arun(store.enqueue(traced.requests[0]), conn)
            traced.done([job_id])
        self._enqueued([request], [job_id])
        return job_id

    def _requests(self, jobs: Iterable[Mapping[str, Any]]) -> list[EnqueueRequest]:
        requests = []
        # Jobs given as just {"task", "args"} (the usual bulk) share their task's
        # defaults: build those once per task, not once per job.
        plain: dict[str, EnqueueRequest] = {}
        for spec in jobs:
            if spec.keys() <= _PLAIN_SPEC and "task" in spec:
                task, args = spec["task"], spec.get("args")
                template = plain.get(task)
                if template is None:
                    template = plain[task] = self._request(task, None, TaskOptions())
                if args:
                    template = template.with_args(encode_json(dict(args), what="args"))
                requests.append(template)
                continue
            spec = dict(spec)
            for option in ("unique_key", "depends_on"):
                if spec.get(option):
                    raise ConfigError(f"enqueue_many does not take {option}; use enqueue")
            task = spec.pop("task")
            args = spec.pop("args", None)
            requests.append(self._request(task, args, TaskOptions(**spec)))
        return requests

    def enqueue_many(
        self, jobs: Iterable[Mapping[str, Any]], *, conn: psycopg.Connection[Any] | None = None
    ) -> list[int]:
        """Enqueue many jobs in one statement; each item is {"task", "args", **options}.
        Returns ids in input order; one bad job rejects them all."""
        requests = self._requests(jobs)
        with EnqueueSpan(requests) as traced:
            ids = self.run(store.enqueue_many(traced.requests), conn) if requests else []
            traced.done(ids)
        self._enqueued(requests, ids)
        return ids

    async def enqueue_many_async(
        self, jobs: Iterable[Mapping[str, Any]], *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> list[int]:
        requests = self._requests(jobs)
        with EnqueueSpan(requests) as traced:
            ids = await self.arun(store.enqueue_many(traced.requests), conn) if requests else []
            traced.done(ids)
        self._enqueued(requests, ids)
        return ids

    # ---- workflows ----------------------------------------------------------------------

    def _workflow_requests(self, steps: Sequence[Step]) -> tuple[list[Step], list[EnqueueRequest]]:
        """The named steps and their requests with each one's task defaults applied (in
        declaration order): the enqueue_workflow document and the `enqueued` hooks use them."""
        steps = named(steps)
        requests = [self._request(s.task, s.args, TaskOptions(**s.options)) for s in steps]
        return steps, requests

    def _workflow_enqueued(
        self, requests: list[EnqueueRequest], workflow_id: int, jobs: dict[str, int]
    ) -> WorkflowHandle:
        self._enqueued(requests, list(jobs.values()))
        return WorkflowHandle(self, workflow_id, jobs)

    def workflow(
        self,
        *steps: Step,
        name: str | None = None,
        meta: Mapping[str, Any] | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> WorkflowHandle:
        """Enqueue a graph of steps in one statement (one transaction; inside the
        caller's with `conn`) and return its handle. Steps refer to each other by name
        in `after`; the database checks the graph (unknown names, cycles, bad fields)
        and writes nothing when it is wrong. See skiplock.enqueue_workflow."""
        named_steps, requests = self._workflow_requests(steps)
        with EnqueueSpan(requests) as traced:
            document = _workflow_document(named_steps, traced.requests, name, meta)
            if conn is not None:
                workflow_id, jobs = _enqueued_workflow(conn, document)
            else:
                with self._sync_pool().connection() as pooled:
                    workflow_id, jobs = _enqueued_workflow(pooled, document)
        return self._workflow_enqueued(requests, workflow_id, jobs)

    async def workflow_async(
        self,
        *steps: Step,
        name: str | None = None,
        meta: Mapping[str, Any] | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> WorkflowHandle:
        named_steps, requests = self._workflow_requests(steps)
        with EnqueueSpan(requests) as traced:
            document = _workflow_document(named_steps, traced.requests, name, meta)
            if conn is not None:
                workflow_id, jobs = await _enqueued_workflow_async(conn, document)
            else:
                async with (await self.async_pool()).connection() as pooled:
                    workflow_id, jobs = await _enqueued_workflow_async(pooled, document)
        return self._workflow_enqueued(requests, workflow_id, jobs)

    def chain(
        self,
        *steps: Step,
        result_arg: str | None = "previous",
        name: str | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> WorkflowHandle:
        """Run steps one after another, each receiving the previous step's result as the
        keyword argument `result_arg` (None: not passed). See workflows.chain."""
        return self.workflow(*chain(*steps, result_arg=result_arg), name=name, conn=conn)

    def group(
        self,
        *steps: Step,
        then: Step | None = None,
        results_arg: str = "results",
        name: str | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> WorkflowHandle:
        """Run steps in parallel, then (if given) the callback `then` with the list of
        their results, in order, as the keyword argument `results_arg`."""
        return self.workflow(
            *group(*steps, then=then, results_arg=results_arg), name=name, conn=conn
        )

    def get_workflow(
        self, workflow_id: int, *, conn: psycopg.Connection[Any] | None = None
    ) -> Workflow:
        """The workflow's state, counts and steps; WorkflowNotFound for an unknown id."""
        if conn is not None:
            return _read_workflow(conn, workflow_id)
        with self._sync_pool().connection() as pooled:
            return _read_workflow(pooled, workflow_id)

    def wait_for_workflow(self, workflow_id: int, *, timeout: float | None = None) -> Workflow:
        """Block until every step of the workflow has finished and return it (check
        `state`: succeeded, failed or cancelled; `results` maps steps to results).

        Listens on skiplock_finished like wait_for_result; TimeoutError after `timeout`
        seconds, WorkflowNotFound for an unknown id.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        listen_dsn = self.listen_dsn
        with psycopg.connect(listen_dsn or self.dsn, **self.connection_kwargs) as conn:
            if listen_dsn:
                conn.execute(f"LISTEN {FINISHED_CHANNEL}")
            while True:
                workflow = _read_workflow(conn, workflow_id)
                if workflow.finished:
                    return workflow
                waiting_on = {s.job_id for s in workflow.steps}
                for notice in conn.notifies(timeout=_wait_slice(deadline, listen_dsn)):
                    if any(_mentions(notice.payload, job_id) for job_id in waiting_on):
                        break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"workflow {workflow_id} did not finish within {timeout} s")

    async def wait_for_workflow_async(
        self, workflow_id: int, *, timeout: float | None = None
    ) -> Workflow:
        deadline = None if timeout is None else time.monotonic() + timeout
        listen_dsn = self.listen_dsn
        async with await psycopg.AsyncConnection.connect(
            listen_dsn or self.dsn, **self.connection_kwargs
        ) as conn:
            if listen_dsn:
                await conn.execute(f"LISTEN {FINISHED_CHANNEL}")
            while True:
                workflow = await _read_workflow_async(conn, workflow_id)
                if workflow.finished:
                    return workflow
                waiting_on = {s.job_id for s in workflow.steps}
                async for notice in conn.notifies(timeout=_wait_slice(deadline, listen_dsn)):
                    if any(_mentions(notice.payload, job_id) for job_id in waiting_on):
                        break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"workflow {workflow_id} did not finish within {timeout} s")

    def cancel_workflow(
        self, workflow_id: int, *, conn: psycopg.Connection[Any] | None = None
    ) -> int:
        """Cancel every unfinished step: those not yet running at once, running ones
        through their workers' cancellation signal (they end cancelled unless they finish
        first). Returns how many steps it cancelled or asked to stop, 0 when the workflow
        had already finished; WorkflowNotFound for an unknown id. See
        skiplock.cancel_workflow."""
        with _workflow_known(workflow_id):
            return self.run(store.cancel_workflow(workflow_id), conn)

    async def cancel_workflow_async(
        self, workflow_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> int:
        with _workflow_known(workflow_id):
            return await self.arun(store.cancel_workflow(workflow_id), conn)

    def retry_workflow(
        self, workflow_id: int, *, conn: psycopg.Connection[Any] | None = None
    ) -> int:
        """Run again the steps of a finished workflow that did not succeed (failed,
        cancelled, expired), each waiting for its parents and receiving their results as
        on the first run; steps that succeeded keep their results. Returns how many steps
        it retried (0: none needed it). WorkflowNotFound for an unknown id;
        psycopg.errors.ObjectNotInPrerequisiteState while a step has not finished. Like
        any job, a retried step can run more than once. See skiplock.retry_workflow."""
        with _workflow_known(workflow_id):
            return self.run(store.retry_workflow(workflow_id), conn)

    async def retry_workflow_async(
        self, workflow_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> int:
        with _workflow_known(workflow_id):
            return await self.arun(store.retry_workflow(workflow_id), conn)

    def prune_workflows(
        self, older_than: timedelta | float, *, conn: psycopg.Connection[Any] | None = None
    ) -> int:
        """Forget workflows created more than `older_than` ago whose steps have all
        finished (their jobs' records stay); returns how many. See skiplock.prune_workflows."""
        period = _seconds(older_than, "older_than")
        assert period is not None
        deleted = 0
        while True:  # bounded batches, one short statement each
            batch: int = self.run(store.prune_workflows(period, PRUNE_BATCH), conn)
            deleted += batch
            if batch < PRUNE_BATCH:
                return deleted

    # ---- the task registry ---------------------------------------------------------------

    def published_tasks(self) -> list[dict[str, Any]]:
        """This app's tasks as publish_tasks takes them: name, queue, description, schema."""
        return [
            {
                "name": task.name,
                "queue": task.defaults.queue or "default",
                "description": task.description,
                "args_schema": task.schema,
            }
            for task in self.tasks.values()
        ]

    def publish_tasks(
        self, *, worker_id: uuid.UUID | None = None, conn: psycopg.Connection[Any] | None = None
    ) -> int:
        """Write this app's tasks to the registry (workers do it when they start; call it
        to publish from a deploy step without starting one). Returns how many."""
        published: int = self.run(store.publish_tasks(worker_id, self.published_tasks()), conn)
        return published

    # ---- reading and admin -------------------------------------------------------------

    def get_job(self, job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> Job:
        """The job with its status; JobNotFound when no job has this id."""
        return _found(job_id, self.run(store.get_job(job_id), conn))

    async def get_job_async(
        self, job_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> Job:
        return _found(job_id, await self.arun(store.get_job(job_id), conn))

    def cancel_job(self, job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> str:
        """Cancel a job; returns its status after the call (see skiplock.cancel_job)."""
        return _found(job_id, self.run(store.cancel_job(job_id), conn))

    async def cancel_job_async(
        self, job_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> str:
        return _found(job_id, await self.arun(store.cancel_job(job_id), conn))

    def retry_job(self, job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> str:
        """Run a failed, finished or waiting job again now (see skiplock.retry_job)."""
        return _found(job_id, self.run(store.retry_job(job_id), conn))

    async def retry_job_async(
        self, job_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> str:
        return _found(job_id, await self.arun(store.retry_job(job_id), conn))

    def set_queue_limits(
        self,
        queue: str,
        *,
        max_running: int | None = None,
        rate_limit: int | None = None,
        rate_period: timedelta | float | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> None:
        """Cap `queue` across all workers: at most `max_running` jobs at once and
        `rate_limit` starts per `rate_period`; None removes a limit. See
        skiplock.set_queue_limits."""
        period = _seconds(rate_period, "rate_period")
        call = store.set_queue_limits(
            queue, max_running=max_running, rate_limit=rate_limit, rate_period=period
        )
        self.run(call, conn)

    def set_queue_defaults(
        self,
        queue: str,
        *,
        retry: RetryPolicy | None = None,
        timeout: timedelta | float | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> None:
        """Give `queue`'s jobs that set no retry policy or timeout of their own (neither
        in enqueue nor in their task) these; None clears one. See
        skiplock.set_queue_defaults."""
        call = store.set_queue_defaults(
            queue,
            retry_policy=retry.to_json() if retry else None,
            timeout=_seconds(timeout, "timeout"),
        )
        self.run(call, conn)

    def wait_for_result(self, job_id: int, *, timeout: float | None = None) -> Any:
        """Block until the job finishes and return its result.

        Listens on skiplock_finished (no busy poll; a slow re-check every few seconds
        covers a lost notification; with nowhere to LISTEN, see `listen_dsn`, a re-check
        every second). Raises JobFailed (failed or expired), JobCancelled,
        JobNotFound, or TimeoutError after `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        listen_dsn = self.listen_dsn
        with psycopg.connect(listen_dsn or self.dsn, **self.connection_kwargs) as conn:
            if listen_dsn:
                conn.execute(f"LISTEN {FINISHED_CHANNEL}")
            while True:
                job = _found(job_id, store.get_job(job_id).run(conn))
                if job.finished:
                    return _result(job)
                for notice in conn.notifies(timeout=_wait_slice(deadline, listen_dsn)):
                    if _mentions(notice.payload, job_id):
                        break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {job_id} did not finish within {timeout} s")

    async def wait_for_result_async(self, job_id: int, *, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        listen_dsn = self.listen_dsn
        async with await psycopg.AsyncConnection.connect(
            listen_dsn or self.dsn, **self.connection_kwargs
        ) as conn:
            if listen_dsn:
                await conn.execute(f"LISTEN {FINISHED_CHANNEL}")
            while True:
                job = _found(job_id, await store.get_job(job_id).arun(conn))
                if job.finished:
                    return _result(job)
                async for notice in conn.notifies(timeout=_wait_slice(deadline, listen_dsn)):
                    if _mentions(notice.payload, job_id):
                        break
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"job {job_id} did not finish within {timeout} s")


@dataclass(frozen=True)
class WorkflowHandle:
    """An enqueued workflow: its id and {step name: job id}."""

    app: App
    id: int
    jobs: dict[str, int]

    def status(self) -> Workflow:
        return self.app.get_workflow(self.id)

    def wait(self, *, timeout: float | None = None) -> Workflow:
        """Block until every step has finished; see App.wait_for_workflow."""
        return self.app.wait_for_workflow(self.id, timeout=timeout)

    async def wait_async(self, *, timeout: float | None = None) -> Workflow:
        return await self.app.wait_for_workflow_async(self.id, timeout=timeout)

    def cancel(self) -> int:
        """Cancel every unfinished step; see App.cancel_workflow."""
        return self.app.cancel_workflow(self.id)

    async def cancel_async(self) -> int:
        return await self.app.cancel_workflow_async(self.id)

    def retry(self) -> int:
        """Run the steps that did not succeed again; see App.retry_workflow."""
        return self.app.retry_workflow(self.id)

    async def retry_async(self) -> int:
        return await self.app.retry_workflow_async(self.id)


def _workflow_document(
    steps: Sequence[Step],
    requests: Sequence[EnqueueRequest],
    name: str | None,
    meta: Mapping[str, Any] | None,
) -> str:
    encoded = [(s, r.as_json_object()) for s, r in zip(steps, requests, strict=True)]
    return workflow_document(encoded, name=name, meta=meta)


def _enqueued_workflow(conn: psycopg.Connection[Any], document: str) -> tuple[int, dict[str, int]]:
    workflow_id: int = store.enqueue_workflow(document).run(conn)
    return workflow_id, store.workflow_job_ids(workflow_id).run(conn)


async def _enqueued_workflow_async(
    conn: psycopg.AsyncConnection[Any], document: str
) -> tuple[int, dict[str, int]]:
    workflow_id: int = await store.enqueue_workflow(document).arun(conn)
    return workflow_id, await store.workflow_job_ids(workflow_id).arun(conn)


def _read_workflow(conn: psycopg.Connection[Any], workflow_id: int) -> Workflow:
    summary = store.get_workflow_summary(workflow_id).run(conn)
    if summary is None:
        raise WorkflowNotFound(workflow_id)
    return Workflow.from_rows(summary, store.list_workflow_steps(workflow_id).run(conn))


async def _read_workflow_async(conn: psycopg.AsyncConnection[Any], workflow_id: int) -> Workflow:
    summary = await store.get_workflow_summary(workflow_id).arun(conn)
    if summary is None:
        raise WorkflowNotFound(workflow_id)
    return Workflow.from_rows(summary, await store.list_workflow_steps(workflow_id).arun(conn))


@contextlib.contextmanager
def _workflow_known(workflow_id: int) -> Iterator[None]:
    """skiplock's own exception for the SQL functions' "workflow N not found"."""
    try:
        yield
    except psycopg.errors.NoDataFound:
        raise WorkflowNotFound(workflow_id) from None


def _found(job_id: int, value: T | None) -> T:
    if value is None:
        raise JobNotFound(job_id)
    return value


def _wait_slice(deadline: float | None, listen_dsn: str | None) -> float:
    # Re-check at least every 5 s even if a notification was lost; every second when
    # nothing listens (a transaction-mode pooler and no listen DSN): polling alone.
    most = 5.0 if listen_dsn else 1.0
    if deadline is None:
        return most
    return max(0.0, min(most, deadline - time.monotonic()))


def _mentions(payload: str, job_id: int) -> bool:
    return payload == "*" or str(job_id) in payload.split(",")


def _result(job: Job) -> Any:
    if job.status == "succeeded":
        return job.result
    if job.status == "cancelled":
        raise JobCancelled(job.id)
    raise JobFailed(job.id, job.status, (job.last_error or {}).get("error"))
