"""One worker subprocess per measurement, the same wrapper for every system."""

from __future__ import annotations

import logging
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from comparison.peers import PEERS

READY_TIMEOUT = 60.0


def worker_main(system: str, variant: str, dsn: str) -> None:
    """Build SYSTEM's worker, print `ready`, wait for `go` on stdin, then run until
    SIGTERM. The handler prints `lat <enqueue time> <start time>` for jobs that carry
    an enqueue time (the time, exactly as sent, names the job)."""

    def stamp(sent: float | None) -> None:
        if sent:
            print(f"lat {sent!r} {time.time()!r}", flush=True)

    def ready_then_go() -> None:
        print("ready", flush=True)
        sys.stdin.readline()

    # WARNING: skiplock's runtime logs an INFO line per job, which a benchmark would pay
    logging.basicConfig(level=logging.WARNING)
    PEERS[system].worker(dsn, variant, ready_then_go, stamp)


class Workers:
    """One worker subprocess; `go()` starts it; `stop()` collects its latency lines."""

    def __init__(self, script: Path, system: str, variant: str, dsn: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(script), "worker", system, variant, dsn],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                self.stop()
                raise RuntimeError(f"{system} worker not ready in {READY_TIMEOUT} s")
            line = self.proc.stdout.readline()
            if line.strip() == b"ready":
                break
            if not line:
                raise RuntimeError(f"{system} worker exited with {self.proc.wait()}")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def stop(self) -> dict[float, float]:
        """{enqueue time the job carried: handler start time}"""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return {
            float(sent): float(started)
            for sent, started in re.findall(rb"^lat ([0-9.e+-]+) ([0-9.e+-]+)$", out, re.M)
        }
