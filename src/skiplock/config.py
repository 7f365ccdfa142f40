"""Where skiplock finds its database: flag, then SKIPLOCK_DSN, then DATABASE_URL."""

from __future__ import annotations

import os

DSN_ENV_VARS = ("SKIPLOCK_DSN", "DATABASE_URL")


def resolve_dsn(flag: str | None = None) -> str | None:
    """Return the DSN in the one resolution order; None means "use the embedded server"."""
    if flag:
        return flag
    for name in DSN_ENV_VARS:
        value = os.environ.get(name)
        if value:
            return value
    return None


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
