"""A worker process's own /metrics (`skiplock worker --metrics-port`): what this process
ran, by task, its slots, and the series every process exports (process_metrics).

The API's /metrics reads the database and so describes the whole system; these figures
live only in this process's memory (they start at zero when it starts, as Prometheus
counters do), so they are scraped from every worker. Outcomes are counted from the
app's finish hooks, which fire once the outcome is written, with the status the
database gave it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from skiplock.context import JobContext
from skiplock.migrate import load_migrations
from skiplock.process_metrics import register_process_metrics
from skiplock.worker.runtime import Worker

log = logging.getLogger("skiplock.worker")

# The statuses an outcome is written with (the app's finish hooks).
OUTCOMES = ("succeeded", "retrying", "failed", "cancelled")
# A handler's run time, from milliseconds to an hour (the API's job_duration_bounds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class SlotCollector(Collector):
    """This process's slots and busy slots, read at each scrape."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "skiplock_process_slots",
            "Jobs this worker process runs at once (its concurrency).",
            value=self.worker.settings.concurrency,
        )
        yield GaugeMetricFamily(
            "skiplock_process_busy_slots",
            "Jobs this worker process is running.",
            value=len(self.worker.running_job_ids),
        )


class WorkerMetrics:
    """The registry of one worker process: counters fed by the app's finish hooks, the
    slot gauges and the process collectors."""

    def __init__(self, worker: Worker) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs = Counter(
            "skiplock_process_jobs",
            "Job attempts this process ran whose outcome was written, by task and status"
            " (succeeded, retrying, failed for good, cancelled).",
            ["queue", "task", "status"],
            registry=self.registry,
        )
        self.durations = Histogram(
            "skiplock_process_job_duration_seconds",
            "Run time of the attempts this process ran, by task.",
            ["queue", "task"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(SlotCollector(worker))
        register_process_metrics(self.registry, schema_version=len(load_migrations()))
        for status in OUTCOMES:
            worker.app.on(status)(self.count)

    def count(self, event: str, ctx: JobContext | None, info: Mapping[str, Any]) -> None:
        """The finish hook: one attempt written with status `event`."""
        queue, task = str(info.get("queue", "")), str(info.get("task", ""))
        self.jobs.labels(queue, task, event).inc()
        if "duration_ms" in info:
            self.durations.labels(queue, task).observe(float(info["duration_ms"]) / 1000)

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve GET /metrics on host:port from a daemon thread (prometheus-client's
        server: one thread per request, so a request that fails ends alone and the
        server goes on). Raises OSError when the address cannot be bound."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        log.info("worker metrics on http://%s:%d/metrics", host, server.server_port)
        return MetricsServer(server, thread)


class MetricsServer:
    """A running metrics server; `close` stops it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
