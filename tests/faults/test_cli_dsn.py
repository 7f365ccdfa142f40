"""Scenario 16: the CLI against a refused, a silent (blackholed) and an auth-failing DSN:
a non-zero exit within the connect timeout, one line, no traceback, no password."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
from fault_fixtures import pg_server_fixture  # noqa: F401
from harness import Figures, PgServer, free_port

PASSWORD = "s3cret-Pa55word"
COMMANDS = [
    ["jobs", "list"],
    ["enqueue", "faults.record"],
    ["migrate"],
    ["worker", "--app", "faults_app:app"],
]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and then never says a word."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


@pytest.fixture
def auth_server(pg_server: PgServer) -> PgServer:
    """The private server, with a role that must log in by password over TCP."""
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute("CREATE ROLE app LOGIN PASSWORD 'the-right-one'")
    hba = pg_server.pgdata / "pg_hba.conf"
    hba.write_text("host all app 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    with psycopg.connect(pg_server.dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    return pg_server


def run_cli(dsn: str, command: list[str]) -> tuple[int, str, str, float]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
        ),
    }
    env.pop("SKIPLOCK_DSN", None)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "skiplock", "--dsn", dsn, *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,  # a hang guard, far above the 10 s connect timeout
    )
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def test_16_cli_against_unreachable_and_refusing_databases(
    silent_port: int, auth_server: PgServer
) -> None:
    dsns = {
        "refused": f"postgresql://app:{PASSWORD}@127.0.0.1:{free_port()}/skiplock",
        # The DSN's connect_timeout is honoured (the CLI's own default is 10 s).
        "silent": f"postgresql://app:{PASSWORD}@127.0.0.1:{silent_port}/skiplock?connect_timeout=3",
        "auth": f"postgresql://app:{PASSWORD}@127.0.0.1:{auth_server.port}/postgres",
    }
    cases = [(kind, dsn, command) for kind, dsn in dsns.items() for command in COMMANDS]
    with ThreadPoolExecutor(len(cases)) as pool:
        results = list(pool.map(lambda case: run_cli(case[1], case[2]), cases))
    figures = Figures("16")
    for (kind, _, command), (code, out, err, seconds) in zip(cases, results, strict=True):
        what = f"{kind} {' '.join(command)}"
        assert code != 0, what
        assert len(err.strip().splitlines()) == 1, f"{what}: {err!r}"
        assert "Traceback" not in err, what
        assert PASSWORD not in out + err, f"{what} echoed the password: {err!r}"
        assert err.startswith("error: cannot connect to the database"), f"{what}: {err!r}"
        # Wall time includes the interpreter's start (~1-4 s with 12 at once on 2 cores).
        figures[f"{kind}_max_s"] = max(figures.values.get(f"{kind}_max_s", 0), round(seconds, 2))
        figures[f"{kind}_stderr"] = err.strip()
    figures.report()
