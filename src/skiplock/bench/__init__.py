"""`skiplock bench`: measure skiplock on a database, with real worker processes.

Scenarios (each round starts from empty skiplock tables):

- bulk-enqueue    enqueue_many in batches of BULK_BATCH on one connection: jobs/s
- single-enqueue  one `enqueue` per call on one connection: calls/s, p50/p99 per call,
                  and committed transactions per call (1.0: one round trip per call)
- drain           N jobs enqueued while the bench queue is paused, W worker processes
                  started and ready, then the queue is resumed: jobs/s from the resume
                  to the last finish, both read from the database clock
- steady          a producer enqueuing at --rate jobs/s beside W workers for --duration
                  seconds: enqueued/s, completed/s and the backlog left at the end
- latency         one job every LATENCY_GAP seconds to idle workers, p50/p90/p99/max of
                  started_at - created_at from skiplock.job_history (database clock,
                  from the enqueue statement's start) and, as ack_*, of the handler's
                  time.time() at start minus the producer's when its enqueue returned
- idle            W idle workers for --idle-seconds: CPU % of one core per worker (from
                  /proc), claim statements per second (pg_stat_statements when loaded)
                  and committed transactions per second on the database
- held-transaction  (only when named) load at half the drain rate; after --hold-margin
                  seconds an idle REPEATABLE READ transaction opens and holds its snapshot
                  for --hold-seconds, then load goes on for --hold-margin seconds:
                  completed/s before, during (min and median per interval) and after,
                  the claim's mean time and the jobs table's dead tuples at their peak

`--soak SECONDS` (Bench.soak) runs W workers for that long at half the rate a drain
reached, and prints one row per --sample-interval: enqueued/s, completed/s, backlog,
the jobs table's size and dead tuples, and the workers' RSS.

The bench app (`skiplock.bench:app`) has three tasks, one per --handler kind; workers
are `python -m skiplock.bench` subprocesses running skiplock's Worker on queue QUEUE.
Besides the producer calls, this package sends its own SQL: TRUNCATE between rounds and
reads of PostgreSQL's statistics views; no job changes state outside the SQL API.
"""

from skiplock.bench.handlers import HANDLERS, QUEUE, app
from skiplock.bench.harness import JOB_TABLES, Bench, Measured, truncate_job_tables_sql
from skiplock.bench.measure import load_average
from skiplock.bench.processes import BenchError, WorkerProcesses, embedded_dsn
from skiplock.bench.report import render_soak, render_table
from skiplock.bench.settings import DEFAULT_SCENARIOS, SCENARIOS, BenchSettings
from skiplock.bench.worker import serve

__all__ = [
    "DEFAULT_SCENARIOS",
    "HANDLERS",
    "JOB_TABLES",
    "QUEUE",
    "SCENARIOS",
    "Bench",
    "BenchError",
    "BenchSettings",
    "Measured",
    "WorkerProcesses",
    "app",
    "embedded_dsn",
    "load_average",
    "render_soak",
    "render_table",
    "serve",
    "truncate_job_tables_sql",
]
