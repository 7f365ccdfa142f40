"""`--log-format json` on `serve` and `dev`: every stderr line is one JSON object,
uvicorn's startup and access lines included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import httpx
import pytest

from conftest import wait_until
from dev_process import free_port, run_dev

pytestmark = pytest.mark.slow
SKIPLOCK = (sys.executable, "-m", "skiplock")


def json_lines(lines: list[str]) -> list[dict[str, Any]]:
    """Every line parsed; fails naming the first line that is not a JSON object."""
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line: {line!r}")
        assert isinstance(record, dict), line
        records.append(record)
    return records


def access_of(records: list[dict[str, Any]], path: str) -> dict[str, Any]:
    return next(r for r in records if r["logger"] == "uvicorn.access" and r["http"]["path"] == path)


def test_serve_logs_json_uvicorn_included(dsn: str) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            *SKIPLOCK,
            "--dsn",
            dsn,
            "serve",
            "--no-auth",
            "--port",
            str(port),
            "--log-format",
            "json",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("SKIPLOCK_")},
    )

    def up() -> bool:
        assert proc.poll() is None, "skiplock serve exited"
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    records = json_lines(err.splitlines())
    assert any(r["logger"] == "uvicorn.error" for r in records), records
    access = access_of(records, "/health")
    assert access["http"]["method"] == "GET" and access["http"]["status"] == 200
    assert access["level"] == "info"


def test_dev_logs_json_from_the_environment(dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKIPLOCK_")}
    with run_dev(dsn, env={**env, "SKIPLOCK_LOG_FORMAT": "json"}) as dev:
        job = dev.api.post("/api/v1/jobs", json={"task": "echo", "args": {"n": 1}}).json()
        wait_until(lambda: dev.logged(f'"job_id": {job["id"]}'), timeout=60)
        dev.api.get("/health")
        wait_until(lambda: dev.logged('"path": "/health"'), timeout=60)
    records = json_lines(dev.log)
    (done,) = [r for r in records if r.get("job_id") == job["id"]]
    assert (done["task"], done["status"]) == ("echo", "succeeded")
    assert access_of(records, "/health")["http"]["status"] == 200
