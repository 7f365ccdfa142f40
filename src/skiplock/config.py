"""Where skiplock finds its database: flag, then SKIPLOCK_DSN, then DATABASE_URL; what
sits in between (SKIPLOCK_POOLER); and where it LISTENs (SKIPLOCK_LISTEN_DSN)."""

from __future__ import annotations

import os
from typing import Any

from skiplock.errors import ConfigError

DSN_ENV_VARS = ("SKIPLOCK_DSN", "DATABASE_URL")
LISTEN_DSN_ENV_VAR = "SKIPLOCK_LISTEN_DSN"
POOLER_ENV_VAR = "SKIPLOCK_POOLER"
# "transaction": the DSN leads to a pooler that hands each transaction whichever server
# connection is free (PgBouncer's pool_mode=transaction, most managed poolers), so
# nothing may outlive a transaction: no prepared statements, no session SET, no LISTEN.
# "none" or "session": a direct connection, or a session-mode pooler (one server
# connection per client connection), where everything works. Statement mode is refused:
# the API and the scheduler need transactions of several statements.
POOLER_MODES = ("none", "session", "transaction")


def resolve_dsn(flag: str | None = None) -> str | None:
    """Return the DSN in the one resolution order; None means "use the embedded server"."""
    if flag:
        return flag
    for name in DSN_ENV_VARS:
        value = os.environ.get(name)
        if value:
            return value
    return None


def resolve_pooler(flag: str | None = None) -> str:
    """The pooler mode in the one resolution order: flag, then SKIPLOCK_POOLER, then
    "none"; ConfigError for a mode not in POOLER_MODES."""
    mode = flag or os.environ.get(POOLER_ENV_VAR) or "none"
    if mode not in POOLER_MODES:
        raise ConfigError(
            f"pooler must be one of {', '.join(POOLER_MODES)}"
            f" (--pooler or {POOLER_ENV_VAR}), got {mode!r}"
        )
    return mode


def resolve_listen_dsn(flag: str | None = None) -> str | None:
    """The DSN for LISTEN: flag, then SKIPLOCK_LISTEN_DSN; None means "the DSN itself"."""
    return flag or os.environ.get(LISTEN_DSN_ENV_VAR) or None


def connection_kwargs(pooler: str) -> dict[str, Any]:
    """psycopg.connect's keyword arguments for every connection skiplock opens: autocommit,
    and behind a transaction-mode pooler no server-side prepared statements (psycopg
    prepares a statement run 5 times on a connection; the pooler may hand the next
    transaction a server connection that lacks it, or one that already has its name)."""
    if pooler == "transaction":
        return {"autocommit": True, "prepare_threshold": None}
    return {"autocommit": True}


def with_dead_peer_detection(dsn: str, seconds: float) -> str:
    """`dsn` with TCP settings that notice a silent peer (a pulled cable, a database that
    failed over to another address) within about `seconds`, instead of the kernel's
    default of a quarter of an hour: keepalives on idle connections (the LISTEN one) and
    a limit on unacknowledged sends (a claim or heartbeat into the void). A setting the
    DSN makes itself wins; on a Unix socket libpq ignores them."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    given = conninfo_to_dict(dsn)
    probe = max(1, round(seconds / 3))
    defaults = {
        "keepalives": 1,
        "keepalives_idle": probe,
        "keepalives_interval": probe,
        "keepalives_count": 2,
        "tcp_user_timeout": max(1000, round(seconds * 1000)),
    }
    extra = {name: value for name, value in defaults.items() if name not in given}
    return make_conninfo(dsn, **extra) if extra else dsn
