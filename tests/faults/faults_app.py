"""Tasks for the fault suite. Every handler start and finish goes to the ledger table
on its own autocommit connection (job id, attempt, lease token, worker pid, time), so
an execution is on record even when the worker running it is killed a moment later."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import psycopg

import skiplock

app = skiplock.App()
_local = threading.local()

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS ledger (
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    worker_id uuid NOT NULL,
    event text NOT NULL,
    pid integer NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS ledger_job_idx ON ledger (job_id);
"""


def record(ctx: skiplock.JobContext, event: str) -> None:
    """Write one ledger row. Sync and per thread: a handler that blocks its event loop
    (the CPU loop) must still be able to say it started."""
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        # Its own application_name: the faults target the worker's connections, not this.
        conn = _local.conn = psycopg.connect(
            app.dsn,
            autocommit=True,
            application_name="faults-ledger",
            # Flushed locally, never waiting for a standby (a scenario stalls those).
            options="-c synchronous_commit=local",
        )
    conn.execute(
        "INSERT INTO ledger (job_id, attempt, worker_id, event, pid) VALUES (%s, %s, %s, %s, %s)",
        (ctx.id, ctx.attempt, ctx.worker_id, event, os.getpid()),
    )


async def arecord(ctx: skiplock.JobContext, event: str) -> None:
    await asyncio.to_thread(record, ctx, event)


@app.task(name="faults.record")
async def record_run(ctx: skiplock.JobContext) -> int:
    await arecord(ctx, "start")
    await arecord(ctx, "finish")
    return os.getpid()


@app.task(name="faults.sleep", retry_policy=skiplock.RetryPolicy.fixed(0.2))
async def sleep_run(ctx: skiplock.JobContext, seconds: float) -> int:
    await arecord(ctx, "start")
    await asyncio.sleep(seconds)
    await arecord(ctx, "finish")
    return os.getpid()


@app.task(name="faults.sync_sleep", retry_policy=skiplock.RetryPolicy.fixed(0.2))
def sync_sleep_run(ctx: skiplock.JobContext, seconds: float) -> int:
    """A cooperative sync handler: it returns early once ctx.cancelled is set."""
    record(ctx, "start")
    if ctx.cancelled.wait(seconds):
        record(ctx, "stopped")
        raise RuntimeError("stopped on request")
    record(ctx, "finish")
    return os.getpid()


@app.task(name="faults.hang_async", retry_policy=skiplock.RetryPolicy.fixed(0.2))
async def hang_async(ctx: skiplock.JobContext) -> None:
    await arecord(ctx, "start")
    await asyncio.Event().wait()


@app.task(name="faults.hang_thread", retry_policy=skiplock.RetryPolicy.fixed(0.2))
def hang_thread(ctx: skiplock.JobContext, seconds: float = 3600) -> None:
    """A sync handler that ignores ctx.cancelled: no way to stop it from outside."""
    record(ctx, "start")
    time.sleep(seconds)


@app.task(name="faults.cpu_loop", retry_policy=skiplock.RetryPolicy.fixed(0.2))
async def cpu_loop(ctx: skiplock.JobContext, seconds: float = 3600) -> None:
    """Holds the event loop (and the GIL between bytecodes) without ever yielding."""
    record(ctx, "start")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@app.task(name="faults.exit", retry_policy=skiplock.RetryPolicy.fixed(0.1))
async def exit_run(ctx: skiplock.JobContext) -> None:
    """A poison job: kills its own worker process every time."""
    await arecord(ctx, "start")
    os._exit(17)


@app.task(name="faults.eat_memory", retry_policy=skiplock.RetryPolicy.fixed(0.1))
def eat_memory(ctx: skiplock.JobContext) -> None:
    """A poison job: allocates until the address-space limit ends the process."""
    record(ctx, "start")
    hoard = []
    while True:
        # calloc'd, so the address space runs out without touching the pages (the
        # limit is on address space; the machine's RAM is not ours to fill)
        hoard.append(bytes(64 * 1024 * 1024))
