"""A worker's own /metrics (`skiplock worker --metrics-port`): the attempts this process
ran by task and status, their run times, its slots and busy slots, build info and the
process collectors; a failing scrape leaves the server serving; a port that cannot be
bound is one line on stderr."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

import skiplock
from conftest import async_wait_until, wait_until
from skiplock.cli import main
from skiplock.context import JobContext
from skiplock.migrate import load_migrations
from skiplock.version import __version__
from skiplock.worker import Worker
from skiplock.worker.metrics import WorkerMetrics


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of http://127.0.0.1:port/metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def app(dsn: str) -> Iterator[skiplock.App]:
    application = skiplock.App(dsn)
    yield application
    application.close()


def test_counts_this_process_attempts_and_slots(
    app: skiplock.App, conn: psycopg.Connection
) -> None:
    seen_while_running: dict[str, float] = {}

    @app.task(name="ok")
    def ok() -> None:
        return None

    @app.task(name="boom")
    def boom() -> None:
        raise RuntimeError("boom")

    @app.task(name="flaky")
    def flaky() -> None:
        raise RuntimeError("again")

    @app.task(name="probe")
    async def probe(ctx: JobContext) -> None:
        # this process's own endpoint, scraped while this job holds a slot
        figures = await asyncio.to_thread(scrape, metrics.port)
        seen_while_running["busy"] = figures[("skiplock_process_busy_slots", ())]
        seen_while_running["slots"] = figures[("skiplock_process_slots", ())]

    worker = Worker(app, concurrency=3, poll_interval=0.05)
    metrics = WorkerMetrics(worker).serve("127.0.0.1", 0)

    async def run() -> None:
        runner = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(worker.started.wait(), 30)
            # the probe first, alone: the one busy slot it sees is its own
            conn.execute("SELECT skiplock.enqueue('probe')")
            await async_wait_until(lambda: worker.processed >= 1, timeout=30)
            # max_attempts given here: the worker may not have published its defaults
            for task, attempts in (("ok", 1), ("ok", 1), ("boom", 1), ("flaky", 2)):
                conn.execute("SELECT skiplock.enqueue(%s, max_attempts => %s)", (task, attempts))
            await async_wait_until(lambda: worker.processed >= 5, timeout=30)
        finally:
            worker.stop()
            await asyncio.wait_for(runner, 30)

    try:
        asyncio.run(run())
        figures = scrape(metrics.port)
    finally:
        metrics.close()

    def jobs(task: str, status: str) -> float:
        labels = (("queue", "default"), ("status", status), ("task", task))
        return figures.get(("skiplock_process_jobs_total", labels), 0)

    assert jobs("ok", "succeeded") == 2
    assert jobs("boom", "failed") == 1
    assert jobs("flaky", "retrying") == 1
    assert jobs("probe", "succeeded") == 1
    duration = (("queue", "default"), ("task", "ok"))
    assert figures[("skiplock_process_job_duration_seconds_count", duration)] == 2
    inf = (("le", "+Inf"), *duration)
    assert figures[("skiplock_process_job_duration_seconds_bucket", inf)] == 2
    assert seen_while_running == {"busy": 1, "slots": 3}
    assert figures[("skiplock_process_busy_slots", ())] == 0
    build = (("schema_version", str(len(load_migrations()))), ("version", __version__))
    assert figures[("skiplock_build_info", build)] == 1
    assert figures[("process_cpu_seconds_total", ())] > 0
    assert any(name == "python_info" for name, _ in figures)


class FailsOnce(Collector):
    def __init__(self) -> None:
        self.calls = 0

    def describe(self) -> list[Metric]:
        return []  # registered without a first collect

    def collect(self) -> Iterator[Metric]:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("a collector failed")
        return iter(())


def test_a_failing_scrape_leaves_the_server_serving(app: skiplock.App) -> None:
    worker = Worker(app)
    worker_metrics = WorkerMetrics(worker)
    worker_metrics.registry.register(FailsOnce())
    server = worker_metrics.serve("127.0.0.1", 0)
    try:
        with pytest.raises(urllib.error.HTTPError) as failed:
            scrape(server.port)
        assert failed.value.code == 500
        assert scrape(server.port)[("skiplock_process_slots", ())] == 10
    finally:
        server.close()


def test_hook_info_without_a_duration_still_counts(app: skiplock.App) -> None:
    worker_metrics = WorkerMetrics(Worker(app))
    info: Mapping[str, Any] = {"queue": "q", "task": "t"}
    worker_metrics.count("cancelled", None, info)
    labels = {"queue": "q", "task": "t", "status": "cancelled"}
    assert worker_metrics.registry.get_sample_value("skiplock_process_jobs_total", labels) == 1


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SKIPLOCK_")}


def test_a_port_in_use_is_one_line_on_stderr(dsn: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main,
            ["--dsn", dsn, "worker", "--app", "skiplock.demo:app", "--metrics-port", str(port)],
            env=clean_env(),
        )
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"error: --metrics-port: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


def test_a_bad_port_is_a_usage_error(dsn: str) -> None:
    for bad in ("0", "70000", "x"):
        result = CliRunner().invoke(
            main,
            ["--dsn", dsn, "worker", "--app", "skiplock.demo:app", "--metrics-port", bad],
            env=clean_env(),
        )
        assert result.exit_code == 2, result.output
        assert "--metrics-port" in result.stderr


@pytest.mark.slow
def test_worker_command_serves_its_metrics(dsn: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "worker.log"
    command = [sys.executable, "-m", "skiplock", "--dsn", dsn, "worker"]
    args = ["--app", "skiplock.demo:app", "--concurrency", "7", "--metrics-port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, *args], stdout=out, stderr=subprocess.STDOUT, env=clean_env()
        )

    def answers() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        assert proc.poll() is None, log.read_text()
        try:
            return scrape(port)
        except OSError:
            return None

    try:
        figures = wait_until(answers, timeout=60)
        assert figures[("skiplock_process_slots", ())] == 7
        assert figures[("process_cpu_seconds_total", ())] > 0
        assert any(name == "skiplock_build_info" for name, _ in figures)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
    assert f"worker metrics on http://127.0.0.1:{port}/metrics" in log.read_text()
