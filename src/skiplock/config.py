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
