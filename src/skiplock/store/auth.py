"""API tokens, users and the audit log (sql/functions/120_auth.sql)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from psycopg.rows import dict_row

from skiplock.store.call import Call, flag, scalar

API_TOKEN_COLUMNS = ("name", "scope", "queue_pattern", "created_at", "last_used_at", "revoked_at")
USER_COLUMNS = ("name", "scope", "queue_pattern", "created_at", "disabled_at", "last_login_at")
AUDIT_COLUMNS = ("id", "at", "actor", "action", "target", "status", "detail")


def create_api_token(
    name: str, scope: str, queue_pattern: str | None, token_hash: str, *, replace: bool = False
) -> Call[bool]:
    """Store a token's sha256 hex under `name`; False when the name is taken (and not
    `replace`). A bad name or pattern raises (SQLSTATE 23514)."""
    return Call(
        "SELECT skiplock.create_api_token(%s, %s::skiplock.token_scope, %s, %s, %s)",
        (name, scope, queue_pattern, token_hash, replace),
        flag,
    )


def revoke_api_token(name: str) -> Call[bool]:
    """False when no live token has this name."""
    return Call("SELECT skiplock.revoke_api_token(%s)", (name,), flag)


def find_api_token(token_hash: str) -> Call[tuple[str, str, str | None, str] | None]:
    """(name, scope, queue_pattern, token_hash) of the live token with this hash, or None;
    records its last use (at most once a minute)."""
    return Call(
        "SELECT name, scope, queue_pattern, token_hash FROM skiplock.find_api_token(%s)",
        (token_hash,),
        lambda rows: (rows[0][0], rows[0][1], rows[0][2], rows[0][3]) if rows else None,
    )


def list_api_tokens() -> Call[list[dict[str, Any]]]:
    """Every token, revoked ones too, oldest first; never the hash."""
    return Call(
        f"SELECT {', '.join(API_TOKEN_COLUMNS)} FROM skiplock.api_tokens ORDER BY id",
        (),
        list,
        dict_row,
    )


def create_user(name: str, password_hash: str, scope: str, queue_pattern: str | None) -> Call[bool]:
    """Store a user with this argon2 password hash; False when the name is taken. A bad
    name, pattern or hash raises (SQLSTATE 23514)."""
    return Call(
        "SELECT skiplock.create_user(%s, %s, %s::skiplock.token_scope, %s)",
        (name, password_hash, scope, queue_pattern),
        flag,
    )


def set_user_password(name: str, password_hash: str) -> Call[bool]:
    """False when no user has this name."""
    return Call("SELECT skiplock.set_user_password(%s, %s)", (name, password_hash), flag)


def disable_user(name: str) -> Call[bool]:
    """False when no enabled user has this name."""
    return Call("SELECT skiplock.disable_user(%s)", (name,), flag)


def enable_user(name: str) -> Call[bool]:
    """False when no disabled user has this name."""
    return Call("SELECT skiplock.enable_user(%s)", (name,), flag)


def delete_user(name: str) -> Call[bool]:
    """False when no user has this name."""
    return Call("SELECT skiplock.delete_user(%s)", (name,), flag)


def find_user(name: str) -> Call[tuple[str, str, str, str | None] | None]:
    """(name, password_hash, scope, queue_pattern) of the enabled user `name`, or None."""
    return Call(
        "SELECT name, password_hash, scope, queue_pattern FROM skiplock.find_user(%s)",
        (name,),
        lambda rows: (rows[0][0], rows[0][1], rows[0][2], rows[0][3]) if rows else None,
    )


def record_user_login(name: str, new_password_hash: str | None = None) -> Call[bool]:
    """Note a successful login (and store a rehashed password); False when the user is
    no longer enabled."""
    return Call("SELECT skiplock.record_user_login(%s, %s)", (name, new_password_hash), flag)


def list_users() -> Call[list[dict[str, Any]]]:
    """Every user, disabled ones too, oldest first; never the password hash."""
    return Call(
        f"SELECT {', '.join(USER_COLUMNS)} FROM skiplock.users ORDER BY id",
        (),
        list,
        dict_row,
    )


def record_audit(
    actor: str, action: str, target: str | None, status: int, detail: Mapping[str, Any]
) -> Call[int]:
    return Call(
        "SELECT skiplock.record_audit(%s, %s, %s, %s, %s::jsonb)",
        (actor, action, target, status, json.dumps(detail)),
        scalar,
    )


def list_audit(*, limit: int = 50, before_id: int | None = None) -> Call[list[dict[str, Any]]]:
    """Newest first; `before_id` pages back (keyset on id)."""
    return Call(
        f"SELECT {', '.join(AUDIT_COLUMNS)} FROM skiplock.audit_log"
        " WHERE (%(before)s::bigint IS NULL OR id < %(before)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"before": before_id, "limit": limit},
        list,
        dict_row,
    )


def prune_audit_log(older_than: timedelta, limit: int = 1000) -> Call[int]:
    """Delete up to `limit` audit entries older than `older_than`, oldest first; how
    many. See skiplock.prune_audit_log."""
    return Call("SELECT skiplock.prune_audit_log(%s, %s)", (older_than, limit), scalar)
