"""Chaos tier, scenario 8c: worker processes on 1, 2 and 4 hosts against one PostgreSQL.

Each host is a network namespace of its own (tests/faults/hosts.py) that reaches the
server only over its veth link; four real `skiplock worker` processes (the CLI, over
faults_app) are spread evenly over the hosts: the same total at every host count. While
a backlog drains, one host's link is cut for longer than a lease (every packet vanishes:
its workers, their LISTEN and ledger connections all go silent at once), then, once that
host is back and running jobs again, a worker on the last host is SIGKILLed. At the end:
every job succeeded (I1-I5 of harness.py), every host ran jobs, the cut-off host ran
jobs again after its link came back without a restart, and every run beyond a job's
last one was by a worker that lost its lease to a fault (the cut host's or the killed
one), never by a healthy worker. Needs root and `ip netns` (iproute2; .ci/run installs
it).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fault_fixtures import pg_server_fixture  # noqa: F401
from harness import (
    AckedIds,
    Figures,
    PgServer,
    check_all,
    explain_reruns,
    netns_unavailable,
    sized,
    wait_for,
)
from hosts import Host, Hosts, HostWorkers, serve_hosts

import skiplock

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(600)]
WORKERS = 4  # worker processes in all, spread evenly over the hosts
LEASE = 3.0
# The CLI's worker rescues every 5 s (WorkerSettings.rescue_interval): a lost lease is
# taken back within LEASE + 5 s.
RESCUE_INTERVAL = 5.0
WORKER_ARGS = ["--concurrency", "8", "--lease", str(LEASE), "--poll-interval", "0.5"]
WORKER_ARGS += ["--shutdown-grace", "5"]
DOWN_SECONDS = LEASE + 2  # the cut host's leases run out while it is away
JOB_SECONDS = 0.5  # long enough that each worker holds several jobs when a fault hits
BACKLOG = int(sized(400, 4_000))  # jobs before the cut
AFTER = int(sized(200, 2_000))  # jobs enqueued after the cut, and again before the kill


@pytest.fixture(name="hosts", params=[1, 2, 4], ids=lambda n: f"{n}-hosts")
def hosts_fixture(request: pytest.FixtureRequest) -> Iterator[Hosts]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    with Hosts(request.param) as made:
        yield made


def _jobs(n: int) -> list[dict[str, Any]]:
    return [{"task": "faults.sleep", "args": {"seconds": JOB_SECONDS}}] * n


def _one(conn: psycopg.Connection[Any], query: str, params: Any = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _started_by(conn: psycopg.Connection[Any], pids: list[int], jobs: Any = None) -> int:
    """Starts by these worker processes (of these jobs, if named)."""
    return int(
        _one(
            conn,
            "SELECT count(*) FROM ledger WHERE event = 'start' AND pid = ANY(%s)"
            " AND (%s::bigint[] IS NULL OR job_id = ANY(%s))",
            (pids, jobs, jobs),
        )
    )


def _running_on(conn: psycopg.Connection[Any], pids: list[int]) -> int:
    return int(
        _one(
            conn,
            "SELECT count(*) FROM skiplock.jobs j JOIN skiplock.workers w ON w.id = j.worker_id"
            " WHERE j.state = 'running' AND w.pid = ANY(%s)",
            (pids,),
        )
    )


def _running(conn: psycopg.Connection[Any]) -> int:
    return int(_one(conn, "SELECT count(*) FROM skiplock.jobs WHERE state = 'running'"))


def _succeeded(conn: psycopg.Connection[Any], ids: list[int]) -> int:
    return int(
        _one(
            conn,
            "SELECT count(*) FROM skiplock.job_history WHERE id = ANY(%s) AND status = 'succeeded'",
            (ids,),
        )
    )


def _unfaulted_reruns(conn: psycopg.Connection[Any], faulted: list[int]) -> list[Any]:
    """Starts of a job other than its succeeding one by a worker no fault touched."""
    return conn.execute(
        """SELECT l.job_id, l.attempt, l.pid FROM ledger l
           JOIN skiplock.job_history h ON h.id = l.job_id
           WHERE l.event = 'start' AND (l.attempt, l.worker_id) <> (h.attempt, h.worker_id)
             AND l.pid <> ALL(%s)""",
        (faulted,),
    ).fetchall()


def test_8c_workers_on_many_hosts_link_cut_and_sigkill(
    pg_server: PgServer, hosts: Hosts, tmp_path: Path
) -> None:
    serve_hosts(pg_server, hosts)
    conn = psycopg.connect(pg_server.dsn, autocommit=True)
    app = skiplock.App(pg_server.dsn)
    acked = AckedIds(tmp_path / "acked")
    workers = HostWorkers(pg_server, tmp_path, WORKER_ARGS)
    figures = Figures(f"8c-{len(hosts)}-hosts")
    try:
        for i in range(WORKERS):
            workers.start(hosts[i % len(hosts)])
        pids = {name: workers.pid(name) for name in workers.procs}

        def host_pids(host: Host) -> list[int]:
            return [pids[name] for name in workers.on(host)]

        backlog = app.enqueue_many(_jobs(BACKLOG))
        acked.add(backlog)
        # Every worker on every host is taking jobs before the first fault.
        for pid in pids.values():
            wait_for(lambda pid=pid: _started_by(conn, [pid]) >= 1, 120)

        # Fault 1: the first host's link is cut while its workers hold jobs.
        cut, victim_host = hosts[0], hosts[len(hosts) - 1]
        cut_pids = host_pids(cut)
        wait_for(lambda: _running_on(conn, cut_pids) >= 1, 60)
        in_flight = _running(conn)
        cut_holding = _running_on(conn, cut_pids)
        cut.down()
        down_at = time.monotonic()
        try:
            # The cut lasts longer than a lease; nothing to wait for but time itself.
            time.sleep(DOWN_SECONDS)
        finally:
            cut.up()
        figures["link_down_seconds"] = round(time.monotonic() - down_at, 1)
        up_at = _one(conn, "SELECT now()")
        # The cut host finds its way back by itself: its workers claim and run jobs
        # enqueued after the link came back.
        after = app.enqueue_many(_jobs(AFTER))
        acked.add(after)
        wait_for(lambda: _started_by(conn, cut_pids, after) >= 1, 120)
        figures["seconds_until_cut_host_ran_new_jobs"] = round(
            float(_one(conn, "SELECT extract(epoch FROM now() - %s)", (up_at,))), 1
        )

        # Fault 2: a worker on the last host is SIGKILLed while it holds jobs.
        last = app.enqueue_many(_jobs(AFTER))
        acked.add(last)
        victim = workers.on(victim_host)[-1]
        wait_for(lambda: _running_on(conn, [pids[victim]]) >= 1, 60)
        in_flight += _running(conn)
        killed_holding = _running_on(conn, [pids[victim]])
        workers.kill(victim)

        every = backlog + after + last
        wait_for(lambda: _succeeded(conn, every) == len(every), 300)
        codes = workers.stop_all()
        faulted = [*cut_pids, pids[victim]]
        assert _unfaulted_reruns(conn, faulted) == [], explain_reruns(conn)
        check_all(
            conn,
            acked.read(),
            rescue_interval=RESCUE_INTERVAL,
            in_flight=in_flight,
            figures=figures,
        )
        # Each host did its share; the survivors stopped cleanly on SIGTERM.
        per_host = {host.ns: _started_by(conn, host_pids(host)) for host in hosts}
        assert all(per_host.values()), per_host
        assert {name: code for name, code in codes.items() if name != victim} == {
            name: 0 for name in pids if name != victim
        }, {name: workers.log(name)[-2000:] for name in pids}
        assert codes[victim] == -signal.SIGKILL
        figures["hosts"] = len(hosts)
        figures["workers"] = WORKERS
        figures["jobs"] = len(every)
        figures["starts_per_host"] = list(per_host.values())
        figures["cut_host_jobs_running_at_cut"] = cut_holding
        figures["killed_worker_jobs_running_at_kill"] = killed_holding
        figures.report()
    finally:
        workers.kill_all()
        app.close()
        conn.close()
        acked.close()
