"""Measurements the bench takes of processes and of the server: CPU, memory,
transactions, statement counts, checkpoints, and the figures of samples. bench/*.py
use them too."""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg


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
