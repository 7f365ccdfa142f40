"""What the webhook triggers (sql/functions/130_webhooks.sql) cost when finished jobs carry
no callback URL — the drain path of every job that does not use webhooks:

    python bench/webhook_trigger.py [--dsn DSN] [--batch 200] [--rounds 200]

Each round inserts a batch of finished rows into job_history in one statement (what
_finish_jobs does for a completed batch) under EXPLAIN ANALYZE, which reports the time of
each AFTER trigger apart. PostgreSQL measures the trigger alone, so the figure does not
drown in a noisy machine's variance as a wall-clock comparison would. Prints min /
median / max milliseconds per statement, per trigger and for the whole statement.
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
INSERT = (
    "EXPLAIN (ANALYZE) INSERT INTO skiplock.job_history (id, task, args, queue, priority,"
    " status, attempt, max_attempts, tags, meta, errors, created_at, finished_at)"
    " SELECT %(first)s + g, 't', '{}', 'default', 0, 'succeeded', 1, 20, '{}', '{}', '[]',"
    " now(), now() FROM generate_series(1, %(batch)s) g"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=200)
    options = parser.parse_args()
    dsn = options.dsn or embedded_dsn()
    times: dict[str, list[float]] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        for i in range(options.rounds + 5):
            params = {"first": 10**12 + i * options.batch, "batch": options.batch}
            plan = [row[0] for row in conn.execute(INSERT, params)]
            if i < 5:  # warm-up
                continue
            for line in plan:
                if m := TRIGGER_LINE.match(line):
                    times.setdefault(f"trigger {m[1]}", []).append(float(m[2]))
                elif m := TOTAL_LINE.match(line):
                    times.setdefault("whole statement", []).append(float(m[1]))
        conn.execute("DELETE FROM skiplock.job_history WHERE id >= 10^12")
    print(f"batch {options.batch}, {options.rounds} rounds; ms min / median / max")
    for name, values in times.items():
        print(f"{name:34} {min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}")


if __name__ == "__main__":
    main()
