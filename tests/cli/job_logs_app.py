"""Tasks for the `jobs logs --follow` tests, run by a real `skiplock worker` process."""

from __future__ import annotations

import logging

import skiplock

app = skiplock.App()
log = logging.getLogger("steps")


@app.task(name="steps", queue="logs")
def steps(ctx: skiplock.JobContext, n: int) -> None:
    for i in range(n):
        log.info("step %d of %d", i + 1, n)
    ctx.log("all steps done", level="warning")
