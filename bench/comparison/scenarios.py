"""The scenarios: each measures one system in one configuration and returns figures."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from comparison.producer import Producer
from comparison.workers import Workers

DRAIN_TIMEOUT = 1_800.0


@dataclass(frozen=True)
class Sizes:
    drains: tuple[int, ...] = (20_000, 100_000)
    bulk_jobs: int = 20_000
    bulk_batch: int = 1_000
    calls: int = 1_000  # one-job and ten-job enqueue calls, one after the other
    steady_batches: tuple[int, ...] = (10, 100)
    steady_seconds: float = 8.0
    latency_jobs: int = 200
    latency_gap: float = 0.02
    floor_jobs: int = 200  # bench/latency_floor.py's sync-claim consumer, per round

    @classmethod
    def quick(cls) -> Sizes:
        return cls((2_000, 5_000), 2_000, 1_000, 100, (10, 100), 2.0, 20, 0.02, 20)


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[int(fraction * (len(ordered) - 1))]


async def enqueue_in_batches(producer: Producer, n: int, batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, n, batch):
        await producer.enqueue(min(batch, n - start), None)
    return time.perf_counter() - started


@dataclass
class Target:
    """A system in one configuration: what starts its worker."""

    script: Path
    system: str
    variant: str
    producer: Producer

    def workers(self) -> Workers:
        return Workers(self.script, self.system, self.variant, self.producer.dsn)


async def drain(target: Target, n: int, batch: int) -> float:
    """N jobs enqueued first; jobs/s from `go` to an empty job table."""
    producer = target.producer
    await enqueue_in_batches(producer, n, batch)
    workers = target.workers()
    conn = await psycopg.AsyncConnection.connect(producer.dsn, autocommit=True)
    # the probe below by its index, whatever the statistics of the just-emptied table say
    await conn.execute("SET enable_seqscan = off")
    try:
        started = time.perf_counter()
        workers.go()
        while True:
            # The lowest id by the primary key (every system's table has one): a probe
            # that soon skips the drained entries, where EXISTS over the table reads each
            # emptied page up to the first live row, ~1 ms a poll at 100k jobs, a tenth
            # of a core taken from the system being measured.
            cur = await conn.execute(
                f"SELECT (SELECT id FROM {producer.table} ORDER BY id LIMIT 1) IS NULL"
            )
            row = await cur.fetchone()
            if row is not None and row[0]:
                break
            if time.perf_counter() - started > DRAIN_TIMEOUT:
                raise RuntimeError(f"{target.system} did not drain {n} jobs in time")
            await asyncio.sleep(0.01)
        return n / (time.perf_counter() - started)
    finally:
        await conn.close()
        workers.stop()


async def steady(target: Target, batch: int, seconds: float) -> dict[str, float]:
    """A producer enqueuing batches of BATCH back to back on one connection (as
    PgQueuer's benchmark's throughput strategy) beside one worker: enqueued/s,
    completed/s and the backlog left at the end (0: the worker kept up)."""
    workers = target.workers()
    workers.go()
    await asyncio.sleep(0.5)
    produced = 0
    try:
        started = time.perf_counter()
        while time.perf_counter() < started + seconds:
            await target.producer.enqueue(batch, None)
            produced += batch
        elapsed = time.perf_counter() - started
        left = target.producer.backlog()
    finally:
        workers.stop()
    return {
        f"steady-{batch}": (produced - left) / elapsed,
        f"steady-{batch}-enqueued": produced / elapsed,
        f"steady-{batch}-backlog": float(left),
    }


async def calls(producer: Producer, jobs_per_call: int, n: int) -> dict[str, float]:
    """N enqueue calls of JOBS_PER_CALL jobs, one after the other: calls/s, p50/p99 ms."""
    samples = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        await producer.enqueue(jobs_per_call, None)
        samples.append((time.perf_counter() - t0) * 1000)
    key = "single-enqueue" if jobs_per_call == 1 else f"enqueue-{jobs_per_call}"
    return {
        key: n / (time.perf_counter() - started),
        f"{key}-p50-ms": statistics.median(samples),
        f"{key}-p99-ms": percentile(samples, 0.99),
    }


async def latency(target: Target, jobs: int, gap: float) -> tuple[list[float], list[float]]:
    """Milliseconds to each handler's start, to an idle worker (from the enqueue call,
    from its return: the commit a user waits for)."""
    workers = target.workers()
    workers.go()
    await asyncio.sleep(1.0)
    acked: dict[float, float] = {}
    try:
        for _ in range(jobs):
            sent = time.time()
            await target.producer.enqueue(1, sent)
            acked[sent] = time.time()
            await asyncio.sleep(gap)
        deadline = time.monotonic() + 30
        while target.producer.backlog() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
    finally:
        started = workers.stop()
    if len(started) != jobs:
        print(f"  {target.system}: {len(started)}/{jobs} latency samples", flush=True)
    from_call = [(start - sent) * 1000 for sent, start in started.items()]
    from_ack = [(start - acked[sent]) * 1000 for sent, start in started.items() if sent in acked]
    return from_call, from_ack


def sync_claim_floor(dsn: str, jobs: int) -> list[float]:
    """bench/latency_floor.py's sync-claim consumer on skiplock's database: ms from the
    enqueue's return to a sync psycopg connection's claim of the job."""
    import latency_floor

    return [job[-1] for job in latency_floor.run_once(dsn, "sync-claim", jobs)]


Record = Callable[[str, str, float], None]
