"""docker-compose.yml works as its header says: the services start in an order compose
can follow, each one others wait on is healthy when they start, every command is a
skiplock command, and the header's example (a token, then curl) is run here against the
API that `skiplock serve` runs, on a real database."""

from __future__ import annotations

import json
import re
import shlex
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import psycopg
import yaml
from click.testing import CliRunner
from psycopg.conninfo import conninfo_to_dict
from starlette.testclient import TestClient

import skiplock
from skiplock.api import create_app
from skiplock.api.auth import OPEN_ROUTES, AuthConfig
from skiplock.cli import main

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def header() -> list[str]:
    """The example of the file's opening comment: its shell lines, continuations joined."""
    lines: list[str] = []
    for raw in COMPOSE.read_text().splitlines():
        if not raw.startswith("#"):
            break
        text = raw[1:].strip()
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + text
        else:
            lines.append(text)
    return lines


def skiplock_commands(command: str) -> list[list[str]]:
    """The `skiplock ...` invocations in a service's `sh -c "a && b"` command."""
    words = shlex.split(command)
    script = words[2] if words[:2] == ["sh", "-c"] else command
    found = []
    for part in re.split(r"&&|;|\|\|", script):
        args = shlex.split(part)
        if args and args[0] == "skiplock":
            found.append(args[1:])
    return found


def header_command(line: str) -> list[str]:
    """The skiplock arguments of a header line `... docker compose exec -T api skiplock
    ARGS)`."""
    m = re.search(r"docker compose exec -T \w+ skiplock ([^)]*)", line)
    assert m, line
    return shlex.split(m[1])


def option(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def test_the_start_order_is_one_compose_can_follow() -> None:
    found = services()
    graph: dict[str, set[str]] = {}
    for name, service in found.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        graph[name] = set(depends)
        for needed, rule in depends.items():
            assert needed in found, (name, needed)
            assert rule["condition"] in CONDITIONS, (name, rule)
            if rule["condition"] == "service_healthy":
                assert found[needed].get("healthcheck", {}).get("test"), needed
            if rule["condition"] == "service_completed_successfully":
                # a one-shot: restarting it would never let the others start
                assert "restart" not in found[needed], needed
    order = list(TopologicalSorter(graph).static_order())  # raises on a cycle
    assert order.index("postgres") < order.index("migrate") < order.index("worker")
    assert order.index("migrate") < order.index("api")


def test_every_command_is_a_real_skiplock_command() -> None:
    runner = CliRunner()
    commands = [c for s in services().values() for c in skiplock_commands(s.get("command", ""))]
    commands += [header_command(line) for line in header() if "exec -T" in line]
    assert len(commands) == 4  # migrate, worker, serve, and the header's token
    for args in commands:
        result = runner.invoke(main, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)


def test_the_services_share_the_database_postgres_creates() -> None:
    found = services()
    postgres = found["postgres"]["environment"]
    for name in ("migrate", "worker", "api"):
        dsn = conninfo_to_dict(found[name]["environment"]["SKIPLOCK_DSN"])
        assert dsn["host"] == "postgres"
        assert (dsn["user"], dsn["password"], dsn["dbname"]) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            postgres["POSTGRES_DB"],
        )


def test_the_header_example_matches_the_api_service() -> None:
    api = services()["api"]
    (serve,) = skiplock_commands(api["command"])
    assert serve[0] == "serve" and "--no-auth" not in serve
    assert option(serve, "--host") == "0.0.0.0"  # reachable through the published port
    port = option(serve, "--port")
    (published,) = api["ports"]
    host_port, container_port = published.split(":")
    assert container_port == port
    curls = [line for line in header() if line.startswith("curl")]
    assert curls
    for curl in curls:
        assert f"localhost:{host_port}/api/v1/" in curl
        assert '-H "Authorization: Bearer $TOKEN"' in curl
    (token_line,) = [line for line in header() if line.startswith("TOKEN=")]
    assert "docker compose exec -T api skiplock tokens create" in token_line
    assert option(header_command(token_line), "--scope") in (
        "write",
        "admin",
    )
    # the API's health check probes the port it serves on, on a route open without a token
    check = " ".join(api["healthcheck"]["test"])
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", check)
    assert url and url[1] == port and url[2] in OPEN_ROUTES


def test_the_header_example_runs(empty_dsn: str) -> None:
    """What the containers do, in order, on a fresh database: migrate; the worker
    publishes the demo tasks; the token; the header's two requests to the API."""
    runner = CliRunner()
    found = services()

    def cli(args: list[str]) -> str:
        result = runner.invoke(main, ["--dsn", empty_dsn, *args])
        assert result.exit_code == 0, (args, result.output)
        return result.stdout

    (migrate,) = skiplock_commands(found["migrate"]["command"])
    cli(migrate)
    (worker,) = skiplock_commands(found["worker"]["command"])
    cli(["tasks", "publish", "--app", option(worker, "--app")])
    (token_line,) = [line for line in header() if line.startswith("TOKEN=")]
    token = cli(header_command(token_line)).strip()

    post, get = [shlex.split(line) for line in header() if line.startswith("curl")]
    body = json.loads(option(post, "-d"))
    with TestClient(create_app(skiplock.App(empty_dsn), auth=AuthConfig())) as client:
        headers = {"Authorization": f"Bearer {token}"}
        created = client.post("/api/v1/jobs", json=body, headers=headers)
        assert created.status_code == 201, created.text
        path = get[-1].split("localhost:8000", 1)[1]
        assert path == f"/api/v1/jobs/{created.json()['id']}"
        assert client.get(path, headers=headers).json()["task"] == "echo"
        assert client.post("/api/v1/jobs", json=body).status_code == 401  # without it
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT task FROM skiplock.all_jobs").fetchall() == [("echo",)]
