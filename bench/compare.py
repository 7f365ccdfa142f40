"""skiplock, PgQueuer, Procrastinate and a raw-SQL ceiling on one fresh PostgreSQL, in one run.

    python bench/compare.py [--rounds 3] [--systems skiplock,pgqueuer,procrastinate,raw-sql]
                            [--out docs] [--json results.json] [--quick] [--drain-1m]
                            [--enqueue-only] [--loop uvloop|asyncio]

Needs the `bench` extra (pgqueuer, asyncpg, uvloop, procrastinate, matplotlib). It
starts one embedded PostgreSQL (default settings: fsync and synchronous_commit on),
gives each system its own database with its schema installed by its own installer, and
runs every scenario `--rounds` times, the systems interleaved in each round. Each system
runs as its own docs and benchmark tools run it, in each of the configurations they
advise (comparison/*_peer.py: PgQueuer's batch sizes, skiplock's concurrency); the table
shows the best median and which configuration reached it. The raw-SQL ceiling
(comparison/raw_sql.py) is measured on the same server in the same rounds.

- drain-20k / drain-100k  N no-op jobs enqueued first; one worker process is started,
                          reports ready (imports done, connected, handler registered),
                          then is told to go; jobs/s until the job table is empty
- steady-10 / steady-100  a producer enqueuing batches of 10 / 100 back to back on one
                          connection beside one worker for `steady_seconds`: completed/s,
                          enqueued/s and the backlog at the end (0: the worker kept up)
- single-enqueue / enqueue-10  one-job / ten-job enqueue calls one after the other:
                          calls/s, p50/p99 ms per call
- bulk-enqueue            20,000 jobs in calls of 1,000 on one connection
- latency                 jobs at 50/s to an idle worker; the handler stamps time.time()
                          on start; `latency` from just before the enqueue call,
                          `latency-ack` from the moment it returned (the commit)
- floor                   bench/latency_floor.py's sync-claim consumer on skiplock's
                          database: the least a Python consumer of skiplock can wait
- drain-1000k             (--drain-1m, skiplock only, first round) 1,000,000 jobs

The producers (every enqueue call, the latency scenario's too) run in this process, on
uvloop unless `--loop asyncio` (comparison/producer.py says why).

`--enqueue-only` runs just the producer's three (bulk, one-job, ten-job calls): a round
then takes seconds, so the systems run close together and many rounds fit; the table is
printed and docs/ left alone. The producer's figures of each round also come as
skiplock / PgQueuer ratios within the round, beside the ratio of the medians.

It writes a markdown table and a PNG (throughput bars, latency CDF) between the markers
in docs/performance.md and to docs/performance.png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from datetime import date
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from comparison import report, scenarios  # noqa: E402
from comparison.peers import PEERS  # noqa: E402
from comparison.producer import LOOPS  # noqa: E402
from comparison.workers import worker_main  # noqa: E402

MILLION = 1_000_000


async def measure_round(
    system: str,
    dsn: str,
    sizes: scenarios.Sizes,
    number: int,
    opts: argparse.Namespace,
    results: report.Results,
    loads: list[float],
) -> None:
    peer = PEERS[system]
    producer = await peer.open_producer(dsn)

    def record(variant: str, key: str, value: float) -> None:
        results[system].setdefault(variant, {}).setdefault(key, []).append(value)
        loads.append(os.getloadavg()[0])
        label = f"{system} [{variant}]" if variant else system
        print(f"  {label} {key}: {value:,.2f}  (load {scenarios.load()})", flush=True)

    try:
        for variant in () if opts.enqueue_only else peer.VARIANTS:
            target = scenarios.Target(HERE, system, variant, producer)
            drains = sizes.drains
            if hasattr(peer, "DRAIN_SIZES_MAX"):
                drains = tuple(n for n in drains if n <= peer.DRAIN_SIZES_MAX)
                drains = drains[:1] if number <= peer.DRAIN_ROUNDS else ()
            for n in drains:
                producer.reset()
                rate = await scenarios.drain(target, n, sizes.bulk_batch)
                record(variant, f"drain-{n // 1000}k", rate)
            for batch in sizes.steady_batches:
                producer.reset()
                figures = await scenarios.steady(target, batch, sizes.steady_seconds)
                for key, value in figures.items():
                    record(variant, key, value)
            if peer.LATENCY:
                producer.reset()
                from_call, from_ack = await scenarios.latency(
                    target, sizes.latency_jobs, sizes.latency_gap
                )
                for name, samples in (("latency", from_call), ("latency-ack", from_ack)):
                    figures = results[system].setdefault(variant, {})
                    figures.setdefault(f"{name}-samples", []).extend(samples)
                    record(variant, f"{name}-p50-ms", statistics.median(samples))
                    record(variant, f"{name}-p99-ms", scenarios.percentile(samples, 0.99))
        if opts.drain_1m and not opts.enqueue_only and system == "skiplock" and number == 1:
            variant = "concurrency 500"
            producer.reset()
            target = scenarios.Target(HERE, system, variant, producer)
            record(variant, "drain-1000k", await scenarios.drain(target, MILLION, 5_000))
        producer.reset()
        elapsed = await scenarios.enqueue_in_batches(producer, sizes.bulk_jobs, sizes.bulk_batch)
        record("", "bulk-enqueue", sizes.bulk_jobs / elapsed)
        for jobs_per_call in (1, 10):
            producer.reset()
            for key, value in (await scenarios.calls(producer, jobs_per_call, sizes.calls)).items():
                record("", key, value)
        producer.reset()
    finally:
        await producer.close()


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--systems", default=",".join(PEERS))
    parser.add_argument("--out", type=Path, default=HERE.parents[1] / "docs")
    parser.add_argument("--json", type=Path, default=None, help="Also save raw results here.")
    parser.add_argument("--quick", action="store_true", help="Tiny sizes: a smoke test.")
    parser.add_argument(
        "--drain-1m", action="store_true", help="skiplock: also drain 1,000,000 jobs (round 1)."
    )
    parser.add_argument(
        "--loop",
        choices=tuple(LOOPS),
        default="uvloop",
        help="The event loop of this process, where the producers run.",
    )
    parser.add_argument(
        "--enqueue-only",
        action="store_true",
        help="Only the producer's scenarios (bulk, one-job and ten-job calls): the systems "
        "seconds apart in each round, for many rounds. Prints the table; leaves --out alone.",
    )
    return parser


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker_main(sys.argv[2], sys.argv[3], sys.argv[4])
        return
    parser = arguments()
    opts = parser.parse_args()
    sizes = scenarios.Sizes.quick() if opts.quick else scenarios.Sizes()
    systems = [s for s in opts.systems.split(",") if s]
    for s in systems:
        if s not in PEERS:
            parser.error(f"unknown system {s!r}; choose from {', '.join(PEERS)}")

    from skiplock.bench import embedded_dsn

    server_dsn = embedded_dsn()
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        for s in systems:
            conn.execute(f'CREATE DATABASE "bench_{s}"')
    dsns = {s: re.sub(r"(postgresql://[^/]*/)[^?]*", rf"\1bench_{s}", server_dsn) for s in systems}
    meta: dict[str, Any] = {
        "date": date.today().isoformat(),
        "command": "python " + " ".join([f"bench/{HERE.name}", *sys.argv[1:]]),
        "rounds": opts.rounds,
        "nproc": os.cpu_count(),
        "postgresql": version[0] if version else "?",
        "load_start": scenarios.load(),
        "loop": opts.loop,
    }
    for s in systems:
        PEERS[s].install(dsns[s])

    results: report.Results = {s: {} for s in systems}
    loads: list[float] = []
    floor: dict[str, list[float]] = {"p50": [], "p99": []}

    async def run_all() -> None:
        for number in range(1, opts.rounds + 1):
            for s in systems:
                print(f"round {number}/{opts.rounds}: {s}", flush=True)
                await measure_round(s, dsns[s], sizes, number, opts, results, loads)
            if "skiplock" in systems and not opts.enqueue_only:
                samples = scenarios.sync_claim_floor(dsns["skiplock"], sizes.floor_jobs)
                floor["p50"].append(statistics.median(samples))
                floor["p99"].append(scenarios.percentile(samples, 0.99))
                print(f"  floor sync-claim p50 {floor['p50'][-1]:.2f} ms", flush=True)

    LOOPS[opts.loop](run_all())
    meta["load_end"] = scenarios.load()
    meta["load_min"], meta["load_max"] = (f"{f(loads):.2f}" for f in (min, max))
    meta["floor"] = floor if floor["p50"] else None
    configs = {s: PEERS[s].CONFIG for s in systems}
    block = report.markdown(results, meta, configs)
    block += "\n\n![throughput and latency](performance.png)"
    print(block)
    if not opts.enqueue_only:
        opts.out.mkdir(parents=True, exist_ok=True)
        report.write_doc(opts.out / "performance.md", block)
        report.plot(results, opts.out / "performance.png")
    if opts.json:
        opts.json.write_text(json.dumps({"meta": meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
