"""The app: registered tasks with their defaults, middleware and lifecycle hooks, and
the producer calls (enqueue, bulk, workflows) in sync and async form; the reading and
admin calls come from AdminCalls, the connections from Database."""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import psycopg

from skiplock import store
from skiplock.admin import AdminCalls
from skiplock.context import JobContext
from skiplock.destinations import Destinations
from skiplock.errors import ConfigError
from skiplock.jobs import encode_json
from skiplock.options import NO_OPTIONS, JobOptions, published_defaults
from skiplock.schedules import ScheduleSpec
from skiplock.schedules import validate as validate_schedule
from skiplock.store import EnqueueRequest
from skiplock.tasks import HOOK_EVENTS, Handler, Hook, Middleware, Task, request
from skiplock.tracing import EnqueueSpan
from skiplock.validation import check_args
from skiplock.webhooks import WEBHOOK_TASK, deliver_webhook
from skiplock.workflows import Step, Workflow, chain, group, named
from skiplock.workflows import document as workflow_document

log = logging.getLogger("skiplock")

_PLAIN_SPEC = frozenset({"task", "args"})


@functools.lru_cache(maxsize=1024)
def _unregistered(task: str) -> EnqueueRequest:
    """A job of `task` that this app has not registered (a producer that only names its
    workers' tasks) and gives no option: like a registered task's template, one object
    for all its jobs, which bulk enqueue then sees share their options at a glance."""
    return EnqueueRequest(task)


