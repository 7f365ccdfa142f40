"""`skiplock users`: create, list, disable, delete, password; passwords come from a
hidden prompt or stdin, never a flag, and are stored only as argon2 hashes."""

from __future__ import annotations

import json

import psycopg
from click.testing import CliRunner

from dev_process import run_dev
from skiplock import store
from skiplock.cli import main
from skiplock.cli.dev import banner
from skiplock.passwords import check_password

PASSWORD = "correct horse battery staple"
USER_LINE = "API user (admin, admin; password shown once): "


def run(dsn: str, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--dsn", dsn, *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def stored_hash(conn: psycopg.Connection, name: str) -> str:
    found = store.find_user(name).run(conn)
    assert found is not None
    return found[1]


def test_create_list_disable_delete(dsn: str, conn: psycopg.Connection) -> None:
    code, out, err = run(
        dsn, "users", "create", "ada", "--scope", "write", "--queues", "emails*",
        "--password-stdin", stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert (code, out, err) == (0, "user ada created (scope write, queues emails*)\n", "")
    assert check_password(stored_hash(conn, "ada"), PASSWORD).ok
    assert stored_hash(conn, "ada").startswith("$argon2id$")
    code, out, _ = run(dsn, "users", "list")
    assert code == 0 and out.splitlines()[0].split() == [
        "NAME", "SCOPE", "QUEUES", "CREATED", "LAST", "LOGIN", "DISABLED"
    ]  # fmt: skip
    assert out.splitlines()[1].split()[:3] == ["ada", "write", "emails*"]
    code, out, _ = run(dsn, "users", "list", "--json")
    (listed,) = json.loads(out)
    assert listed["name"] == "ada" and listed["disabled_at"] is None
    assert "password_hash" not in listed and "argon2" not in out
    assert run(dsn, "users", "disable", "ada")[:2] == (0, "user ada disabled\n")
    code, _, err = run(dsn, "users", "disable", "ada")
    assert code == 1 and err == "error: user ada not found (or already disabled)\n"
    assert store.find_user("ada").run(conn) is None
    assert json.loads(run(dsn, "users", "list", "--json")[1])[0]["disabled_at"] is not None
    assert run(dsn, "users", "enable", "ada")[:2] == (0, "user ada enabled\n")
    assert store.find_user("ada").run(conn) is not None
    code, _, err = run(dsn, "users", "enable", "ada")
    assert code == 1 and err == "error: user ada not found (or not disabled)\n"
    assert run(dsn, "users", "delete", "ada")[:2] == (0, "user ada deleted\n")
    code, _, err = run(dsn, "users", "delete", "ada")
    assert code == 1 and err == "error: user ada not found\n"
    assert run(dsn, "users", "list")[1] == "no users\n"


def test_the_prompt_hides_the_password_and_asks_twice(dsn: str, conn: psycopg.Connection) -> None:
    code, out, err = run(
        dsn, "users", "create", "ada", "--scope", "read", stdin=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert code == 0, err
    assert PASSWORD not in out and PASSWORD not in err  # hidden input is not echoed
    assert "Repeat for confirmation" in err
    assert check_password(stored_hash(conn, "ada"), PASSWORD).ok
    # two different entries are refused, and nothing is stored
    code, _, err = run(dsn, "users", "create", "bob", "--scope", "read", stdin="one\ntwo\n")
    assert code != 0
    assert store.find_user("bob").run(conn) is None


def test_password_sets_a_new_hash(dsn: str, conn: psycopg.Connection) -> None:
    run(dsn, "users", "create", "ada", "--scope", "read", "--password-stdin", stdin="old one\n")
    code, out, err = run(dsn, "users", "password", "ada", "--password-stdin", stdin="new one\n")
    assert (code, out, err) == (0, "password of user ada set\n", "")
    found = stored_hash(conn, "ada")
    assert check_password(found, "new one").ok and not check_password(found, "old one").ok
    code, _, err = run(dsn, "users", "password", "nobody", "--password-stdin", stdin="x\n")
    assert code == 1 and err == "error: user nobody not found\n"


def test_refusals_are_one_line_and_store_nothing(dsn: str, conn: psycopg.Connection) -> None:
    create = ("users", "create", "ada", "--scope", "read", "--password-stdin")
    assert run(dsn, *create, stdin="first\n")[0] == 0
    code, out, err = run(dsn, *create, stdin="second\n")
    assert (code, out, err) == (1, "", "error: user ada already exists\n")
    assert check_password(stored_hash(conn, "ada"), "first").ok
    cases = [
        (("users", "create", "a b", "--scope", "read", "--password-stdin"), "x\n"),
        (("users", "create", "bob", "--scope", "read", "--queues", "a/b", "--password-stdin"),
         "x\n"),
        (("users", "create", "bob", "--scope", "read", "--password-stdin"), "\n"),
        (("users", "create", "bob", "--scope", "read", "--password-stdin"), "x" * 1025 + "\n"),
    ]  # fmt: skip
    for args, stdin in cases:
        code, _, err = run(dsn, *args, stdin=stdin)
        assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    assert [u["name"] for u in store.list_users().run(conn)] == ["ada"]
    # no flag takes a password
    code, _, err = run(dsn, "users", "create", "bob", "--scope", "read", "--password", "x")
    assert code == 2 and "No such option" in err


def test_dev_banner_shows_a_new_admin_users_password() -> None:
    text = banner("dbname=x", "127.0.0.1", 8000, "app:app", ["default"], user_password="pw1")
    assert "API user (admin, admin; password shown once): pw1" in text
    assert "API user" not in banner("dbname=x", "127.0.0.1", 8000, "app:app", ["default"])


def test_dev_makes_an_admin_user_once_that_can_log_in(dsn: str) -> None:
    with run_dev(dsn) as dev:
        password = dev.banner_value(USER_LINE)
        credentials = {"username": "admin", "password": password}
        response = dev.api.post("/api/v1/login", json=credentials)
        assert response.status_code == 200, response.text
        assert response.json()["scope"] == "admin"
        token = response.json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert dev.api.get("/api/v1/audit", headers=headers).status_code == 200
        assert not dev.logged(password)
    with run_dev(dsn) as dev:
        # the user exists: no new password, and the first one still logs in
        assert not [line for line in dev.banner if line.startswith(USER_LINE)]
        response = dev.api.post("/api/v1/login", json=credentials)
        assert response.status_code == 200, response.text
        assert not dev.logged(password)
