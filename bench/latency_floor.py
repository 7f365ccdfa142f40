"""How much of the enqueue -> start latency is the machine's, and how much skiplock's.

    python bench/latency_floor.py [--dsn DSN] [--jobs 300] [--rounds 3] [--json out.json]

One producer enqueues a job every 20 ms (skiplock.enqueue, durable commit) to an idle
consumer in another process, and takes time.time() when the call returns; the consumer
takes time.time() when the job is claimed (the first two) or its handler starts (the
last two). Consumers, from the least work to the whole worker:

- sync-claim      sync psycopg, one connection: LISTEN, then on a NOTIFY
                  skiplock.claim_jobs (prepared): about the least a Python consumer of
                  skiplock can do
- async-claim     the same on an asyncio connection
- async-start     async-claim, and each claimed job started as a task, as a worker does
- worker          skiplock's worker (`python -m skiplock.bench`), its handler's start
- worker-hops     the same worker with each hop of a job stamped: the NOTIFY seen, the
                  claim sent and back, the job's task started, the handler started. It
                  wraps the worker's own methods (a few us per stamp) and prints the
                  median of each hop after the table

It also times a `SELECT 1` round trip back to back and after 20 ms idle: a process
that slept wakes up slow, and every hop of the path pays that. Rounds are interleaved.
Jobs go to the bench's own queue and are deleted after each run; the database must be
migrated (`skiplock migrate`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from skiplock.bench import HANDLERS, QUEUE, app, serve
from skiplock.config import resolve_dsn
from skiplock.jobs import ClaimedJob
from skiplock.store import CLAIM_SESSION_SETTINGS
from skiplock.worker import Worker
from skiplock.worker.leases import Running

CONSUMERS = ("sync-claim", "async-claim", "async-start", "worker", "worker-hops")
# The stamps of worker-hops, in path order; each hop is reported from the one before.
HOPS = ("notify", "claim-sent", "claim-back", "task", "handler")
GAP = 0.02
COLUMNS = ", ".join(ClaimedJob._fields)  # what the worker reads of a claim
# Every consumer's session is set up as the worker's claim session.
SESSION = "; ".join(f"SET {name} = {value}" for name, value in CLAIM_SESSION_SETTINGS.items())


def setup(worker: uuid.UUID) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements that make a connection a consumer: a registered worker, the
    worker's claim session, the prepared claim, LISTEN."""
    return [
        (
            "SELECT skiplock.register_worker(%s, 'latency-floor', %s, %s::text[], 10, 'bench')",
            (worker, os.getpid(), [QUEUE]),
        ),
        (SESSION, ()),
        (
            f"PREPARE claim AS SELECT {COLUMNS}"
            f" FROM skiplock.claim_jobs('{worker}', '{{{QUEUE}}}', 10)",
            (),
        ),
        ("LISTEN skiplock_jobs", ()),
    ]


def sync_consumer(dsn: str, seconds: float, worker: uuid.UUID) -> dict[int, float]:
    conn = psycopg.connect(dsn, autocommit=True)
    for statement, params in setup(worker):
        conn.execute(statement, params or None)
    print("ready", flush=True)
    started: dict[int, float] = {}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if list(conn.notifies(timeout=1.0, stop_after=1)):
            for row in conn.execute("EXECUTE claim", prepare=False).fetchall():
                started[row[0]] = time.time()
    return started


async def async_consumer(
    dsn: str, kind: str, seconds: float, worker: uuid.UUID
) -> dict[int, float]:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    for statement, params in setup(worker):
        await conn.execute(statement, params or None)
    print("ready", flush=True)
    started: dict[int, float] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def start(job_id: int) -> None:
        started[job_id] = time.time()

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        woken = False
        async for _ in conn.notifies(timeout=1.0, stop_after=1):
            woken = True
        if woken:
            cursor = await conn.execute("EXECUTE claim", prepare=False)
            for row in await cursor.fetchall():
                if kind == "async-start":
                    tasks.add(asyncio.create_task(start(row[0])))
                else:
                    started[row[0]] = time.time()
    await asyncio.gather(*tasks)
    return started


