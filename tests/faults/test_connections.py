"""Scenarios 3, 4 and 8: worker connections that die, loudly or silently."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from harness import (
    AckedIds,
    Figures,
    Workers,
    backends,
    check_all,
    hot_count,
    listen_backend,
    running_count,
    terminate_backend,
    wait_for,
)

import skiplock

pytestmark = pytest.mark.slow
FAST = {"lease": 3, "poll_interval": 0.2, "rescue_interval": 0.5, "schedule_interval": 0}


def enqueue(app: skiplock.App, acked: AckedIds, n: int, **options: Any) -> list[int]:
    ids = app.enqueue_many([{"task": "faults.record", **options}] * n)
    acked.add(ids)
    return ids


def test_3_terminated_claim_heartbeat_and_listen_connections(
    dsn: str, ledger: psycopg.Connection[Any], workers: Workers, acked: AckedIds
) -> None:
    app = skiplock.App(dsn)
    w = workers.start(concurrency=4, **FAST)
    enqueue(app, acked, 20)
    wait_for(lambda: hot_count(ledger) == 0)
    terminated = in_flight = 0
    # Each of the worker's connections in turn (the pool's, which claim, complete and
    # heartbeat, then the LISTEN one), with jobs arriving after each.
    for _ in range(4):
        pids = [pid for pid, _ in backends(ledger, w)]
        assert pids, "the worker has no connections"
        for pid in pids:
            in_flight += running_count(ledger)
            terminated += terminate_backend(ledger, pid)
            enqueue(app, acked, 10)
            # Pickup through whatever survives: the poll, a reconnected listener.
            wait_for(lambda: hot_count(ledger) == 0, 30)
    wait_for(lambda: listen_backend(ledger, w) is not None, 30)
    assert workers.alive(w)
    assert "listener reconnected" in workers.log(w)
    figures = check_all(
        ledger, acked.read(), rescue_interval=0.5, in_flight=in_flight, figures=Figures("3")
    )
    assert figures["statuses"] == {"succeeded": len(acked.read())}
    figures["backends_terminated"] = terminated
    figures.report()
    app.close()
