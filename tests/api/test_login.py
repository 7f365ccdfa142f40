"""POST /api/v1/login (and /api/login): a user's name and password for a JWT of the
user's scope; one answer for every bad credential; the failure limit; the audit log."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

import jwt
import psycopg
import pytest
from api_checks import DOCUMENT, assert_problem, publish_tasks
from argon2 import PasswordHasher
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import skiplock
from skiplock import store
from skiplock.api import AuthConfig, api_lifespan, create_app
from skiplock.errors import ConfigError
from skiplock.passwords import HASHER, hash_password

SECRET = "s" * 40
ISSUER = "https://skiplock.example.com"
AUDIENCE = "skiplock"
PASSWORD = "correct horse battery staple"
CONFIG = AuthConfig(jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE, max_failures=3)


@pytest.fixture(params=["", "/skiplock"], ids=["root", "mounted"])
def prefix(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def serve(api: Starlette, prefix: str) -> TestClient:
    if not prefix:
        return TestClient(api)
    host = Starlette(routes=[Mount(prefix, api)], lifespan=lambda _: api_lifespan(api))
    return TestClient(host, base_url=f"http://testserver{prefix}")


@pytest.fixture
def client(dsn: str, prefix: str) -> Iterator[TestClient]:
    publish_tasks(dsn, "t")
    with serve(create_app(skiplock.App(dsn), auth=CONFIG), prefix) as c:
        yield c


def add_user(conn: psycopg.Connection, name: str, scope: str, queues: str | None = None) -> None:
    assert store.create_user(name, hash_password(PASSWORD), scope, queues).run(conn)


def login_rows(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return conn.execute(
        "SELECT actor, target, status, detail ->> 'outcome', detail::text"
        " FROM skiplock.audit_log WHERE action = 'login' ORDER BY id"
    ).fetchall()


def test_a_login_gives_a_token_of_the_users_scope(
    client: TestClient, conn: psycopg.Connection
) -> None:
    add_user(conn, "ada", "read")
    response = client.post("/api/v1/login", json={"username": "ada", "password": PASSWORD})
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"token", "token_type", "expires_at", "scope", "queues"}
    assert (body["token_type"], body["scope"], body["queues"]) == ("bearer", "read", None)
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"], audience=AUDIENCE)
    assert (claims["sub"], claims["iss"], claims["scope"]) == ("ada", ISSUER, "read")
    assert claims["exp"] - claims["iat"] == 12 * 3600  # the default lifetime
    assert datetime.fromisoformat(body["expires_at"]).timestamp() == claims["exp"]
    headers = {"Authorization": f"Bearer {body['token']}"}
    # the token works on a route of its scope, and not on one that needs more
    assert client.get("/api/v1/jobs", headers=headers).status_code == 200
    refused = client.post("/api/v1/jobs", json={"task": "t"}, headers=headers)
    assert_problem(refused, 403, "forbidden")
    assert login_rows(conn)[0][:4] == ("ada", None, 200, "ok")
    (last_login,) = conn.execute("SELECT last_login_at FROM skiplock.users").fetchone()
    assert last_login is not None


def test_the_alias_answers_as_login_and_a_token_keeps_its_queues(
    client: TestClient, conn: psycopg.Connection
) -> None:
    add_user(conn, "mailer", "write", "emails*")
    response = client.post("/api/login", json={"username": "mailer", "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["scope"], body["queues"]) == ("write", "emails*")
    headers = {"Authorization": f"Bearer {body['token']}"}
    job = {"task": "t", "queue": "emails"}
    assert client.post("/api/v1/jobs", json=job, headers=headers).status_code == 201
    other = client.post("/api/v1/jobs", json={**job, "queue": "reports"}, headers=headers)
    assert other.status_code in (403, 404)
    # the mutating call is audited under the token's subject, as any JWT's
    (actor,) = conn.execute(
        "SELECT actor FROM skiplock.audit_log WHERE action LIKE 'POST /api/v1/jobs%' LIMIT 1"
    ).fetchone()
    assert actor == "jwt:mailer"


def test_every_bad_credential_answers_the_same(
    client: TestClient, conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    add_user(conn, "ada", "admin")
    add_user(conn, "gone", "admin")
    assert store.disable_user("gone").run(conn)
    caplog.set_level(logging.DEBUG)
    attempts = [
        {"username": "ada", "password": "wrong password"},
        {"username": "nobody", "password": PASSWORD},
        {"username": "gone", "password": PASSWORD},
    ]
    answers = []
    for attempt in attempts:
        response = client.post("/api/v1/login", json=attempt)
        assert_problem(response, 401, "unauthorized")
        answers.append((response.json(), response.headers.get("www-authenticate")))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0]["detail"] == "wrong username or password"
    rows = login_rows(conn)
    assert [row[:4] for row in rows] == [
        ("ada", None, 401, "denied"),
        ("nobody", None, 401, "denied"),
        ("gone", None, 401, "denied"),
    ]
    # neither password is written anywhere: not in the audit log, not in the logs
    everything = json.dumps([list(map(str, row)) for row in rows]) + caplog.text
    assert "wrong password" not in everything and PASSWORD not in everything
    dump = conn.execute("SELECT array_agg(a::text) FROM skiplock.audit_log a").fetchone()
    assert PASSWORD not in str(dump) and "wrong password" not in str(dump)


def test_failed_logins_count_toward_the_failure_limit(
    client: TestClient, conn: psycopg.Connection
) -> None:
    add_user(conn, "ada", "read")
    for _ in range(CONFIG.max_failures):
        bad = client.post("/api/v1/login", json={"username": "ada", "password": "guess"})
        assert_problem(bad, 401, "unauthorized")
    # now even the right password waits, and so does any bearer token from this address
    right = client.post("/api/v1/login", json={"username": "ada", "password": PASSWORD})
    assert_problem(right, 429, "too many failed attempts")
    assert int(right.headers["retry-after"]) >= 1
    limited = client.get("/api/v1/jobs", headers={"Authorization": "Bearer sk_whatever"})
    assert_problem(limited, 429, "too many failed attempts")
    statuses = [row[2] for row in login_rows(conn)]
    assert statuses == [401] * CONFIG.max_failures + [429]


def test_bad_tokens_count_toward_the_login_limit(
    client: TestClient, conn: psycopg.Connection
) -> None:
    add_user(conn, "ada", "read")
    for _ in range(CONFIG.max_failures):
        response = client.get("/api/v1/jobs", headers={"Authorization": "Bearer sk_nope"})
        assert_problem(response, 401, "unauthorized")
    response = client.post("/api/v1/login", json={"username": "ada", "password": PASSWORD})
    assert_problem(response, 429, "too many failed attempts")


def test_a_login_with_old_parameters_rehashes_the_password(
    client: TestClient, conn: psycopg.Connection
) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    assert store.create_user("ada", weak, "read", None).run(conn)
    response = client.post("/api/v1/login", json={"username": "ada", "password": PASSWORD})
    assert response.status_code == 200, response.text
    (stored,) = conn.execute("SELECT password_hash FROM skiplock.users").fetchone()
    assert stored != weak and not HASHER.check_needs_rehash(stored)
    HASHER.verify(stored, PASSWORD)
    again = client.post("/api/v1/login", json={"username": "ada", "password": PASSWORD})
    assert again.status_code == 200


@pytest.mark.parametrize(
    ("body", "error", "field"),
    [
        ({"username": "ada"}, "invalid field", "password"),
        ({"password": PASSWORD}, "invalid field", "username"),
        ({"username": "ada", "password": ""}, "invalid field", "password"),
        ({"username": "a b", "password": PASSWORD}, "invalid field", "username"),
        ({"username": "ada", "password": "\ud800"}, "invalid field", "password"),
        ({"username": "ada", "password": PASSWORD, "remember": True}, "unknown field", "remember"),
    ],
)
def test_a_malformed_body_is_a_422_naming_the_field(
    dsn: str, conn: psycopg.Connection, body: dict[str, object], error: str, field: str
) -> None:
    with TestClient(create_app(skiplock.App(dsn), auth=CONFIG)) as client:
        # json.dumps escapes the lone surrogate (\ud800), as a client may send it
        raw = json.dumps(body)
        headers = {"Content-Type": "application/json"}
        response = client.post("/api/v1/login", content=raw, headers=headers)
    assert_problem(response, 422, error, field)
    assert login_rows(conn) == []


def test_without_a_jwt_secret_login_says_how_to_configure_one(
    dsn: str, conn: psycopg.Connection
) -> None:
    add_user(conn, "ada", "read")
    attempt = {"username": "ada", "password": PASSWORD}
    with TestClient(create_app(skiplock.App(dsn), auth=AuthConfig())) as client:
        response = client.post("/api/v1/login", json=attempt)
    assert_problem(response, 501, "login not configured")
    assert "SKIPLOCK_JWT_SECRET" in response.json()["detail"]
    with TestClient(create_app(skiplock.App(dsn))) as client:
        response = client.post("/api/login", json=attempt)
    assert_problem(response, 501, "login not configured")
    assert "without authentication" in response.json()["detail"]


def test_the_login_lifetime_is_configurable(dsn: str, conn: psycopg.Connection) -> None:
    add_user(conn, "ada", "read")
    config = AuthConfig(
        jwt_secret=SECRET,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        login_lifetime=timedelta(minutes=5),
    )
    with TestClient(create_app(skiplock.App(dsn), auth=config)) as client:
        body = client.post("/api/v1/login", json={"username": "ada", "password": PASSWORD})
    claims = jwt.decode(body.json()["token"], SECRET, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["exp"] - claims["iat"] == 300
    with pytest.raises(ConfigError, match="login_lifetime must be > 0"):
        AuthConfig(login_lifetime=timedelta(0))


def test_openapi_documents_login_once() -> None:
    operation = DOCUMENT["paths"]["/api/v1/login"]["post"]
    assert operation["operationId"] == "login"
    assert operation["security"] == []
    assert {"200", "401", "422", "429", "501"} <= set(operation["responses"])
    assert "/api/login" not in DOCUMENT["paths"]
    ids = [op["operationId"] for item in DOCUMENT["paths"].values() for op in item.values()]
    assert ids.count("login") == 1