def hop_worker() -> dict[int, list[float]]:
    """Run skiplock's worker (as `python -m skiplock.bench` does) until SIGTERM; returns
    each job's stamps: NOTIFY seen, claim sent, claim back, task started."""
    stamps: dict[int, list[float]] = {}
    notified = [0.0]

    class HopWorker(Worker):
        def _on_notify(self, channel: str, payload: str) -> None:
            notified[0] = time.time()
            super()._on_notify(channel, payload)

        async def _claim(self, limit: int) -> list[ClaimedJob]:
            sent = time.time()
            jobs = await super()._claim(limit)
            back = time.time()
            # Only a claim a NOTIFY woke has a path to stamp (not a poll's).
            for job in jobs if notified[0] else ():
                stamps[job.id] = [notified[0], sent, back]
            notified[0] = 0.0
            return jobs

        async def _run_job(self, running: Running) -> None:
            stamps.get(running.job.id, []).append(time.time())
            await super()._run_job(running)

    logging.basicConfig(level=logging.WARNING)  # as the bench worker: no per-job lines
    asyncio.run(serve(HopWorker(app, queues=(QUEUE,), concurrency=200, poll_interval=1.0)))
    return stamps


def consume(dsn: str, kind: str, seconds: float) -> None:
    if kind == "worker-hops":
        print(json.dumps(hop_worker()), flush=True)
        return
    worker = uuid.uuid4()
    if kind == "sync-claim":
        started = sync_consumer(dsn, seconds, worker)
    else:
        started = asyncio.run(async_consumer(dsn, kind, seconds, worker))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT skiplock.unregister_worker(%s)", (worker,))
    print(json.dumps(started), flush=True)


def run_once(dsn: str, kind: str, jobs: int) -> list[list[float]]:
    """Per job, milliseconds from its enqueue's return to each stamp its consumer took;
    the last is the job's claim (the claim consumers) or its handler's start."""
    seconds = jobs * GAP + 2
    if kind == "worker":
        argv = [sys.executable, "-m", "skiplock.bench"]
    else:
        argv = [sys.executable, __file__, "consume", kind, str(seconds)]
    env = {**os.environ, "SKIPLOCK_DSN": dsn}
    with psycopg.connect(dsn, autocommit=True) as conn:
        clear(conn)
        consumer = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
        assert consumer.stdout is not None
        if consumer.stdout.readline().strip() != "ready":
            raise SystemExit(f"error: the {kind} consumer did not start")
        time.sleep(0.3)
        acked: dict[int, float] = {}
        for _ in range(jobs):
            job_id = conn.execute(
                "SELECT skiplock.enqueue(%s, '{\"stamp\": true}', queue => %s)",
                (HANDLERS["async-noop"], QUEUE),
            ).fetchone()[0]  # type: ignore[index]
            acked[job_id] = time.time()
            time.sleep(GAP)
        if kind.startswith("worker"):
            time.sleep(0.5)
            consumer.send_signal(signal.SIGTERM)
            hops = json.loads(consumer.stdout.readline() or "{}")
            consumer.wait(30)
            rows = conn.execute(
                "SELECT id, result::float8 FROM skiplock.job_history WHERE queue = %s", (QUEUE,)
            ).fetchall()
            stamps = {int(r[0]): [*hops.get(str(r[0]), []), float(r[1])] for r in rows}
        else:
            started = json.loads(consumer.stdout.readline())
            stamps = {int(k): [v] for k, v in started.items()}
            consumer.wait(30)
        clear(conn)
    return [[(s - t) * 1000 for s in stamps[i]] for i, t in acked.items() if i in stamps]


