"""Tasks for the least-privilege test: a real `skiplock worker` logged in with only
skiplock_worker runs them. They touch no table of their own: everything the test checks
is the worker's own work (claims, retries, schedules, completions)."""

from __future__ import annotations

import skiplock

app = skiplock.App()


@app.task(name="roles.ok")
async def ok(n: int) -> int:
    return n * 2


@app.task(name="roles.flaky", retry_policy=skiplock.RetryPolicy.fixed(0.1))
async def flaky(ctx: skiplock.JobContext) -> int:
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return ctx.attempt


@app.schedule("* * * * *", name="roles.every_minute")
@app.task(name="roles.tick")
async def tick() -> None:
    return None
