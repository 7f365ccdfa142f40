"""bench/compare.py runs every peer at its documented best: PgQueuer as its CLI and its
benchmark tool run it (asyncpg on uvloop, `pgq autovac`, batch sizes 10 / 100 / 500),
and the table reports each system's best configuration by name. These check the
harness's configuration, never a timing."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

BENCH = Path(__file__).parents[2] / "bench"
# what compare.py says of a run, for the report's tests
META = {"date": "d", "command": "c", "rounds": 1, "nproc": 2, "postgresql": "18", "loop": "x"}
META |= {"load_start": "0", "load_end": "0", "load_min": 0.0, "load_max": 0.0}


@pytest.fixture(scope="module")
def comparison() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("comparison")
    finally:
        sys.path.remove(str(BENCH))


def test_pgqueuer_is_run_on_asyncpg_and_uvloop_at_three_batch_sizes(
    comparison: ModuleType,
) -> None:
    peer = importlib.import_module("comparison.pgqueuer_peer")
    assert sorted(peer.VARIANTS.values()) == [10, 100, 500]
    assert (peer.DRIVER, peer.EVENT_LOOP) == ("asyncpg", "uvloop")
    assert peer.INSTALL_COMMANDS == (("install",), ("autovac",))
    peers = importlib.import_module("comparison.peers").PEERS
    assert list(peers) == ["skiplock", "pgqueuer", "procrastinate", "raw-sql"]
    assert sorted(peers["skiplock"].VARIANTS.values()) == [200, 500]


def url(dsn: str) -> str:
    """The DSN as a URL, the form pgqueuer's CLI and asyncpg take (compare.py's own are)."""
    p = conninfo_to_dict(dsn)
    return f"postgresql://{p['user']}@/{p['dbname']}?host={p['host']}&port={p['port']}"


def test_pgqueuer_worker_runs_on_uvloop_with_an_asyncpg_connection(
    comparison: ModuleType, empty_dsn: str
) -> None:
    dsn = url(empty_dsn)
    uvloop = pytest.importorskip("uvloop")
    asyncpg = pytest.importorskip("asyncpg")
    pytest.importorskip("pgqueuer")
    peer = importlib.import_module("comparison.pgqueuer_peer")
    peer.install(dsn)
    with psycopg.connect(dsn) as conn:
        options = conn.execute(
            "SELECT reloptions FROM pg_class WHERE relname = 'pgqueuer'"
        ).fetchone()
    assert options is not None
    assert {"autovacuum_vacuum_scale_factor=0.01", "fillfactor=70"} <= set(options[0])

    class Ready(Exception):
        pass

    loops: list[asyncio.AbstractEventLoop] = []

    def ready() -> None:  # called by the worker once its PgQueuer is built
        loops.append(asyncio.get_running_loop())
        raise Ready

    with pytest.raises(Ready):
        peer.worker(dsn, "batch 500", ready, lambda stamp: None)
    assert isinstance(loops[0], uvloop.Loop)

    async def connection_type() -> type:
        connection = await peer.connect(dsn)
        await connection.close()
        return type(connection)

    assert issubclass(asyncio.run(connection_type()), asyncpg.Connection)


def test_the_table_names_each_systems_best_configuration(comparison: ModuleType) -> None:
    report = importlib.import_module("comparison.report")
    results = {
        "pgqueuer": {
            "batch 10": {"drain-20k": [4.0, 5.0, 6.0], "latency-ack-p50-ms": [3.0]},
            "batch 100": {"drain-20k": [8.0, 9.0, 7.0], "latency-ack-p50-ms": [2.0]},
            "batch 500": {"drain-20k": [1.0, 2.0, 3.0], "latency-ack-p50-ms": [4.0]},
        }
    }
    assert report.best(results["pgqueuer"], "drain-20k") == ("batch 100", [8.0, 9.0, 7.0])
    assert report.best(results["pgqueuer"], "latency-ack-p50-ms")[0] == "batch 100"
    rows = {key: cells for key, _, cells in report.rows(results)}
    assert rows["drain-20k"] == ["**8.00** (7.00 to 9.00), batch 100"]


def test_shares_are_of_the_one_connection_ceiling_and_leave_out_steady(
    comparison: ModuleType,
) -> None:
    report = importlib.import_module("comparison.report")
    results = {
        "skiplock": {
            "concurrency 500": {"drain-20k": [40.0], "steady-100": [50.0]},
            "": {"bulk-enqueue": [30.0]},
        },
        "raw-sql": {
            "1 connection": {"drain-20k": [100.0], "steady-100": [10.0]},
            "2 connections": {"drain-20k": [200.0], "steady-100": [20.0]},
            "": {"bulk-enqueue": [60.0]},
        },
    }
    meta = META | {"rounds": 1}
    text = report.markdown(results, meta, {"skiplock": "", "raw-sql": ""})
    assert "- skiplock: drain-20k 40%, bulk-enqueue 50%" in text
    assert "steady-100 " not in text.split("Share of the one-connection")[1]


def test_the_producers_calls_are_also_compared_within_each_round(comparison: ModuleType) -> None:
    """A round's producer figures of two systems are taken close together; their ratio
    round by round is printed beside the ratio of the medians, which mixes rounds."""
    report = importlib.import_module("comparison.report")
    results = {
        "skiplock": {"": {"single-enqueue": [100.0, 300.0, 90.0], "enqueue-10": [50.0]}},
        "pgqueuer": {"": {"single-enqueue": [200.0, 150.0, 100.0], "enqueue-10": [40.0, 1.0]}},
    }
    meta = META | {"rounds": 3}
    text = report.markdown(results, meta, {"skiplock": "", "pgqueuer": ""})
    assert "single-enqueue 0.67x" in text  # medians: 100 / 150
    within = text.split("The producer's calls round by round")[1]
    # rounds: 0.5, 2.0, 0.9; enqueue-10 left out, its rounds do not pair
    assert "single-enqueue 0.90x (0.50 to 2.00)" in within and "enqueue-10" not in within


def test_the_producers_run_on_uvloop_unless_asked_and_the_table_says_which(
    comparison: ModuleType,
) -> None:
    """PgQueuer's benchmark tool enqueues on uvloop: the harness's producers run there
    by default (`--loop asyncio` for asyncio's own), and the table names the loop."""
    uvloop = pytest.importorskip("uvloop")
    producer = importlib.import_module("comparison.producer")
    loops = {}

    async def note(name: str) -> None:
        loops[name] = type(asyncio.get_running_loop())

    for name, run in producer.LOOPS.items():
        run(note(name))
    assert loops["uvloop"] is uvloop.Loop
    assert not issubclass(loops["asyncio"], uvloop.Loop)
    compare = importlib.import_module("compare")
    assert compare.arguments().parse_args([]).loop == "uvloop"
    assert compare.arguments().parse_args(["--loop", "asyncio"]).loop == "asyncio"
    report = importlib.import_module("comparison.report")
    text = report.markdown({}, META | {"loop": "uvloop"}, {})
    assert "the producers on uvloop." in text
