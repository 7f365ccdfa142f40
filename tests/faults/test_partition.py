"""Chaos tier, scenario 8b: the network link between a worker and PostgreSQL goes down.

Scenario 8 freezes one backend (SIGSTOP); here the cable is pulled: the worker runs in
a network namespace and reaches PostgreSQL only over a veth pair, whose host end is
taken down. Every packet vanishes, nothing answers and nothing is refused, for all of
the worker's connections at once (LISTEN, claims, heartbeats, completions). A worker on
the host side keeps working and rescues the cut-off worker's jobs; once the link is
back, the cut-off worker finds its way back by itself. Its connections notice the
silence within about a lease (TCP keepalives and tcp_user_timeout set by the worker).
Needs root and `ip netns`.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fault_fixtures import pg_server_fixture, workers_fixture  # noqa: F401
from harness import (
    AckedIds,
    Figures,
    PgServer,
    VethLink,
    Workers,
    check_all,
    netns_unavailable,
    wait_for,
)

import skiplock

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(600)]
SETTINGS = {
    "concurrency": 4,
    "lease": 3,
    "rescue_interval": 0.5,
    "poll_interval": 0.5,
    "probe_interval": 1.0,
    "schedule_interval": 0,
}
DOWN_SECONDS = 8.0  # more than lease + rescue: the cut-off worker's jobs must be rescued


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _ran_on(conn: psycopg.Connection[Any], pid: int) -> int:
    row = conn.execute(
        "SELECT count(*) FROM ledger WHERE event = 'finish' AND pid = %s", (pid,)
    ).fetchone()
    return int(row[0]) if row else 0


def _statuses(conn: psycopg.Connection[Any], ids: list[int]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT status, count(*) FROM skiplock.all_jobs WHERE id = ANY(%s) GROUP BY status",
        (ids,),
    ).fetchall()
    return {status: count for status, count in rows}


@pytest.fixture
def link() -> Any:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    with VethLink() as veth:
        yield veth


def test_8b_link_to_postgres_goes_down_silently(
    pg_server: PgServer, workers: Workers, link: VethLink, tmp_path: Path
) -> None:
    pg_server.listen_also(link.host_ip, f"{link.ns_ip}/32")
    conn = psycopg.connect(pg_server.dsn, autocommit=True)
    acked = AckedIds(tmp_path / "acked")
    app = skiplock.App(pg_server.dsn)
    # The cut-off worker, inside the namespace: PostgreSQL only over the veth link.
    workers.dsn = f"host={link.host_ip} port={pg_server.port} user=postgres dbname=postgres"
    workers.start("far", prefix=link.prefix, **SETTINGS)
    far_pid = workers.pid("far")
    first = app.enqueue_many([{"task": "faults.sleep", "args": {"seconds": 0.3}}] * 8)
    acked.add(first)
    wait_for(lambda: _ran_on(conn, far_pid) >= 1, 60)
    # The host-side worker, on the loopback: it is never cut off.
    workers.dsn = pg_server.dsn
    workers.start("near", **SETTINGS)
    wait_for(lambda: _statuses(conn, first) == {"succeeded": 8}, 60)

    # Long jobs, so some are running on the far worker when the link goes down.
    long_jobs = app.enqueue_many([{"task": "faults.sleep", "args": {"seconds": 4}}] * 8)
    acked.add(long_jobs)
    wait_for(
        lambda: (
            conn.execute(
                "SELECT count(*) FROM ledger l WHERE event = 'start' AND pid = %s"
                " AND job_id = ANY(%s)",
                (far_pid, long_jobs),
            ).fetchone()[0]  # type: ignore[index]
            >= 1
        ),
        60,
    )
    in_flight = conn.execute(
        "SELECT count(*) FROM skiplock.jobs WHERE state = 'running'"
    ).fetchone()[0]  # type: ignore[index]
    cut_off = [
        row[0]
        for row in conn.execute(
            "SELECT j.id FROM skiplock.jobs j JOIN skiplock.workers w ON w.id = j.worker_id"
            " WHERE j.state = 'running' AND w.pid = %s",
            (far_pid,),
        ).fetchall()
    ]
    link.down()
    cpu_before, down_at = _cpu_seconds(far_pid), time.monotonic()
    try:
        # While the far worker is cut off, the near one takes over its jobs when their
        # leases run out, and everything else goes on.
        during = app.enqueue_many([{"task": "faults.record"}] * 20)
        acked.add(during)
        wait_for(lambda: _statuses(conn, long_jobs + during).get("succeeded", 0) == 28, 60)
        time.sleep(max(0.0, DOWN_SECONDS - (time.monotonic() - down_at)))
        down_for = time.monotonic() - down_at
        cpu = _cpu_seconds(far_pid) - cpu_before
    finally:
        link.up()
    up_at = time.monotonic()
    # The far worker finds its way back without a restart: stop the near one, and the
    # next jobs can only run there.
    workers.signal("near", signal.SIGTERM)
    assert workers.wait("near") == 0
    after = app.enqueue_many([{"task": "faults.record"}] * 5)
    acked.add(after)
    wait_for(lambda: _statuses(conn, after) == {"succeeded": 5}, 120)
    back_after = time.monotonic() - up_at
    assert workers.alive("far")
    assert cpu < 0.5 * down_for, f"far worker used {cpu:.2f} s CPU in {down_for:.1f} s"
    rescued = conn.execute(
        "SELECT count(*) FROM skiplock.all_jobs WHERE id = ANY(%s)"
        ' AND errors @> \'[{"type": "LeaseExpired"}]\'',
        (cut_off,),
    ).fetchone()[0]  # type: ignore[index]
    assert rescued == len(cut_off) >= 1
    figures = check_all(
        conn, acked.read(), rescue_interval=0.5, in_flight=in_flight, figures=Figures("8b")
    )
    figures["link_down_seconds"] = round(down_for, 1)
    figures["far_worker_cpu_share_while_down"] = round(cpu / down_for, 3)
    figures["cut_off_running_jobs_rescued"] = rescued
    figures["seconds_until_far_worker_ran_jobs_again"] = round(back_after, 1)
    log = workers.log("far")
    figures["far_log_warnings"] = sorted(
        {line.split(" WARNING ", 1)[1][:60] for line in log.splitlines() if " WARNING " in line}
    )
    figures.report()
    # Each of its connections noticed the silence within about a lease (keepalives and
    # tcp_user_timeout), rather than waiting on the kernel for a quarter of an hour.
    for what in ("claim failed", "heartbeat failed", "listener connection lost"):
        assert any(w.startswith(what) for w in figures["far_log_warnings"]), what
    app.close()
    conn.close()
