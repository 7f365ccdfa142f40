"""docker-compose.yml: the services are there and every skiplock one finds the database."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
DSN = "postgresql://skiplock:skiplock@postgres:5432/skiplock"


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())["services"]
    return services


def test_services() -> None:
    services = _services()
    assert set(services) == {"postgres", "migrate", "worker", "api"}
    assert services["postgres"]["image"].startswith("postgres:17")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["api"]["ports"] == ["8000:8000"]


def test_skiplock_services_share_the_dsn_and_wait_for_the_schema() -> None:
    services = _services()
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, command in (
        ("migrate", "skiplock migrate"),
        ("worker", "skiplock worker --app skiplock.demo:app"),
        ("api", "skiplock serve --host 0.0.0.0 --port 8000"),
    ):
        service = services[name]
        assert service["environment"]["SKIPLOCK_DSN"] == DSN
        assert service["image"].startswith("python:3.12")
        assert "pip install --quiet /src" in service["command"]
        assert command in service["command"]
        if name != "migrate":
            condition = service["depends_on"]["migrate"]["condition"]
            assert condition == "service_completed_successfully"
