"""Auth: API tokens, JWTs, scopes, queue-limited tokens, failure limits, the audit log."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import httpx
import jwt
import psycopg
import pytest
from api_checks import DOCUMENT, assert_problem, enqueue, publish_tasks
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

import skiplock
from conftest import wait_until
from skiplock import store
from skiplock.api import AuthConfig, api_lifespan, create_app
from skiplock.api.auth import hash_token, new_token
from skiplock.errors import ConfigError

SECRET = "s" * 40
ISSUER = "https://id.example.com"
AUDIENCE = "skiplock"
W_ID = "6f1c1d2e-3b4a-4c5d-8e6f-7a8b9c0d1e2f"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(params=["", "/skiplock"], ids=["root", "mounted"])
def prefix(request: pytest.FixtureRequest) -> str:
    """Where the API is served: alone at the root, or mounted in a host app."""
    prefix: str = request.param
    return prefix


def serve(api: Starlette, prefix: str) -> TestClient:
    """A client of `api` whose paths (/api/v1/jobs) reach it at `prefix` in a host app."""
    if not prefix:
        return TestClient(api)
    host = Starlette(routes=[Mount(prefix, api)], lifespan=lambda _: api_lifespan(api))
    return TestClient(host, base_url=f"http://testserver{prefix}")


@pytest.fixture
def client(dsn: str, rsa_key: rsa.RSAPrivateKey, prefix: str) -> Iterator[TestClient]:
    config = AuthConfig(
        jwt_secret=SECRET,
        jwt_public_key=public_pem(rsa_key),
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    publish_tasks(dsn, "t")
    with serve(create_app(skiplock.App(dsn), auth=config), prefix) as c:
        yield c


def make_token(
    conn: psycopg.Connection, name: str, scope: str, queues: str | None = None
) -> dict[str, str]:
    """A new API token in the database; the Authorization header that carries it."""
    token = new_token()
    assert store.create_api_token(name, scope, queues, hash_token(token)).run(conn)
    return {"Authorization": f"Bearer {token}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims(**changes: Any) -> dict[str, Any]:
    base = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": int(time.time()) + 300,
        "scope": "write",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_without_a_valid_token_401(client: TestClient, conn: psycopg.Connection) -> None:
    response = client.get("/api/v1/jobs")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    for header in ("Bearer sk_nope", "Basic abc", "Bearer", "Bearer not.a.jwt"):
        response = client.get("/api/v1/jobs", headers={"Authorization": header})
        assert_problem(response, 401, "unauthorized")
    headers = make_token(conn, "gone", "admin")
    assert client.get("/api/v1/jobs", headers=headers).status_code == 200
    assert store.revoke_api_token("gone").run(conn)
    assert_problem(client.get("/api/v1/jobs", headers=headers), 401, "unauthorized")
    assert not store.revoke_api_token("gone").run(conn)


def test_open_routes_need_no_token(client: TestClient) -> None:
    for path in ("/health", "/api/v1/health", "/ready", "/metrics", "/openapi.json", "/docs"):
        assert client.get(path).status_code == 200, path


def test_docs_page_reads_the_document_beside_it(client: TestClient, prefix: str) -> None:
    docs = client.get("/docs")
    (source,) = re.findall(r'fetch\("([^"]+)"\)', docs.text)
    document = client.get(urljoin(str(docs.url), source))
    assert document.status_code == 200 and "paths" in document.json()
    assert document.url.path == f"{prefix}/openapi.json"
    # Mounted, the document names its prefix, so a client built from it calls the API.
    assert document.json().get("servers", [{"url": "/"}])[0]["url"] == (prefix or "/")


def test_scopes(client: TestClient, conn: psycopg.Connection) -> None:
    read = make_token(conn, "reader", "read")
    write = make_token(conn, "writer", "write")
    admin = make_token(conn, "boss", "admin")
    (job,) = enqueue(conn)
    assert client.get(f"/api/v1/jobs/{job}", headers=read).status_code == 200
    assert client.get("/api/v1/queues", headers=read).status_code == 200
    response = client.post("/api/v1/jobs", json={"task": "t"}, headers=read)
    assert_problem(response, 403, "forbidden")
    assert "write" in response.json()["detail"]
    assert client.post("/api/v1/jobs", json={"task": "t"}, headers=write).status_code == 201
    assert client.post(f"/api/v1/jobs/{job}/cancel", headers=write).status_code == 200
    assert client.post(f"/api/v1/jobs/{job}/retry", headers=write).status_code == 200
    assert_problem(client.post("/api/v1/queues/default/pause", headers=write), 403, "forbidden")
    assert_problem(client.get("/api/v1/audit", headers=write), 403, "forbidden")
    assert_problem(client.post("/api/v1/dead-letters/purge", headers=write), 403, "forbidden")
    assert client.post("/api/v1/queues/default/pause", headers=admin).status_code == 200
    assert client.get("/api/v1/audit", headers=admin).status_code == 200


SCOPES = ("read", "write", "admin")
# A value for each path parameter: ids and names that need not exist, since the scope is
# checked before the route looks anything up.
PATH_VALUES = {"job_id": "424242", "workflow_id": "424242", "worker_id": W_ID}


def test_every_operation_demands_its_scope(dsn: str, conn: psycopg.Connection, prefix: str) -> None:
    headers = {scope: make_token(conn, f"matrix-{scope}", scope) for scope in SCOPES}
    # room for one failed attempt per operation, without a token
    config = AuthConfig(max_failures=1_000)
    with serve(create_app(skiplock.App(dsn), auth=config), prefix) as client:
        checked = try_every_operation(client, headers)
    assert checked >= 30  # the document was read: it has 38 guarded operations


def try_every_operation(client: TestClient, headers: dict[str, dict[str, str]]) -> int:
    checked = 0
    for template, item in DOCUMENT["paths"].items():
        path = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "x"), template)
        for method, operation in item.items():
            if not operation.get("security"):
                continue
            (requirement,) = operation["security"]
            needed = SCOPES.index(requirement["bearer"][0])
            for rank, scope in enumerate(SCOPES):
                response = client.request(method, path, headers=headers[scope], json={})
                where = f"{method.upper()} {path} with a {scope} token"
                if rank < needed:
                    assert response.status_code == 403, where
                else:
                    assert response.status_code not in (401, 403), where
            response = client.request(method, path, json={})
            assert response.status_code == 401, f"{method.upper()} {path} without a token"
            checked += 1
    return checked


def test_queue_limited_token(client: TestClient, conn: psycopg.Connection) -> None:
    headers = make_token(conn, "mailer", "write", "emails*")
    (mine,) = enqueue(conn, queue="emails.bulk")
    (other,) = enqueue(conn, queue="reports")
    (underscore,) = enqueue(conn, queue="emailsXfoo")  # `_`-free names still match `*`
    assert client.get(f"/api/v1/jobs/{mine}", headers=headers).status_code == 200
    for path in (f"/api/v1/jobs/{other}", f"/api/v1/jobs/{other}/result"):
        assert_problem(client.get(path, headers=headers), 404, "not found")
    assert_problem(client.post(f"/api/v1/jobs/{other}/cancel", headers=headers), 404, "not found")
    listed = {j["id"] for j in client.get("/api/v1/jobs", headers=headers).json()["jobs"]}
    assert listed == {mine, underscore}
    page = client.get("/api/v1/jobs", params={"queue": "reports"}, headers=headers).json()
    assert page["jobs"] == []
    queues = [q["queue"] for q in client.get("/api/v1/queues", headers=headers).json()["queues"]]
    assert queues == ["emails.bulk", "emailsXfoo"]
    assert_problem(client.get("/api/v1/queues/reports", headers=headers), 404, "not found")
    # Enqueueing into another queue: 403 naming the field, and nothing is written.
    response = client.post("/api/v1/jobs", json={"task": "t", "queue": "reports"}, headers=headers)
    assert_problem(response, 403, "forbidden", "queue")
    bulk = [{"task": "t", "queue": "emails"}, {"task": "t"}]  # the second: queue default
    response = client.post("/api/v1/jobs", json=bulk, headers=headers)
    assert_problem(response, 403, "forbidden", "queue")
    assert conn.execute("SELECT count(*) FROM skiplock.jobs").fetchone() == (3,)
    response = client.post("/api/v1/jobs", json={"task": "t", "queue": "emails"}, headers=headers)
    assert response.status_code == 201
    # Routes that are not per queue refuse a queue-limited token.
    assert_problem(client.get("/api/v1/dead-letters", headers=headers), 403, "forbidden")
    assert_problem(client.get("/api/v1/workers", headers=headers), 403, "forbidden")


def test_queue_pattern_matches_like_sql(conn: psycopg.Connection) -> None:
    from skiplock.api.auth import Principal

    cases = [("emails*", "emails"), ("emails*", "emails_x"), ("e?ails", "emails"),
             ("a_b", "axb"), ("a_b", "a_b"), ("*", "x"), ("q", "q.x")]  # fmt: skip
    for pattern, queue in cases:
        sql = conn.execute("SELECT skiplock.queue_matches(%s, %s)", (queue, pattern)).fetchone()
        assert sql == (Principal("x", "read", pattern).sees(queue),), (pattern, queue)


def test_jwt_hs256(client: TestClient) -> None:
    good = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert client.post("/api/v1/jobs", json={"task": "t"}, headers=bearer(good)).status_code == 201
    bad = {
        "expired": jwt.encode(claims(exp=int(time.time()) - 60), SECRET, algorithm="HS256"),
        "aud": jwt.encode(claims(aud="other"), SECRET, algorithm="HS256"),
        "iss": jwt.encode(claims(iss="https://evil"), SECRET, algorithm="HS256"),
        "no exp": jwt.encode(claims(exp=None), SECRET, algorithm="HS256"),
        "key": jwt.encode(claims(), "k" * 40, algorithm="HS256"),
        "none": jwt.encode(claims(), "", algorithm="none"),
        "no scope": jwt.encode(claims(scope="profile"), SECRET, algorithm="HS256"),
    }
    for why, token in bad.items():
        response = client.get("/api/v1/jobs", headers=bearer(token))
        assert response.status_code == 401, why
    read = jwt.encode(claims(scope="openid skiplock:read"), SECRET, algorithm="HS256")
    assert client.get("/api/v1/jobs", headers=bearer(read)).status_code == 200
    assert_problem(
        client.post("/api/v1/jobs", json={"task": "t"}, headers=bearer(read)), 403, "forbidden"
    )


def test_jwt_rs256_and_queues_claim(
    client: TestClient, conn: psycopg.Connection, rsa_key: rsa.RSAPrivateKey
) -> None:
    (other,) = enqueue(conn, queue="reports")
    token = jwt.encode(claims(queues="emails*"), rsa_key, algorithm="RS256")
    assert client.get("/api/v1/jobs", headers=bearer(token)).json()["jobs"] == []
    assert_problem(client.get(f"/api/v1/jobs/{other}", headers=bearer(token)), 404, "not found")
    admin = jwt.encode(claims(scope="admin"), rsa_key, algorithm="RS256")
    assert client.post("/api/v1/queues/reports/pause", headers=bearer(admin)).status_code == 200
    actors = conn.execute("SELECT actor FROM skiplock.audit_log").fetchall()
    assert actors == [("jwt:alice",)]


def test_failed_attempts_are_limited(client: TestClient, conn: psycopg.Connection) -> None:
    good = make_token(conn, "good", "read")
    for _ in range(10):
        assert client.get("/api/v1/jobs", headers=bearer("sk_wrong")).status_code == 401
    response = client.get("/api/v1/jobs", headers=bearer("sk_wrong"))
    assert_problem(response, 429, "too many failed attempts")
    assert 1 <= int(response.headers["retry-after"]) <= 60
    # The address is blocked, whatever it sends, until the window moves on.
    assert client.get("/api/v1/jobs", headers=good).status_code == 429
    assert client.get("/health").status_code == 200


def test_audit_log(client: TestClient, conn: psycopg.Connection) -> None:
    write = make_token(conn, "writer", "write")
    admin = make_token(conn, "boss", "admin")
    job = client.post("/api/v1/jobs", json={"task": "t"}, headers=write).json()["id"]
    client.post(f"/api/v1/jobs/{job}/cancel", headers=write)
    client.post("/api/v1/queues/default/pause", headers=write)  # 403: audited too
    client.get("/api/v1/jobs", headers=write)  # reads are not audited
    rows = conn.execute(
        "SELECT actor, action, target, status FROM skiplock.audit_log ORDER BY id"
    ).fetchall()
    assert rows == [
        ("writer", "POST /api/v1/jobs", f"jobs/{job}", 201),
        ("writer", f"POST /api/v1/jobs/{job}/cancel", f"jobs/{job}", 200),
        ("writer", "POST /api/v1/queues/default/pause", "queues/default", 403),
    ]
    body = client.get("/api/v1/audit", params={"limit": "2"}, headers=admin).json()
    assert [e["status"] for e in body["entries"]] == [403, 200]
    assert body["entries"][0]["actor"] == "writer" and body["next_before"] is not None
    rest = client.get("/api/v1/audit", params={"before": body["next_before"]}, headers=admin)
    assert [e["status"] for e in rest.json()["entries"]] == [201]
    assert rest.json()["next_before"] is None


def test_last_used_at_is_recorded_at_most_once_a_minute(
    client: TestClient, conn: psycopg.Connection
) -> None:
    headers = make_token(conn, "t1", "read")

    def last_used() -> Any:
        row = conn.execute("SELECT last_used_at FROM skiplock.api_tokens").fetchone()
        assert row is not None
        return row[0]

    assert last_used() is None
    client.get("/api/v1/jobs", headers=headers)
    assert last_used() is not None
    conn.execute("UPDATE skiplock.api_tokens SET last_used_at = now() - interval '30 seconds'")
    before = last_used()
    client.get("/api/v1/jobs", headers=headers)
    assert last_used() == before
    conn.execute("UPDATE skiplock.api_tokens SET last_used_at = now() - interval '2 minutes'")
    client.get("/api/v1/jobs", headers=headers)
    assert last_used() > before


def test_tokens_table_never_holds_the_secret(conn: psycopg.Connection) -> None:
    token = new_token()
    assert token.startswith("sk_") and len(token) > 40
    assert store.create_api_token("a", "read", None, hash_token(token)).run(conn)
    assert not store.create_api_token("a", "admin", None, hash_token(new_token())).run(conn)
    assert store.create_api_token("a", "admin", None, hash_token(new_token()), replace=True).run(
        conn
    )
    stored = conn.execute("SELECT * FROM skiplock.api_tokens").fetchall()
    assert token not in repr(stored)
    with pytest.raises(psycopg.errors.CheckViolation):
        store.create_api_token("b", "read", "bad pattern", hash_token(new_token())).run(conn)


def test_auth_config_checks() -> None:
    with pytest.raises(ConfigError, match="jwt_secret must be at least 32 bytes"):
        AuthConfig(jwt_secret="short", jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    with pytest.raises(ConfigError, match="jwt_issuer and jwt_audience"):
        AuthConfig(jwt_secret=SECRET)
    with pytest.raises(ConfigError, match="PEM"):
        AuthConfig(jwt_public_key="abc", jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    assert not AuthConfig().jwt_enabled


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def skiplock_serve(
    dsn: str, *args: str, command: str = "serve", env: dict[str, str] | None = None
) -> Iterator[str]:
    """A real `skiplock serve` (or `dev`) process on loopback; yields its base URL."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if "FORWARDED" not in k}
    process = subprocess.Popen(
        [sys.executable, "-m", "skiplock", "--dsn", dsn, command, "--port", str(port), *args],
        env={**environment, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert process.poll() is None, "skiplock serve exited"
        try:
            return httpx.get(f"{url}/health").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, timeout=30)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize("command", ["serve", "dev"])
def test_proxy_headers_are_not_trusted_by_default(
    dsn: str, conn: psycopg.Connection, command: str
) -> None:
    write = make_token(conn, "writer", "write")
    publish_tasks(dsn, "t")
    with skiplock_serve(dsn, command=command) as url:
        # A local client cannot dodge the failure limit by naming other addresses...
        for n in range(10):
            spoofed = {"X-Forwarded-For": f"203.0.113.{n}", **bearer("sk_wrong")}
            assert httpx.get(f"{url}/api/v1/jobs", headers=spoofed).status_code == 401
        spoofed = {"X-Forwarded-For": "203.0.113.99", **bearer("sk_wrong")}
        assert httpx.get(f"{url}/api/v1/jobs", headers=spoofed).status_code == 429
    with skiplock_serve(dsn, command=command) as url:
        # ...nor write the address it likes into the audit log.
        headers = {"X-Forwarded-For": "203.0.113.7", **write}
        response = httpx.post(f"{url}/api/v1/jobs", json={"task": "t"}, headers=headers)
        assert response.status_code == 201
    rows = conn.execute("SELECT detail->>'client' FROM skiplock.audit_log").fetchall()
    assert rows == [("127.0.0.1",)]


def test_forwarded_allow_ips_names_the_trusted_proxies(dsn: str, conn: psycopg.Connection) -> None:
    write = make_token(conn, "writer", "write")
    publish_tasks(dsn, "t")
    headers = {"X-Forwarded-For": "203.0.113.7", **write}
    with skiplock_serve(dsn, "--forwarded-allow-ips", "127.0.0.1") as url:
        assert httpx.post(f"{url}/api/v1/jobs", json={"task": "t"}, headers=headers).is_success
    with skiplock_serve(dsn, env={"SKIPLOCK_FORWARDED_ALLOW_IPS": "10.0.0.1"}) as url:
        # a proxy other than the one named: its header is ignored
        assert httpx.post(f"{url}/api/v1/jobs", json={"task": "t"}, headers=headers).is_success
    rows = conn.execute("SELECT detail->>'client' FROM skiplock.audit_log ORDER BY id").fetchall()
    assert rows == [("203.0.113.7",), ("127.0.0.1",)]


def test_aliases_have_the_rules_of_the_routes_they_stand_for(
    client: TestClient, conn: psycopg.Connection
) -> None:
    read = make_token(conn, "reader", "read")
    write = make_token(conn, "writer", "write")
    limited = make_token(conn, "mailer", "write", "mail")
    for path in ("/jobs", "/api/jobs"):
        assert client.post(path, json={"type": "t"}, headers=read).status_code == 403
        created = client.post(path, json={"type": "t"}, headers=write)
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        assert client.get(f"{path}/{job_id}", headers=read).json()["task"] == "t"
        assert client.get(path, headers=read).status_code == 200
        assert client.get(path).status_code == 401
        refused = client.post(path, json={"task": "t", "queue": "other"}, headers=limited)
        assert refused.status_code == 403
        assert client.post(f"{path}/{job_id}/cancel", headers=write).status_code == 200
    assert client.get("/api/v1/health").status_code == 200  # open, as /health is
    assert client.get("/api/v1/stats").status_code == 401
    assert client.get("/api/v1/stats", headers=read).status_code == 200