def clear(conn: psycopg.Connection[Any]) -> None:
    conn.execute("DELETE FROM skiplock.jobs WHERE queue = %s", (QUEUE,))
    conn.execute("DELETE FROM skiplock.job_history WHERE queue = %s", (QUEUE,))


def round_trips(dsn: str, calls: int = 200) -> dict[str, float]:
    """Median ms of a SELECT 1, back to back and after 20 ms idle, sync and asyncio."""

    def median_ms(run: Callable[[], Any], idle: float) -> float:
        times = []
        for _ in range(calls):
            if idle:
                time.sleep(idle)
            t = time.perf_counter()
            run()
            times.append((time.perf_counter() - t) * 1000)
        return statistics.median(times)

    with psycopg.connect(dsn, autocommit=True) as conn:
        sync = {
            f"sync-select1-{n}": median_ms(lambda: conn.execute("SELECT 1"), i)
            for n, i in (("warm", 0), ("after-idle", GAP))
        }

    async def asynchronous() -> dict[str, float]:
        aconn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        figures = {}
        for name, idle in (("warm", 0.0), ("after-idle", GAP)):
            times = []
            for _ in range(calls):
                if idle:
                    await asyncio.sleep(idle)
                t = time.perf_counter()
                await aconn.execute("SELECT 1")
                times.append((time.perf_counter() - t) * 1000)
            figures[f"async-select1-{name}"] = statistics.median(times)
        await aconn.close()
        return figures

    return {**sync, **asyncio.run(asynchronous())}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "consume":  # a consumer subprocess
        consume(os.environ["SKIPLOCK_DSN"], sys.argv[2], float(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn")
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--consumers", default=",".join(CONSUMERS))
    parser.add_argument("--json")
    opts = parser.parse_args()
    dsn = resolve_dsn(opts.dsn)
    if dsn is None:
        raise SystemExit("error: no database: pass --dsn or set SKIPLOCK_DSN")
    kinds = opts.consumers.split(",")
    if unknown := set(kinds) - set(CONSUMERS):
        raise SystemExit(f"error: unknown consumer {sorted(unknown)[0]!r}")
    p50s: dict[str, list[float]] = {k: [] for k in kinds}
    p99s: dict[str, list[float]] = {k: [] for k in kinds}
    hop_ms: dict[str, list[float]] = {hop: [] for hop in HOPS}
    for _ in range(opts.rounds):
        for kind in kinds:
            stamps = run_once(dsn, kind, opts.jobs)
            samples = sorted(job[-1] for job in stamps)
            p50s[kind].append(samples[len(samples) // 2])
            p99s[kind].append(samples[int(len(samples) * 0.99)])
            # Jobs a NOTIFY did not bring (claimed by a poll) have no stamps of their path.
            paths = [job for job in stamps if len(job) == len(HOPS)]
            for n, hop in enumerate(HOPS if paths else ()):
                hop_ms[hop].append(statistics.median(j[n] - (j[n - 1] if n else 0) for j in paths))
    trips = round_trips(dsn)
    print(f"{'consumer':14} {'p50 ms min / median / max':>28} {'p99 ms median':>14}")
    for kind in kinds:
        low, mid, high = min(p50s[kind]), statistics.median(p50s[kind]), max(p50s[kind])
        print(
            f"{kind:14} {low:8.3f} / {mid:6.3f} / {high:6.3f} {statistics.median(p99s[kind]):14.3f}"
        )
    for name, value in trips.items():
        print(f"{name:26} {value:6.3f} ms (median)")
    if hop_ms["notify"]:
        print("worker-hops, ms from the hop before (median of the rounds' medians):")
        print("  " + ", ".join(f"{h} {statistics.median(v):.3f}" for h, v in hop_ms.items()))
    if opts.json:
        figures = {"p50_ms": p50s, "p99_ms": p99s, "round_trips_ms": trips, "hops_ms": hop_ms}
        with open(opts.json, "w") as out:
            json.dump(figures, out, indent=2)


if __name__ == "__main__":
    main()
