"""skiplock, PgQueuer and Procrastinate side by side on one fresh PostgreSQL, in one run.

    python bench/compare.py [--rounds 3] [--systems skiplock,pgqueuer,procrastinate]
                            [--out docs] [--json results.json] [--quick]

Needs the `bench` extra (pgqueuer, procrastinate, matplotlib) and, for PgQueuer's
recommended driver, asyncpg. It starts one embedded PostgreSQL (default settings: fsync
and synchronous_commit on), gives each system its own database with its own schema
installed by its own installer, and runs every scenario `--rounds` times per system:

- drain-20k / drain-100k  N no-op jobs enqueued first; one worker process is started,
                          reports ready (imports done, connected, handler registered),
                          then is told to go; time until the queue table is empty
- steady                  a producer aiming at STEADY_RATE jobs/s (batches every 10 ms)
                          beside one worker for STEADY_SECONDS: jobs completed per second
- bulk-enqueue            20,000 jobs in batches of BULK_BATCH on one connection
- single-enqueue          SINGLE_CALLS one-job enqueue calls, one after the other
- latency                 LATENCY_JOBS jobs at 50/s to an idle worker; the handler stamps
                          time.time() on start, the job carries time.time() from just
                          before its enqueue call (same machine, same clock): `latency`
                          is measured from that call, `latency-ack` from the moment the
                          call returned (the enqueue committed): what a user waits after
                          enqueue returns

Every system gets the same no-op async handler and the same worker wrapper (this file,
`compare.py worker SYSTEM`). It writes a markdown table and a PNG (throughput bars,
latency CDF) between the markers in docs/performance.md and to docs/performance.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve()
DRAIN_SIZES = (20_000, 100_000)
BULK_JOBS = 20_000
BULK_BATCH = 1_000
SINGLE_CALLS = 2_000
STEADY_RATE = 20_000.0
STEADY_SECONDS = 10.0
LATENCY_JOBS = 200
LATENCY_GAP = 0.02
READY_TIMEOUT = 60.0
DRAIN_TIMEOUT = 600.0
SYSTEMS = ("skiplock", "pgqueuer", "procrastinate")
# Procrastinate claims one job per query and drains ~100-150 jobs/s here: 20,000 jobs take
# minutes, 100,000 a quarter of an hour. Its drain runs once, on the first size only.
SLOW_DRAIN = {"procrastinate": (20_000,)}
# Per-system worker configuration, as each project recommends for throughput with an
# async no-op handler (see CONFIG_NOTES for where that comes from).
SKIPLOCK_CONCURRENCY = 200  # claim batch = free slots (the runtime's default)
PGQUEUER_BATCH = 100  # PgQueuer run(batch_size=...); asyncpg driver as in its README
PROCRASTINATE_CONCURRENCY = 100  # run_worker(concurrency=...), listen_notify on
CONFIG_NOTES = {
    "skiplock": f"Worker(concurrency={SKIPLOCK_CONCURRENCY}), claim batch = free slots, "
    "psycopg pool, LISTEN on",
    "pgqueuer": f"PgQueuer(AsyncpgDriver(asyncpg.connect())), run(batch_size={PGQUEUER_BATCH}), "
    "schema by `pgq install`, LISTEN on",
    "procrastinate": f"PsycopgConnector, run_worker_async(concurrency="
    f"{PROCRASTINATE_CONCURRENCY}, listen_notify=True, delete_jobs='successful'), "
    "batch_defer_async for bulk, schema by its schema manager (`procrastinate schema --apply`); "
    "drain: the first size only, in the first round only (see SLOW_DRAIN)",
}
MARK_START, MARK_END = "<!-- compare:start -->", "<!-- compare:end -->"


# ---- the worker subprocess: one wrapper for every system ------------------------------


def worker_main(system: str, dsn: str) -> None:
    """Build SYSTEM's worker, print `ready`, wait for `go` on stdin, then run until
    SIGTERM. The handler prints `lat <enqueue time> <start time>` for jobs that carry
    an enqueue time (the time, exactly as sent, names the job)."""

    def stamp(sent: float | None) -> None:
        if sent:
            print(f"lat {sent!r} {time.time()!r}", flush=True)

    def ready_then_go() -> None:
        print("ready", flush=True)
        sys.stdin.readline()

    async def skiplock_worker() -> None:
        import skiplock
        from skiplock.worker import Worker

        app = skiplock.App(dsn)

        @app.task(name="noop")
        async def noop(t: float | None = None) -> None:
            stamp(t)

        worker = Worker(app, concurrency=SKIPLOCK_CONCURRENCY, poll_interval=1.0)
        ready_then_go()
        await worker.run(install_signal_handlers=True)

    async def pgqueuer_worker() -> None:
        import asyncpg
        from pgqueuer import PgQueuer
        from pgqueuer.db import AsyncpgDriver

        pgq = PgQueuer(AsyncpgDriver(await asyncpg.connect(dsn)))

        @pgq.entrypoint("noop")
        async def noop(job: Any) -> None:
            stamp(float(job.payload) if job.payload else None)

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, pgq.shutdown.set)
        ready_then_go()
        await pgq.run(batch_size=PGQUEUER_BATCH)

    async def procrastinate_worker() -> None:
        app = procrastinate_app(dsn)

        @app.task(name="noop")
        async def noop(t: float | None = None) -> None:
            stamp(t)

        async with app.open_async():
            ready_then_go()
            await app.run_worker_async(
                concurrency=PROCRASTINATE_CONCURRENCY,
                listen_notify=True,
                delete_jobs="successful",
                install_signal_handlers=True,
            )

    runners = {
        "skiplock": skiplock_worker,
        "pgqueuer": pgqueuer_worker,
        "procrastinate": procrastinate_worker,
    }
    import logging

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)  # "App in __main__"
    asyncio.run(runners[system]())


def procrastinate_app(dsn: str) -> Any:
    import procrastinate

    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))


class Workers:
    """One worker subprocess; `go()` starts it; `stop()` collects its latency lines."""

    def __init__(self, system: str, dsn: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "worker", system, dsn],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                self.stop()
                raise RuntimeError(f"{system} worker not ready in {READY_TIMEOUT} s")
            line = self.proc.stdout.readline()
            if line.strip() == b"ready":
                break
            if not line:
                raise RuntimeError(f"{system} worker exited with {self.proc.wait()}")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def stop(self) -> dict[float, float]:
        """{enqueue time the job carried: handler start time}"""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return {
            float(sent): float(started)
            for sent, started in re.findall(rb"^lat ([0-9.e+-]+) ([0-9.e+-]+)$", out, re.M)
        }


# ---- the producer side, per system ------------------------------------------------------


@dataclass
class System:
    name: str
    dsn: str
    table: str  # the table whose row count is the backlog
    truncate: str
    bulk: Callable[[int], Awaitable[None]] = field(init=False)
    single: Callable[[float | None], Awaitable[None]] = field(init=False)
    close: Callable[[], Awaitable[None]] = field(init=False)

    def reset(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(self.truncate)
            conn.execute(f"VACUUM ANALYZE {self.table}")

    def backlog(self) -> int:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()
        return int(row[0]) if row else 0


async def open_system(name: str, dsn: str) -> System:
    if name == "skiplock":
        import skiplock
        from skiplock.bench import JOB_TABLES

        with psycopg.connect(dsn) as sync:
            present = [
                row[0]
                for row in sync.execute(
                    "SELECT tablename FROM pg_tables"
                    " WHERE schemaname = 'skiplock' AND tablename = ANY(%s)",
                    (list(JOB_TABLES),),
                )
            ]
        truncate = "TRUNCATE " + ", ".join(f"skiplock.{t}" for t in present)
        system = System(name, dsn, "skiplock.jobs", truncate)
        app = skiplock.App(dsn)
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)

        async def sk_bulk(n: int) -> None:
            await app.enqueue_many_async([{"task": "noop"}] * n, conn=conn)

        async def sk_single(t: float | None) -> None:
            await app.enqueue_async("noop", {"t": t} if t else None, conn=conn)

        system.bulk, system.single, system.close = sk_bulk, sk_single, conn.close
        return system
    if name == "pgqueuer":
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        system = System(name, dsn, "pgqueuer", "TRUNCATE pgqueuer, pgqueuer_log")
        apg = await asyncpg.connect(dsn)
        queries = Queries(AsyncpgDriver(apg))

        async def pq_bulk(n: int) -> None:
            await queries.enqueue(["noop"] * n, [None] * n, [0] * n)

        async def pq_single(t: float | None) -> None:
            await queries.enqueue("noop", repr(t).encode() if t else None)

        system.bulk, system.single, system.close = pq_bulk, pq_single, apg.close
        return system
    if name == "procrastinate":
        app = procrastinate_app(dsn)

        @app.task(name="noop")
        async def noop(t: float | None = None) -> None:
            return None

        await app.open_async()
        system = System(name, dsn, "procrastinate_jobs", "TRUNCATE procrastinate_jobs CASCADE")

        async def pr_bulk(n: int) -> None:
            await noop.batch_defer_async(*([{}] * n))

        async def pr_single(t: float | None) -> None:
            await noop.defer_async(t=t)

        system.bulk, system.single, system.close = pr_bulk, pr_single, app.close_async
        return system
    raise ValueError(name)


def install(name: str, dsn: str) -> None:
    """Each system's schema, by its own installer."""
    if name == "skiplock":
        subprocess.run([sys.executable, "-m", "skiplock", "--dsn", dsn, "migrate"], check=True)
    elif name == "pgqueuer":
        subprocess.run(
            [sys.executable, "-m", "pgqueuer", "--pg-dsn", dsn, "install"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    else:

        async def apply() -> None:
            app = procrastinate_app(dsn)
            async with app.open_async():
                await app.schema_manager.apply_schema_async()

        asyncio.run(apply())


# ---- scenarios ----------------------------------------------------------------------------


async def enqueue_in_batches(system: System, n: int) -> float:
    started = time.perf_counter()
    for start in range(0, n, BULK_BATCH):
        await system.bulk(min(BULK_BATCH, n - start))
    return time.perf_counter() - started


async def drain(system: System, n: int) -> float:
    await enqueue_in_batches(system, n)
    workers = Workers(system.name, system.dsn)
    conn = await psycopg.AsyncConnection.connect(system.dsn, autocommit=True)
    try:
        started = time.perf_counter()
        workers.go()
        while True:
            cur = await conn.execute(f"SELECT EXISTS (SELECT FROM {system.table})")
            row = await cur.fetchone()
            if row is not None and not row[0]:
                break
            if time.perf_counter() - started > DRAIN_TIMEOUT:
                raise RuntimeError(f"{system.name} did not drain {n} jobs in time")
            await asyncio.sleep(0.01)
        return n / (time.perf_counter() - started)
    finally:
        await conn.close()
        workers.stop()


async def steady(system: System) -> float:
    workers = Workers(system.name, system.dsn)
    workers.go()
    await asyncio.sleep(1.0)
    produced = 0
    try:
        started = time.perf_counter()
        while (now := time.perf_counter()) < started + STEADY_SECONDS:
            due = min(int((now - started) * STEADY_RATE) - produced, BULK_BATCH)
            if due > 0:
                await system.bulk(due)
                produced += due
            pause = 0.01 - (time.perf_counter() - now)
            if pause > 0:
                await asyncio.sleep(pause)
        elapsed = time.perf_counter() - started
        left = system.backlog()
    finally:
        workers.stop()
    return (produced - left) / elapsed


async def single(system: System) -> tuple[float, list[float]]:
    samples = []
    started = time.perf_counter()
    for _ in range(SINGLE_CALLS):
        t0 = time.perf_counter()
        await system.single(None)
        samples.append((time.perf_counter() - t0) * 1000)
    return SINGLE_CALLS / (time.perf_counter() - started), samples


async def latency(system: System) -> tuple[list[float], list[float]]:
    """Milliseconds to each handler's start (from the enqueue call, from its return)."""
    workers = Workers(system.name, system.dsn)
    workers.go()
    await asyncio.sleep(1.0)
    acked: dict[float, float] = {}
    try:
        for _ in range(LATENCY_JOBS):
            sent = time.time()
            await system.single(sent)
            acked[sent] = time.time()
            await asyncio.sleep(LATENCY_GAP)
        deadline = time.monotonic() + 30
        while system.backlog() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
    finally:
        started = workers.stop()
    if len(started) != LATENCY_JOBS:
        print(f"  {system.name}: {len(started)}/{LATENCY_JOBS} latency samples", flush=True)
    from_call = [(start - sent) * 1000 for sent, start in started.items()]
    from_ack = [(start - acked[sent]) * 1000 for sent, start in started.items() if sent in acked]
    return from_call, from_ack


async def one_round(system: System, results: dict[str, Any], number: int) -> None:
    def record(key: str, value: float) -> None:
        results.setdefault(key, []).append(value)
        print(f"  {system.name} {key}: {value:,.2f}  (load {load()})", flush=True)

    for n in SLOW_DRAIN.get(system.name, DRAIN_SIZES) if number == 1 else DRAIN_SIZES:
        if system.name in SLOW_DRAIN and number > 1:
            break
        system.reset()
        record(f"drain-{n // 1000}k", await drain(system, n))
    system.reset()
    record("steady", await steady(system))
    system.reset()
    record("bulk-enqueue", BULK_JOBS / await enqueue_in_batches(system, BULK_JOBS))
    system.reset()
    rate, samples = await single(system)
    record("single-enqueue", rate)
    ordered = sorted(samples)
    record("single-enqueue-p50-ms", statistics.median(ordered))
    record("single-enqueue-p99-ms", ordered[int(0.99 * (len(ordered) - 1))])
    system.reset()
    from_call, from_ack = await latency(system)
    for name, samples in (("latency", from_call), ("latency-ack", from_ack)):
        results.setdefault(f"{name}-samples", []).extend(samples)
        ordered = sorted(samples)
        record(f"{name}-p50-ms", ordered[len(ordered) // 2])
        record(f"{name}-p99-ms", ordered[int(0.99 * (len(ordered) - 1))])


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


# ---- reporting ------------------------------------------------------------------------------


def throughput_keys() -> tuple[str, ...]:
    drains = tuple(f"drain-{n // 1000}k" for n in DRAIN_SIZES)
    return (*drains, "steady", "bulk-enqueue", "single-enqueue")


LATENCY = (
    "latency-p50-ms",
    "latency-p99-ms",
    "latency-ack-p50-ms",
    "latency-ack-p99-ms",
    "single-enqueue-p50-ms",
    "single-enqueue-p99-ms",
)


def cell(values: list[float] | None) -> str:
    if not values:
        return "-"
    fmt = "{:,.0f}" if statistics.median(values) >= 100 else "{:.2f}"
    med, lo, hi = (fmt.format(v) for v in (statistics.median(values), min(values), max(values)))
    return f"**{med}** ({lo} to {hi})"


def markdown(results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    systems = list(results)
    lines = [
        f"Run on {meta['date']}: `{meta['command']}`; {meta['rounds']} round(s); "
        f"{meta['nproc']} CPUs; PostgreSQL {meta['postgresql']} (embedded, default "
        f"settings: fsync and synchronous_commit on); load average {meta['load_start']} "
        f"at start, {meta['load_end']} at end. Cells: **median** (min to max).",
        "",
        "| scenario | unit | " + " | ".join(systems) + " |",
        "|---|---|" + "---|" * len(systems),
    ]
    for key in throughput_keys():
        unit = "calls/s" if key == "single-enqueue" else "jobs/s"
        row = [cell(results[s].get(key)) for s in systems]
        lines.append(f"| {key} | {unit} | " + " | ".join(row) + " |")
    for key in LATENCY:
        row = [cell(results[s].get(key)) for s in systems]
        lines.append(f"| {key.removesuffix('-ms')} | ms | " + " | ".join(row) + " |")
    if "skiplock" in results and "pgqueuer" in results:
        lines += ["", "skiplock / PgQueuer (medians):", ""]
        for key in throughput_keys():
            a, b = results["skiplock"].get(key), results["pgqueuer"].get(key)
            if a and b:
                ratio = statistics.median(a) / statistics.median(b)
                lines.append(f"- {key}: {ratio:.2f}x")
    lines += ["", "Configuration:", ""]
    lines += [f"- {s}: {CONFIG_NOTES[s]}" for s in systems]
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = list(results)
    fig, (bars, cdf) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / len(systems)
    for i, s in enumerate(systems):
        meds, errs = [], [[], []]
        for key in throughput_keys():
            vals = results[s].get(key) or [0.0]
            med = statistics.median(vals)
            meds.append(med)
            errs[0].append(med - min(vals))
            errs[1].append(max(vals) - med)
        xs = [x + i * width for x in range(len(throughput_keys()))]
        bars.bar(xs, meds, width, yerr=errs, capsize=3, label=s)
    bars.set_xticks([x + width * (len(systems) - 1) / 2 for x in range(len(throughput_keys()))])
    bars.set_xticklabels(throughput_keys(), rotation=15)
    bars.set_yscale("log")
    bars.set_ylabel("jobs/s (calls/s for single-enqueue), log scale")
    bars.set_title("Throughput: median, whiskers min to max")
    bars.legend()
    for i, s in enumerate(systems):
        for key, style, what in (
            ("latency-samples", "-", "from the enqueue call"),
            ("latency-ack-samples", "--", "from its return"),
        ):
            samples = sorted(results[s].get(key, []))
            if samples:
                ys = [(n + 1) / len(samples) for n in range(len(samples))]
                cdf.plot(samples, ys, style, color=f"C{i}", label=f"{s}, {what}")
    cdf.set_xscale("log")
    cdf.set_xlabel("enqueue → handler start, ms (log scale)")
    cdf.set_ylabel("fraction of jobs")
    cdf.set_title("Latency to an idle worker (CDF, all rounds)")
    cdf.grid(True, alpha=0.3)
    cdf.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_doc(doc: Path, block: str) -> None:
    text = doc.read_text() if doc.exists() else f"# Performance\n\n{MARK_START}\n{MARK_END}\n"
    if MARK_START not in text:
        text += f"\n{MARK_START}\n{MARK_END}\n"
    head, rest = text.split(MARK_START, 1)
    tail = rest.split(MARK_END, 1)[1] if MARK_END in rest else ""
    doc.write_text(f"{head}{MARK_START}\n{block}\n{MARK_END}{tail}")


# ---- main ---------------------------------------------------------------------------------


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker_main(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "docs")
    parser.add_argument("--json", type=Path, default=None, help="Also save raw results here.")
    parser.add_argument("--quick", action="store_true", help="Tiny sizes: a smoke test.")
    opts = parser.parse_args()
    if opts.quick:
        global DRAIN_SIZES, BULK_JOBS, SINGLE_CALLS, STEADY_SECONDS, LATENCY_JOBS
        global SLOW_DRAIN
        DRAIN_SIZES, BULK_JOBS, SINGLE_CALLS = (2_000, 5_000), 2_000, 200
        SLOW_DRAIN = {"procrastinate": (500,)}
        STEADY_SECONDS, LATENCY_JOBS = 2.0, 20
    systems = [s for s in opts.systems.split(",") if s]
    for s in systems:
        if s not in SYSTEMS:
            parser.error(f"unknown system {s!r}; choose from {', '.join(SYSTEMS)}")

    from skiplock.bench import embedded_dsn

    server_dsn = embedded_dsn()
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        for s in systems:
            conn.execute(f"CREATE DATABASE bench_{s}")
    dsns = {s: re.sub(r"(postgresql://[^/]*/)[^?]*", rf"\1bench_{s}", server_dsn) for s in systems}
    meta = {
        "date": date.today().isoformat(),
        "command": "python " + " ".join([f"bench/{HERE.name}", *sys.argv[1:]]),
        "rounds": opts.rounds,
        "nproc": os.cpu_count(),
        "postgresql": version[0] if version else "?",
        "load_start": load(),
    }
    for s in systems:
        install(s, dsns[s])

    async def run_all() -> dict[str, dict[str, Any]]:
        results: dict[str, dict[str, Any]] = {s: {} for s in systems}
        for number in range(1, opts.rounds + 1):
            # systems interleaved per round, so a burst of load hits them alike
            for s in systems:
                print(f"round {number}/{opts.rounds}: {s}", flush=True)
                system = await open_system(s, dsns[s])
                try:
                    await one_round(system, results[s], number)
                finally:
                    await system.close()
        return results

    results = asyncio.run(run_all())
    meta["load_end"] = load()
    block = markdown(results, meta) + "\n\n![throughput and latency](performance.png)"
    print(block)
    opts.out.mkdir(parents=True, exist_ok=True)
    write_doc(opts.out / "performance.md", block)
    plot(results, opts.out / "performance.png")
    if opts.json:
        opts.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
