"""The scenarios of `skiplock bench` against one database (see skiplock.bench)."""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from skiplock import store
from skiplock.bench.handlers import HANDLERS, QUEUE, app
from skiplock.bench.measure import (
    checkpoints,
    claim_stats,
    committed_transactions,
    cpu_used,
    latency_figures,
    load_average,
    percentile,
    rss_megabytes,
    server_cpu_seconds,
    statement_calls,
    summarize,
    total_cpu_seconds,
)
from skiplock.bench.processes import WorkerProcesses, wait_for
from skiplock.bench.settings import SCENARIOS, BenchSettings

BULK_BATCH = 1_000  # jobs per enqueue_many call in bulk-enqueue and drain setup
SINGLE_CALLS = 5_000  # at most this many calls in single-enqueue
LATENCY_JOBS = 200  # at most this many jobs in latency
LATENCY_GAP = 0.02  # seconds between two latency jobs: 50 jobs/s, workers idle between
PRODUCER_TICK = 0.01  # the steady producer enqueues what is due every 10 ms
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


def truncate_job_tables_sql(conn: psycopg.Connection[Any]) -> str:
    """The TRUNCATE of those JOB_TABLES this database has."""
    present = [
        row[0]
        for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'skiplock' AND tablename = ANY(%s)",
            (list(JOB_TABLES),),
        )
    ]
    return "TRUNCATE " + ", ".join(f"skiplock.{name}" for name in present)


@dataclass
class Measured:
    """One round of one scenario: named figures, and raw samples for plots."""

    figures: dict[str, float]
    samples: list[float] = field(default_factory=list)
    enqueued: int = 0
    succeeded: int = 0
    left: int = 0  # still in the hot table when the round ended (steady's backlog)


class Bench:
    """The scenarios against one database; `run()` does every round of the chosen ones."""

    def __init__(self, dsn: str, settings: BenchSettings) -> None:
        settings.validate()
        self.dsn = dsn
        self.s = settings
        self.app = app
        self.app.dsn = dsn
        self.task = HANDLERS[settings.handler]
        self.args = {"pad": "x" * settings.args_bytes} if settings.args_bytes else {}

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
            conn.execute(truncate_job_tables_sql(conn))
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
