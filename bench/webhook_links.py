"""What the links between jobs and their webhook deliveries cost
(sql/functions/130_webhooks.sql: webhook_deliveries, written by _enqueue_webhooks and
deleted by _webhook_deliveries_deleted):

    python bench/webhook_links.py [--dsn DSN] [--batch 200] [--rounds 100] [--links 100000]

Under EXPLAIN ANALYZE, which reports each AFTER trigger's time apart (so the figure does
not drown in a noisy machine's variance as a wall-clock comparison would), each round
runs the statements whose triggers the links add to, on `--batch` rows:

- prune: a DELETE of finished rows from job_history, as prune_job_history's, first with
  no link at all (no job uses webhooks: the trigger's first probe finds the table empty),
  then with `--links` links of other jobs present (two index probes per deleted row);
- finish with callbacks: an INSERT of finished rows that carry a callback URL into
  job_history, whose trigger enqueues one delivery each and now writes their links.

Prints min / median / max milliseconds per trigger and for the whole statement.
"""

from __future__ import annotations

import argparse
import re
import statistics

import psycopg

from skiplock.bench import embedded_dsn
from skiplock.migrate import migrate

TRIGGER_LINE = re.compile(r"\s*Trigger (\S+): time=([\d.]+) calls=\d+")
TOTAL_LINE = re.compile(r"\s*Execution Time: ([\d.]+) ms")
FINISHED = (
    "INSERT INTO skiplock.job_history (id, task, args, queue, priority, status, attempt,"
    " max_attempts, tags, meta, errors, created_at, finished_at, callback_url)"
    " SELECT %(first)s + g, 't', '{}', 'bench', 0, 'succeeded', 1, 20, '{}', '{}', '[]',"
    " now(), now() - interval '30 days', %(callback)s"
    " FROM generate_series(1, %(batch)s) g"
)
PRUNE = (
    "EXPLAIN (ANALYZE) DELETE FROM skiplock.job_history h"
    " WHERE h.id BETWEEN %(first)s + 1 AND %(first)s + %(batch)s"
)
LINKS = (
    "INSERT INTO skiplock.webhook_deliveries (job_id, delivery_id)"
    " SELECT 2 * 10^13 + g, 3 * 10^13 + g FROM generate_series(1, %s) g"
)


def timed(plan: list[str], times: dict[str, list[float]], label: str) -> None:
    for line in plan:
        if m := TRIGGER_LINE.match(line):
            times.setdefault(f"{label}: trigger {m[1]}", []).append(float(m[2]))
        elif m := TOTAL_LINE.match(line):
            times.setdefault(f"{label}: whole statement", []).append(float(m[1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--links", type=int, default=100_000)
    options = parser.parse_args()
    dsn = options.dsn or embedded_dsn()
    times: dict[str, list[float]] = {}
    batch = options.batch
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        conn.execute("DELETE FROM skiplock.webhook_deliveries")
        for label, links in (("prune, no links", 0), (f"prune, {options.links} links", 1)):
            if links:
                conn.execute(LINKS, (options.links,))
                conn.execute("ANALYZE skiplock.webhook_deliveries")
            for i in range(options.rounds + 5):
                params = {"first": 10**13 + i * batch, "batch": batch, "callback": None}
                conn.execute(FINISHED, params)
                plan = [row[0] for row in conn.execute(PRUNE, params)]
                if i >= 5:  # after a warm-up
                    timed(plan, times, label)
        conn.execute("DELETE FROM skiplock.webhook_deliveries")
        for i in range(options.rounds + 5):
            params = {
                "first": 4 * 10**13 + i * batch,
                "batch": batch,
                "callback": "https://example.com/hook",
            }
            plan = [row[0] for row in conn.execute(f"EXPLAIN (ANALYZE) {FINISHED}", params)]
            if i >= 5:
                timed(plan, times, "finish with callbacks")
        conn.execute("DELETE FROM skiplock.jobs WHERE task = 'skiplock.webhook'")
        conn.execute("DELETE FROM skiplock.job_history WHERE id >= 10^13")
        conn.execute("DELETE FROM skiplock.webhook_deliveries")
    print(f"batch {batch}, {options.rounds} rounds; ms min / median / max")
    for name, values in times.items():
        print(f"{name:60} {min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}")


if __name__ == "__main__":
    main()
