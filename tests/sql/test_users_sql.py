"""Users in SQL: create, find (enabled only), password, disable, delete, login record;
the table keeps nothing but argon2 hashes."""

from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import pytest

# A syntactically valid argon2id hash (of no password anyone knows): SQL does not hash.
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
OTHER = "$argon2id$v=19$m=65536,t=3,p=4$b3RoZXJzYWx0$b3RoZXJoYXNob3RoZXJoYXNo"


def call(conn: psycopg.Connection, sql: str, *params: object) -> object:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def test_create_find_and_names_taken(conn: psycopg.Connection) -> None:
    assert call(conn, "SELECT skiplock.create_user('ada', %s, 'write', 'emails*')", HASH)
    assert not call(conn, "SELECT skiplock.create_user('ada', %s, 'admin')", OTHER)
    rows = conn.execute("SELECT * FROM skiplock.find_user('ada')").fetchall()
    assert rows == [("ada", HASH, "write", "emails*")]
    assert conn.execute("SELECT * FROM skiplock.find_user('nobody')").fetchall() == []
    created = conn.execute("SELECT created_at, last_login_at FROM skiplock.users").fetchall()
    assert created[0][0] is not None and created[0][1] is None


@pytest.mark.parametrize(
    ("name", "password_hash", "queues"),
    [
        ("ada", "plain text password", None),  # never anything but an argon2 hash
        ("ada", "$2b$12$abcdefghijklmnopqrstuv", None),  # nor another scheme's
        ("a b", HASH, None),
        ("", HASH, None),
        ("ada", HASH, "emails/[x]"),
    ],
)
def test_constraints_refuse_bad_rows(
    conn: psycopg.Connection, name: str, password_hash: str, queues: str | None
) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "SELECT skiplock.create_user(%s, %s, 'read', %s)", (name, password_hash, queues)
        )


def test_disabled_users_are_not_found_and_stay(conn: psycopg.Connection) -> None:
    assert call(conn, "SELECT skiplock.create_user('ada', %s, 'read')", HASH)
    at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert call(conn, "SELECT skiplock.disable_user('ada', %s)", at)
    assert not call(conn, "SELECT skiplock.disable_user('ada')")
    assert not call(conn, "SELECT skiplock.disable_user('nobody')")
    assert conn.execute("SELECT * FROM skiplock.find_user('ada')").fetchall() == []
    assert call(conn, "SELECT disabled_at FROM skiplock.users WHERE name = 'ada'") == at
    # a disabled user can neither log in nor be recorded as logging in
    assert not call(conn, "SELECT skiplock.record_user_login('ada')")
    # its name stays taken
    assert not call(conn, "SELECT skiplock.create_user('ada', %s, 'read')", HASH)


def test_password_login_record_and_delete(conn: psycopg.Connection) -> None:
    assert call(conn, "SELECT skiplock.create_user('ada', %s, 'admin')", HASH)
    assert call(conn, "SELECT skiplock.set_user_password('ada', %s)", OTHER)
    assert not call(conn, "SELECT skiplock.set_user_password('nobody', %s)", OTHER)
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("SELECT skiplock.set_user_password('ada', 'plain')")
    assert call(conn, "SELECT password_hash FROM skiplock.users") == OTHER

    at = datetime(2030, 1, 2, tzinfo=timezone.utc)
    assert call(conn, "SELECT skiplock.record_user_login('ada', p_now => %s)", at)
    assert conn.execute("SELECT last_login_at, password_hash FROM skiplock.users").fetchone() == (
        at,
        OTHER,
    )
    # a rehash on login stores the new hash with the login
    assert call(conn, "SELECT skiplock.record_user_login('ada', %s)", HASH)
    assert call(conn, "SELECT password_hash FROM skiplock.users") == HASH
    assert not call(conn, "SELECT skiplock.record_user_login('nobody')")

    assert call(conn, "SELECT skiplock.delete_user('ada')")
    assert not call(conn, "SELECT skiplock.delete_user('ada')")
    assert conn.execute("SELECT count(*) FROM skiplock.users").fetchone() == (0,)
