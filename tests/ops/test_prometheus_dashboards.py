"""The Grafana dashboards and the alert rules against a real Prometheus: skiplock's API
(uvicorn on loopback) on a database with jobs done, and a real worker process with its
own --metrics-port, both scraped every second; then every target expression of every
dashboard panel, template variables substituted, returns data through Prometheus' HTTP
query API, and every alert rule loads and evaluates without error."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
import yaml
from prometheus_server import Prometheus, free_port

import skiplock
from conftest import wait_until
from skiplock.api import create_app

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "deploy" / "grafana").glob("*.json"))
RULE = ROOT / "deploy" / "kubernetes" / "base" / "prometheus-rule.yaml"
# What Grafana puts in place of the template variables: every queue, the rate window
# of a 1 s scrape.
VARIABLES = {"$queue": ".*", "$__rate_interval": "1m"}
W_STALLED = uuid.UUID("00000000-0000-4000-8000-0000000000c1")


class ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass

    def capture_signals(self):  # type: ignore[no-untyped-def, override]
        import contextlib

        return contextlib.nullcontext()


@pytest.fixture
def api(dsn: str) -> Iterator[str]:
    """skiplock's API on a free loopback port: host:port."""
    port = free_port()
    config = uvicorn.Config(
        create_app(skiplock.App(dsn)), host="127.0.0.1", port=port, log_level="warning"
    )
    server = ThreadServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20)
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def worker(dsn: str, tmp_path: Path) -> Iterator[str]:
    """A real `skiplock worker` of the demo app with --metrics-port: host:port."""
    port = free_port()
    log = tmp_path / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKIPLOCK_")}
    command = [sys.executable, "-m", "skiplock", "--dsn", dsn, "worker"]
    command += ["--app", "skiplock.demo:app", "--queue", "default", "--queue", "emails"]
    command += ["--metrics-port", str(port), "--poll-interval", "0.2"]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_until(lambda: "worker metrics on" in log.read_text(), timeout=60)
        yield f"127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def seed(conn: psycopg.Connection) -> None:
    """A system that has done things: jobs of every outcome, a rescue, a stalled
    worker's loop, a paused queue, a job of an unpublished task, a depth sample."""
    conn.execute("SELECT skiplock.enqueue('echo', queue => 'emails') FROM generate_series(1, 5)")
    conn.execute(
        "SELECT skiplock.enqueue('math', '{\"a\": 1}', queue => 'emails', max_attempts => 1)"
    )
    conn.execute("SELECT skiplock.enqueue('echo', queue => 'reports')")
    conn.execute("SELECT skiplock.claim_jobs(%s, ARRAY['reports'], 10)", (W_STALLED,))
    conn.execute("SELECT skiplock.rescue_expired_jobs(p_now => now() + interval '1 hour')")
    conn.execute("SELECT skiplock.enqueue('ghost', queue => 'reports')")
    conn.execute("SELECT skiplock.pause_queue('reports')")
    conn.execute(
        "SELECT skiplock.register_worker(%s, 'h', 1, ARRAY['reports'], 4, 'v')", (W_STALLED,)
    )
    conn.execute(
        "UPDATE skiplock.workers SET stalled_loops = ARRAY['claim'] WHERE id = %s", (W_STALLED,)
    )
    conn.execute("SELECT skiplock.sample_queue_depth()")


def panel_targets() -> Iterator[tuple[str, str, str]]:
    """(dashboard file, panel title, expression with the variables substituted)."""
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                expr = target["expr"]
                for name, value in VARIABLES.items():
                    expr = expr.replace(name, value)
                assert "$" not in expr, (path.name, panel["title"], expr)
                yield path.name, panel["title"], expr


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in result)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_every_panel_query_returns_data_and_every_rule_evaluates(
    dsn: str, conn: psycopg.Connection, api: str, worker: str, tmp_path: Path
) -> None:
    seed(conn)
    rules = tmp_path / "skiplock-rules.yml"
    rules.write_text(yaml.safe_dump(yaml.safe_load(RULE.read_text())["spec"]))
    prometheus = Prometheus(
        tmp_path, {"skiplock-api": api, "skiplock-worker": worker}, rule_files=[rules]
    )
    try:
        wait_until(lambda: len(prometheus.query("up == 1")) == 2, timeout=30)
        # work done while Prometheus watches, a few jobs at a time until it has seen
        # the counters move between scrapes: the rates are above zero

        def moving() -> bool:
            conn.execute("SELECT skiplock.enqueue('echo', queue => 'emails')")
            conn.execute("SELECT skiplock.enqueue('echo')")
            conn.execute(  # fails for good: no `b`
                "SELECT skiplock.enqueue('math', '{\"a\": 1}', max_attempts => 1)"
            )
            return all(
                finite(prometheus.query(f"sum(rate({counter}[1m])) > 0"))
                for counter in (
                    "skiplock_jobs_succeeded_total",
                    "skiplock_jobs_failed_total",
                    "skiplock_process_jobs_total",
                    'skiplock_process_jobs_total{status="failed"}',
                )
            )

        wait_until(moving, timeout=60, interval=0.5)
        checked = 0
        empty = []
        for dashboard, title, expr in panel_targets():
            if not finite(prometheus.query(expr)):
                empty.append((dashboard, title, expr))
            checked += 1
        assert not empty, empty
        assert checked >= 40

        # every alert rule was loaded and has evaluated without error
        def evaluated() -> list[dict[str, Any]] | None:
            groups = prometheus.get("rules")["groups"]
            found = [r for g in groups for r in g["rules"]]
            return (
                found
                if found and all(r.get("lastEvaluation", "0001")[:4] != "0001" for r in found)
                else None
            )

        found = wait_until(evaluated, timeout=30, interval=0.5)
        assert {r["name"] for r in found} >= {"SkiplockQueueLagging", "SkiplockNoLiveWorker"}
        assert len(found) == len(yaml.safe_load(rules.read_text())["groups"][0]["rules"])
        assert all(r["health"] == "ok" for r in found), [
            (r["name"], r.get("lastError")) for r in found if r["health"] != "ok"
        ]
    finally:
        prometheus.stop()


def test_dashboards_use_a_datasource_variable() -> None:
    """No hard-coded datasource: every panel and target reads ${datasource}, a
    `datasource` variable of type prometheus."""
    assert {p.name for p in DASHBOARDS} == {
        f"skiplock-{name}.json" for name in ("overview", "queues", "workers", "latency", "failures")
    }
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        uids.add(dashboard["uid"])
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        text = path.read_text()
        assert '"uid": "${datasource}"' in text
        for panel in dashboard["panels"]:
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], (path.name, panel["title"])
    assert len(uids) == len(DASHBOARDS)