class App(AdminCalls):
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
        super().__init__(dsn, pool_timeout=pool_timeout, pooler=pooler, listen_dsn=listen_dsn)
        self.tasks: dict[str, Task] = {}
        # Served by every worker of this app without registration (not published).
        self.builtin_tasks: dict[str, Task] = {
            WEBHOOK_TASK: Task(
                self,
                self._deliver_webhook,
                WEBHOOK_TASK,
                JobOptions(),
                description="POST a finished job's outcome to its callback URL, signed.",
            )
        }
        # The HMAC key of webhook deliveries; None: SKIPLOCK_WEBHOOK_SECRET (see webhooks).
        self.webhook_secret: str | None = None
        # Where webhook deliveries and skiplock.http may connect: global addresses, plus
        # the built-ins' [http] allow-list once serve_builtins has read it.
        self.destinations = Destinations()
        self.middleware: list[Middleware] = []
        self.hooks: dict[str, list[Hook]] = {event: [] for event in HOOK_EVENTS}
        self.schedules: dict[str, ScheduleSpec] = {}

    def _deliver_webhook(
        self, ctx: JobContext, url: str, outcome: Mapping[str, Any]
    ) -> dict[str, Any]:
        return deliver_webhook(
            ctx, url, outcome, secret=self.webhook_secret, destinations=self.destinations
        )

    def serve_builtins(self, config: str | Path | Mapping[str, Any] | None = None) -> None:
        """Register the built-in tasks (skiplock.http, skiplock.export, …) with their args
        schemas, configured by `config`: a TOML file's path, its tables as a mapping, or
        None for SKIPLOCK_BUILTINS_CONFIG (no file: the defaults). ConfigError names a
        bad setting; calling it again replaces them. See docs/builtins.md."""
        # The built-ins are tasks on an App, a layer above it: imported only when asked.
        from skiplock.builtins import load_settings, register_builtins

        settings = config if isinstance(config, Mapping) else load_settings(config)
        register_builtins(self, settings)

    # ---- tasks, middleware and hooks ----------------------------------------------------

    @overload
    def task(self, fn: Handler, /) -> Task: ...

    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        args_schema: Mapping[str, Any] | bool | None = None,
        description: str | None = None,
        **defaults: Any,
    ) -> Callable[[Handler], Task]: ...

    def task(
        self,
        fn: Handler | None = None,
        /,
        *,
        name: str | None = None,
        args_schema: Mapping[str, Any] | bool | None = None,
        description: str | None = None,
        **defaults: Any,
    ) -> Task | Callable[[Handler], Task]:
        """Register a handler: `@app.task` or `@app.task(queue="emails", timeout=30)`.

        The job's JSON args are passed as keyword arguments; a parameter named `ctx`
        receives the JobContext. Handlers may be `async def` or plain `def` (run in a
        thread). A job can run more than once (at-least-once): make handlers idempotent.

        `defaults` are job options (see skiplock.options: queue, priority, max_attempts,
        retry_policy, timeout, tags, …) for every job of the task that does not set them.
        `args_schema` (a JSON Schema) is checked against the args on enqueue, by the API and
        by the worker before the handler runs (a job whose args fail it is not retried:
        it goes to the dead letters). `description` (default: the docstring) and the
        args schema are published to the task registry when a worker starts.
        """
        options = JobOptions.checked(defaults)

        def register(f: Handler) -> Task:
            task_name = name or f"{f.__module__}.{f.__qualname__}"
            if task_name in self.tasks:
                raise ConfigError(f"task {task_name!r} is already registered")
            task = Task(
                self, f, task_name, options, args_schema=args_schema, description=description
            )
            self.tasks[task_name] = task
            return task

        return register(fn) if fn is not None else register

    def schedule(
        self,
        cron: str,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        args: Mapping[str, Any] | None = None,
    ) -> Callable[[Task | Handler], Task]:
        """Run a task on a cron schedule: put `@app.schedule("0 3 * * *")` above
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
                queue=task.defaults.queue,
                priority=task.defaults.priority,
                timezone=timezone,
                max_attempts=task.defaults.max_attempts,
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
            for job_request, job_id in zip(requests, ids, strict=True):
                try:
                    hook(
                        "enqueued",
                        None,
                        {"job_id": job_id, "task": job_request.task, "queue": job_request.queue},
                    )
                except Exception:
                    log.exception("hook %s for enqueued failed", getattr(hook, "__name__", hook))

    # ---- producing ----------------------------------------------------------------------

    def _request(
        self, task: str, args: Mapping[str, Any] | None, options: JobOptions
    ) -> EnqueueRequest:
        registered = self.tasks.get(task)
        if registered is not None and registered.validator is not None:
            check_args(task, registered.validator, dict(args or {}))
        args_json = encode_json(dict(args), what="args") if args else "{}"
        if options is NO_OPTIONS:
            # Most jobs give no option: the task's own request, built once, with these args.
            template = _unregistered(task) if registered is None else registered.template
            return template if args_json == "{}" else template.with_args(args_json)
        if registered is not None:
            options = registered.defaults.merged(options)
        return request(task, args_json, options)

    def enqueue(
        self,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        conn: psycopg.Connection[Any] | None = None,
        **options: Any,
    ) -> int:
        """Enqueue one job and return its id. `options` are the job options of
        skiplock.options, each checked there (ConfigError names a bad one): queue,
        priority, run_at, delay, max_attempts, retry_policy, timeout, tags, meta (unset
        ones take the task's defaults), unique_key / unique_scope / unique_for (when
        another job holds the key, no job is created and the holder's id is returned),
        expires_at / expires_in (a deadline: a job not started by then ends `expired`),
        depends_on / on_dependency_failure (the job waits until those jobs succeed), and
        callback_url (its outcome is POSTed there, signed, when it finishes)."""
        request = self._request(task, args, JobOptions.checked(options))
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
        request = self._request(task, args, JobOptions.checked(options))
        with EnqueueSpan([request]) as traced:
            job_id: int = await self.arun(store.enqueue(traced.requests[0]), conn)
            traced.done([job_id])
        self._enqueued([request], [job_id])
        return job_id

    def _requests(self, jobs: Iterable[Mapping[str, Any]]) -> list[EnqueueRequest]:
        requests = []
        for spec in jobs:
            if spec.keys() <= _PLAIN_SPEC and "task" in spec:
                requests.append(self._request(spec["task"], spec.get("args"), NO_OPTIONS))
                continue
            spec = dict(spec)
            task = spec.pop("task")
            args = spec.pop("args", None)
            requests.append(self._request(task, args, JobOptions.checked(spec)))
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
        requests = [self._request(s.task, s.args, JobOptions.checked(s.options)) for s in steps]
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

    # ---- the task registry ---------------------------------------------------------------

    def published_tasks(self) -> list[dict[str, Any]]:
        """This app's tasks as publish_tasks takes them: name, queue, description, schema,
        and the default job options that SQL applies to every job of the task however it
        is enqueued (PUBLISHED_DEFAULTS; durations in seconds)."""
        return [
            {
                "name": task.name,
                "queue": task.defaults.queue or "default",
                "description": task.description,
                "args_schema": task.args_schema,
                "defaults": published_defaults(task.defaults),
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
