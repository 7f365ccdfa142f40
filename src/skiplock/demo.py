# (App.task is typed as returning Any, so strict mode would flag every @app.task here)
"""Demo tasks that `skiplock dev` runs when no --app is given: `echo`, `sleep`, `fail`
and `math`, and under the names people know from other job systems, `webhook`,
`data_export`, `email` and `image_resize`, which hand their work to the built-in
tasks (skiplock.http, skiplock.export, skiplock.email, skiplock.image.resize) that
`skiplock dev` serves. Point a worker at them with
`skiplock worker --app skiplock.demo:app --builtins`."""

from __future__ import annotations

import math as _math
import operator
import time
from collections.abc import Callable
from typing import Any, NoReturn

from skiplock.app import App
from skiplock.context import JobContext
from skiplock.errors import Discard
from skiplock.retry import RetryPolicy

app = App()

# Each operation under the names people type for it; `math` reads them case-insensitively.
SPELLINGS: dict[str, tuple[str, ...]] = {
    "add": ("+", "sum", "plus"),
    "sub": ("-", "subtract", "minus"),
    "mul": ("*", "multiply", "times", "product"),
    "div": ("/", "divide"),
}
OPERATIONS: dict[str, Callable[[float, float], float]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
}
_BY_SPELLING = {
    spelling: OPERATIONS[name] for name, others in SPELLINGS.items() for spelling in (name, *others)
}


@app.task(name="echo")
def echo(**args: Any) -> dict[str, Any]:
    """Return the job's arguments as its result."""
    return args


@app.task(name="sleep")
def sleep(ctx: JobContext, seconds: float = 5.0) -> dict[str, Any]:
    """Sleep `seconds`, reporting progress each second; stop early when cancelled.

    A plain `def` runs in a thread, where cancellation cannot interrupt it: it has to
    look at `ctx.cancelled` itself, which is what this handler shows.
    """
    if not 0 <= seconds <= 86400:
        raise ValueError(f"seconds must be between 0 and 86400, got {seconds}")
    started = time.monotonic()
    for step in range(_math.ceil(seconds)):
        ctx.progress(step / seconds, f"slept {step} of {seconds:g} s")
        if ctx.cancelled.wait(min(1.0, seconds - step)):
            return {"slept": round(time.monotonic() - started, 3), "cancelled": True}
    ctx.progress(1.0, f"slept {seconds:g} s")
    return {"slept": round(time.monotonic() - started, 3), "cancelled": False}


@app.task(name="fail", max_attempts=3, retry_policy=RetryPolicy.fixed(2.0))
def fail(message: str = "this task always fails") -> NoReturn:
    """Always raise: it is retried twice, 2 s apart, then lands in the dead letters."""
    raise RuntimeError(message)


# A wrong input fails the same way every time, so retrying it would only delay the
# dead letter: one attempt.
@app.task(name="math", max_attempts=1)
def math(a: float, b: float, operation: str = "add") -> float:
    """Apply `operation` to a and b: add (+, sum, plus), sub (-, subtract, minus),
    mul (*, multiply, times, product) or div (/, divide), in any letter case; dividing
    by zero raises."""
    apply = _BY_SPELLING.get(operation.strip().lower()) if isinstance(operation, str) else None
    if apply is None:
        also = "; ".join(f"{name}: {', '.join(others)}" for name, others in SPELLINGS.items())
        raise ValueError(
            f"operation must be one of {', '.join(OPERATIONS)} (or, in any case, {also}),"
            f" got {operation!r}"
        )
    return apply(a, b)


def builtin(name: str) -> Callable[..., Any]:
    """The handler of built-in task `name`, or Discard: this worker does not serve them."""
    task = app.tasks.get(name)
    if task is None:
        raise Discard(f"{name} is not served here: start the worker with --builtins")
    return task


@app.task(
    name="webhook",
    args_schema={
        "type": "object",
        "properties": {"url": {"type": "string"}, "payload": {}},
        "required": ["url"],
        "additionalProperties": False,
    },
)
def webhook(ctx: JobContext, url: str, payload: Any = None) -> Any:
    """POST `payload` as JSON to `url` through the built-in skiplock.http (its destination
    guard too: `skiplock dev` allows loopback, so a receiver on this machine works)."""
    return builtin("skiplock.http")(ctx, url=url, method="POST", json=payload)


@app.task(
    name="data_export",
    args_schema={
        "type": "object",
        "properties": {
            "query": {"type": "string"},
            "params": {"type": "object"},
            "format": {"enum": ["csv", "jsonl"]},
        },
        "additionalProperties": False,
    },
    max_attempts=1,
)
def data_export(
    ctx: JobContext,
    query: str = "jobs_by_status",
    params: dict[str, Any] | None = None,
    format: str = "csv",
) -> Any:
    """Write a named query's rows to a file through the built-in skiplock.export (under
    `skiplock dev`: jobs_by_status, or recent_jobs with {"hours": N})."""
    return builtin("skiplock.export")(ctx, query=query, params=params or {}, format=format)


@app.task(
    name="email",
    args_schema={
        "type": "object",
        "properties": {
            "to": {"type": "string"},
            "subject": {"type": "string"},
            "text": {"type": "string"},
        },
        "required": ["to"],
        "additionalProperties": False,
    },
)
def email(ctx: JobContext, to: str, subject: str = "Hello from skiplock", text: str = "") -> Any:
    """Send a plain-text message through the built-in skiplock.email (under `skiplock dev`:
    to dev's mail catcher, saved as .eml in DATA_DIR/mail)."""
    message = text or f"Sent by job {ctx.id}."
    return builtin("skiplock.email")(ctx, to=[to], subject=subject, text=message)


@app.task(
    name="image_resize",
    args_schema={
        "type": "object",
        "properties": {
            "source": {"type": "string"},
            "url": {"type": "string"},
            "output": {"type": "string"},
            "width": {"type": "integer", "minimum": 1},
            "height": {"type": "integer", "minimum": 1},
        },
        "required": ["output"],
        "additionalProperties": False,
    },
    max_attempts=3,
)
def image_resize(ctx: JobContext, output: str, **args: Any) -> Any:
    """Resize an image through the built-in skiplock.image.resize (under `skiplock dev`:
    from DATA_DIR/images/in, or a URL, into DATA_DIR/images/out)."""
    return builtin("skiplock.image.resize")(ctx, output=output, **args)
