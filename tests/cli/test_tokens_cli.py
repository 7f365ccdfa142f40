"""CLI for API tokens and the audit log, and `serve`'s auth settings."""

from __future__ import annotations

import json

import psycopg
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

import skiplock
from skiplock import store
from skiplock.api import AuthConfig, create_app
from skiplock.cli import main
from skiplock.cli.dev import banner


def run(dsn: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--dsn", dsn, *args])
    return result.exit_code, result.stdout, result.stderr


def test_create_list_revoke(dsn: str, conn: psycopg.Connection) -> None:
    code, out, err = run(dsn, "tokens", "create", "--name", "ci", "--scope", "write")
    token = out.strip()
    assert code == 0 and token.startswith("sk_") and out.count("\n") == 1
    assert err.strip() == "token ci created (scope write); it is not shown again"
    code, out, err = run(
        dsn, "tokens", "create", "--name", "mail", "--scope", "read", "--queues", "emails*"
    )
    assert code == 0 and "queues emails*" in err
    app = skiplock.App(dsn)
    app.task(name="t")(lambda: None)  # a task the API's own app serves is known to it
    with TestClient(create_app(app, auth=AuthConfig())) as client:
        headers = {"Authorization": f"Bearer {token}"}
        assert client.post("/api/v1/jobs", json={"task": "t"}, headers=headers).status_code == 201
    code, out, _ = run(dsn, "tokens", "list")
    assert code == 0 and out.splitlines()[0].split() == [
        "NAME", "SCOPE", "QUEUES", "CREATED", "LAST", "USED", "REVOKED"
    ]  # fmt: skip
    assert "emails*" in out and token not in out
    code, out, _ = run(dsn, "tokens", "list", "--json")
    listed = json.loads(out)
    assert [t["name"] for t in listed] == ["ci", "mail"]
    assert listed[0]["last_used_at"] is not None and listed[1]["last_used_at"] is None
    assert "token_hash" not in listed[0] and token not in out
    assert run(dsn, "tokens", "revoke", "ci")[:2] == (0, "token ci revoked\n")
    code, _, err = run(dsn, "tokens", "revoke", "ci")
    assert code == 1 and err == "error: token ci not found (or already revoked)\n"
    assert json.loads(run(dsn, "tokens", "list", "--json")[1])[0]["revoked_at"] is not None


def test_create_refusals(dsn: str) -> None:
    assert run(dsn, "tokens", "create", "--name", "a", "--scope", "read")[0] == 0
    code, out, err = run(dsn, "tokens", "create", "--name", "a", "--scope", "admin")
    assert (code, out) == (1, "")
    assert err == "error: token a already exists (revoke it and pick another name)\n"
    code, _, err = run(dsn, "tokens", "create", "--name", "b c", "--scope", "read")
    assert code == 1 and err.startswith("error: token name must be") and err.count("\n") == 1
    code, _, err = run(dsn, "tokens", "create", "--name", "b", "--scope", "read", "--queues", "a b")
    assert code == 1 and err.startswith("error: queues must be a queue name or a glob")
    assert run(dsn, "tokens", "create", "--name", "b", "--scope", "root")[0] == 2
    assert run(dsn, "tokens", "list")[1].count("\n") == 2  # header and `a` only


def test_audit(dsn: str, conn: psycopg.Connection) -> None:
    assert run(dsn, "audit")[:2] == (0, "no audit entries\n")
    store.record_audit("ci", "POST /api/v1/jobs", "jobs/1", 201, {}).run(conn)
    store.record_audit("ci", "POST /api/v1/jobs/1/cancel", "jobs/1", 200, {}).run(conn)
    code, out, _ = run(dsn, "audit")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and "POST /api/v1/jobs/1/cancel" in lines[1]
    code, out, _ = run(dsn, "audit", "--limit", "1", "--json")
    (entry,) = json.loads(out)
    assert entry["actor"] == "ci" and entry["status"] == 200 and entry["target"] == "jobs/1"
    assert run(dsn, "audit", "--limit", "0")[0] == 2


def test_audit_prune(dsn: str, conn: psycopg.Connection) -> None:
    conn.execute(
        "INSERT INTO skiplock.audit_log (at, actor, action, status)"
        " SELECT now() - interval '100 days', 'ci', 'POST /api/v1/jobs', 201"
        " FROM generate_series(1, 1001)"
    )
    store.record_audit("ci", "POST /api/v1/jobs", "jobs/1", 201, {}).run(conn)
    # more than one batch (1,000): every old entry goes, the new one stays
    assert run(dsn, "audit", "prune", "--older-than", str(90 * 86400))[:2] == (
        0,
        "1001 audit entries pruned\n",
    )
    assert run(dsn, "audit", "prune", "--older-than", "3600")[:2] == (0, "0 audit entries pruned\n")
    assert conn.execute("SELECT count(*) FROM skiplock.audit_log").fetchone() == (1,)
    assert run(dsn, "audit", "prune", "--older-than", "0")[:2] == (0, "1 audit entry pruned\n")
    for bad in (["--older-than", "-1"], ["--older-than", "soon"], []):
        code, _, err = run(dsn, "audit", "prune", *bad)
        assert code == 2 and err.strip()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--jwt-secret", "short", "--jwt-issuer", "i", "--jwt-audience", "a"],
            "error: jwt_secret must be at least 32 bytes, got 5",
        ),
        (
            ["--jwt-secret", "s" * 32],
            "error: jwt_issuer and jwt_audience are required when a JWT key is set",
        ),
        (
            ["--jwt-public-key", "/nonexistent/key.pem"],
            "error: cannot read the JWT public key /nonexistent/key.pem: No such file or directory",
        ),
    ],
)
def test_serve_refuses_bad_jwt_settings(dsn: str, args: list[str], message: str) -> None:
    code, _, err = run(dsn, "serve", *args)
    assert (code, err) == (1, message + "\n")


def test_dev_banner_has_a_ready_curl_line() -> None:
    text = banner("dbname=x", "127.0.0.1", 8000, "app:app", ["default"], token="sk_abc")
    assert "API token (dev, admin; replaced at every start): sk_abc" in text
    curls = [line for line in text.splitlines() if line.strip().startswith("curl")]
    assert curls and all('-H "Authorization: Bearer sk_abc"' in line for line in curls)
