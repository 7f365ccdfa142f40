"""Statements about the session rather than any table: a NOTIFY, a statement timeout."""

from __future__ import annotations

from skiplock.store.call import Call, nothing


def notify(channel: str, payload: str) -> Call[None]:
    return Call("SELECT pg_notify(%s, %s)", (channel, payload), nothing)


def set_statement_timeout(milliseconds: int) -> Call[None]:
    """statement_timeout for the rest of the current transaction only (SET LOCAL)."""
    return Call(
        "SELECT set_config('statement_timeout', %s, true)",
        (str(milliseconds),),
        nothing,
    )
