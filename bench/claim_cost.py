"""What one claim costs, by how the claimed queues are set up, measured in one run.

    python bench/claim_cost.py [--dsn DSN] [--claims 2000] [--limit 10] [--rounds 3]
                               [--variants one-queue,...] [--json out.json]

Each variant fills its queues with enough no-op jobs for every claim, then times
`skiplock.claim_jobs` calls of up to --limit jobs, one per transaction, on one
connection, as a worker's claim connection makes them (synchronous_commit off). The
figure is the client's round trip per claim, in microseconds: min / median / max of the
rounds' medians. Variants:

- one-queue      one queue (the single-queue path: no share pass)
- three-queues   three queues, default settings: jobs compete by job priority across them
- priorities     three queues of queue priorities 10, 5 and 0
- weights        three queues of weights 3, 2 and 1: each claim split by a weighted draw

Rounds are interleaved (every variant once, then again), so a noisy machine weighs on
all variants alike. Every variant starts from an empty jobs table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from skiplock.bench import embedded_dsn, load_average
from skiplock.config import resolve_dsn
from skiplock.migrate import migrate

QUEUES = ("claim-a", "claim-b", "claim-c")


@dataclass(frozen=True)
class Variant:
    queues: tuple[str, ...]
    priorities: tuple[int, ...] = (0, 0, 0)
    weights: tuple[int, ...] = (1, 1, 1)


VARIANTS = {
    "one-queue": Variant(QUEUES[:1]),
    "three-queues": Variant(QUEUES),
    "priorities": Variant(QUEUES, priorities=(10, 5, 0)),
    "weights": Variant(QUEUES, weights=(3, 2, 1)),
}


def prepare(conn: psycopg.Connection[Any], variant: Variant, jobs: int) -> None:
    conn.execute("DELETE FROM skiplock.jobs WHERE queue = ANY(%s)", (list(QUEUES),))
    conn.execute("DELETE FROM skiplock.queues WHERE name = ANY(%s)", (list(QUEUES),))
    for queue, priority, weight in zip(
        variant.queues, variant.priorities, variant.weights, strict=False
    ):
        conn.execute(
            "INSERT INTO skiplock.jobs (task, queue, priority)"
            " SELECT 'bench.noop', %s, mod(i, 11) - 5 FROM generate_series(1, %s) AS i",
            (queue, jobs),
        )
        if (priority, weight) != (0, 1):
            conn.execute("SELECT skiplock.set_queue_order(%s, %s, %s)", (queue, priority, weight))
    conn.execute("VACUUM ANALYZE skiplock.jobs")


def time_claims(conn: psycopg.Connection[Any], variant: Variant, claims: int, limit: int) -> float:
    """The median round trip of `claims` claims, in microseconds."""
    worker = uuid.uuid4()
    queues = list(variant.queues)
    took = []
    for _ in range(claims):
        started = time.perf_counter()
        conn.execute(
            "SELECT count(*) FROM skiplock.claim_jobs(%s, %s, %s)", (worker, queues, limit)
        )
        took.append(time.perf_counter() - started)
    return statistics.median(took) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dsn", help="default: SKIPLOCK_DSN, DATABASE_URL, else embedded")
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--json", dest="json_path")
    opts = parser.parse_args()
    chosen = {name.strip(): VARIANTS[name.strip()] for name in opts.variants.split(",")}
    dsn = resolve_dsn(opts.dsn) or embedded_dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        foreign = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM skiplock.jobs WHERE queue <> ALL(%s))", (list(QUEUES),)
        ).fetchone()
        if foreign and foreign[0]:
            sys.exit("this database holds other jobs; use an empty one")
        conn.execute("SET synchronous_commit = off")
        figures: dict[str, list[float]] = {name: [] for name in chosen}
        loads = [load_average()]
        for number in range(1, opts.rounds + 1):
            for name, variant in chosen.items():
                # every claim finds a full batch: each queue can fill every claim alone
                prepare(conn, variant, opts.claims * opts.limit)
                time_claims(conn, variant, 100, opts.limit)  # plans and caches warm
                figures[name].append(time_claims(conn, variant, opts.claims, opts.limit))
                print(f"round {number} {name}: {figures[name][-1]:.0f} us", file=sys.stderr)
            loads.append(load_average())
        prepare(conn, Variant(()), 0)
    print(f"claim_jobs of up to {opts.limit} jobs, client round trip in us: min / median / max")
    print(f"load average at start and after each round: {' | '.join(loads)}")
    first = next(iter(figures))
    base = statistics.median(figures[first])
    print(f"{'variant':14} {'min':>7} {'median':>7} {'max':>7} {'vs ' + first:>16}")
    for name, rounds in figures.items():
        low, mid, high = min(rounds), statistics.median(rounds), max(rounds)
        print(f"{name:14} {low:7.0f} {mid:7.0f} {high:7.0f} {mid / base:16.2f}")
    if opts.json_path:
        with open(opts.json_path, "w") as out:
            json.dump({"limit": opts.limit, "us_per_claim": figures, "loads": loads}, out)


if __name__ == "__main__":
    main()
