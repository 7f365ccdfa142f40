"""Tasks: the handlers an App registers, with their default job options.

A Task is callable as its handler (to run it inline), enqueues itself through its app,
and runs one job's handler for the worker; TaskOptions are the options a job can be
enqueued with, each None until the enqueue, the task or the database gives it a value.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from skiplock.context import JobContext
from skiplock.errors import ConfigError
from skiplock.jobs import encode_json
from skiplock.retry import RetryPolicy
from skiplock.store import EnqueueRequest
from skiplock.validation import Validator, compile_schema
from skiplock.webhooks import check_callback_url
from skiplock.workflows import Step

if TYPE_CHECKING:
    from skiplock.app import App

Handler = Callable[..., Any]
CallNext = Callable[[], Awaitable[Any]]
Middleware = Callable[[JobContext, CallNext], Awaitable[Any]]
Hook = Callable[[str, JobContext | None, Mapping[str, Any]], Any]
HOOK_EVENTS = ("enqueued", "started", "succeeded", "retrying", "failed", "cancelled")


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
            delay=duration(self.delay, "delay"),
            max_attempts=self.max_attempts,
            retry_policy=self.retry.to_json() if self.retry else None,
            timeout=duration(self.timeout, "timeout"),
            tags=tuple(self.tags),
            meta=self.meta,
            unique_key=self.unique_key,
            unique_scope=self.unique_scope,
            unique_for=duration(self.unique_for, "unique_for"),
            expires_at=self.expires_at,
            expires_in=duration(self.expires_in, "expires_in"),
            depends_on=tuple(self.depends_on),
            on_dependency_failure=self.on_dependency_failure,
            callback_url=(
                None if self.callback_url is None else check_callback_url(self.callback_url)
            ),
        )


def duration(value: timedelta | float | None, name: str) -> timedelta | None:
    """`value` as a timedelta (a number is seconds); ConfigError naming `name` if < 0."""
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
