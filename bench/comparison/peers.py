"""The systems compared, by name, in the order of the table's columns."""

from __future__ import annotations

from types import ModuleType

from comparison import pgqueuer_peer, procrastinate_peer, raw_sql, skiplock_peer

PEERS: dict[str, ModuleType] = {
    "skiplock": skiplock_peer,
    "pgqueuer": pgqueuer_peer,
    "procrastinate": procrastinate_peer,
    "raw-sql": raw_sql,
}
