"""Tasks: the handlers an App registers, with their default job options.

A Task is callable as its handler (to run it inline), enqueues itself through its app,
and runs one job's handler for the worker. Its defaults are JobOptions (see
skiplock.options): each None until the enqueue, the task or the database gives it a value.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import psycopg

from skiplock.context import JobContext
from skiplock.errors import ConfigError
from skiplock.options import NAMES, JobOptions
from skiplock.retry import RetryPolicy
from skiplock.store import EnqueueRequest
from skiplock.validation import Validator, compile_schema
from skiplock.workflows import Step

if TYPE_CHECKING:
    from skiplock.app import App

Handler = Callable[..., Any]
CallNext = Callable[[], Awaitable[Any]]
Middleware = Callable[[JobContext, CallNext], Awaitable[Any]]
Hook = Callable[[str, JobContext | None, Mapping[str, Any]], Any]
HOOK_EVENTS = ("enqueued", "started", "succeeded", "retrying", "failed", "cancelled")


def request(task: str, args_json: str, options: JobOptions) -> EnqueueRequest:
    """What the store enqueues for one job of `task` with args `args_json` (encoded, see
    jobs.encode_json) and `options` (as JobOptions.checked gives them: durations are
    timedeltas, lists tuples)."""
    values = (getattr(options, name) for name in NAMES)
    return EnqueueRequest._make(
        (
            task,
            args_json,
            *(value.to_json() if isinstance(value, RetryPolicy) else value for value in values),
        )
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

    `args_schema` is the JSON Schema of its args (None: any object), compiled once into
    `validator`; `description` documents it in the task registry.
    """

    def __init__(
        self,
        app: App,
        fn: Handler,
        name: str,
        defaults: JobOptions,
        *,
        args_schema: Mapping[str, Any] | bool | None = None,
        description: str | None = None,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.defaults = defaults
        # A job of this task that gives no option, as the store enqueues it but for its
        # args: built once here, not at every enqueue.
        self.template = request(name, "{}", defaults)
        self.args_schema = args_schema
        self.validator: Validator | None = (
            None
            if args_schema is None
            else compile_schema(args_schema, what=f"the args schema of task {name}")
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
