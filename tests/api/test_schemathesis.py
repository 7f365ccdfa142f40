"""Property-based fuzzing of the whole API against its own /openapi.json (schemathesis),
as an admin, through a real uvicorn server: no 500s, and every answer (status, content
type, body) must be one the document describes. One check is left out:
positive_data_acceptance (a schema-valid request must get 2xx), because valid-looking
requests are refused by rules no schema can state: a task nobody registered (422), a
job id that does not exist (404), a job in the wrong state (409). A few examples per
operation keep the run short; the database is real."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import psycopg
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

import skiplock
from conftest import wait_until
from skiplock import store
from skiplock.api import AuthConfig, create_app
from skiplock.api.auth import hash_token, new_token

EXAMPLES_PER_OPERATION = 15


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        pass

    def capture_signals(self):  # type: ignore[no-untyped-def, override]
        import contextlib

        return contextlib.nullcontext()


@pytest.fixture
def server(dsn: str, conn: psycopg.Connection) -> Iterator[tuple[str, str]]:
    token = new_token()
    assert store.create_api_token("fuzz", "admin", None, hash_token(token)).run(conn)
    conn.execute(
        "SELECT skiplock.publish_tasks(NULL, %s::jsonb)",
        ('[{"name": "t", "args_schema": {"type": "object"}}]',),
    )
    # With a JWT secret, so that login answers as in production (not 501 for want of one).
    auth = AuthConfig(
        jwt_secret="f" * 32, jwt_issuer="fuzz", jwt_audience="fuzz", max_failures=1_000_000
    )
    app = create_app(skiplock.App(dsn), auth=auth)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical")
    server = ThreadServer(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=20)
    yield f"http://127.0.0.1:{port}", token
    server.should_exit = True
    thread.join(10)


def test_api_matches_its_openapi_document(server: tuple[str, str]) -> None:
    base_url, token = server
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", headers=headers)
    # Driven by hand rather than with @schema.parametrize: a fixture-loaded schema needs
    # schemathesis' pytest plugin, which does not run on this pytest.
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=base_url, headers=headers, excluded_checks=[positive_data_acceptance]
            )

        check()
