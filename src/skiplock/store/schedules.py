"""Recurring schedules (sql/functions/100_schedules.sql): create, list, enable,
disable and delete them; the scheduler's lock, fire and next-run calls."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from psycopg.rows import dict_row

from skiplock.store.call import Call, flag, named_tuple_row, nothing, scalar

SCHEDULE_COLUMNS = (
    "id",
    "name",
    "cron",
    "timezone",
    "task",
    "args",
    "queue",
    "priority",
    "max_attempts",
    "enabled",
    "next_run_at",
    "last_run_at",
    "last_job_id",
    "last_error",
    "created_at",
    "updated_at",
)


class DueSchedule(NamedTuple):
    """A schedule the scheduler holds locked: due, or with no next run computed yet."""

    name: str
    cron: str
    timezone: str
    next_run_at: datetime | None
    db_now: datetime


_DUE_SCHEDULE_ROW = named_tuple_row(DueSchedule)


def create_schedule(
    name: str,
    *,
    cron: str,
    task: str,
    args_json: str,
    queue: str | None,
    priority: int | None,
    timezone: str,
    max_attempts: int | None,
    enabled: bool = True,
    replace: bool = False,
) -> Call[None]:
    return Call(
        "SELECT skiplock.create_schedule(%s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s)",
        (name, cron, task, args_json, queue, priority, timezone, max_attempts, enabled, replace),
        nothing,
    )


def list_schedules(name: str | None = None) -> Call[list[dict[str, Any]]]:
    """Every schedule (or the one named), by name."""
    return Call(
        f"SELECT {', '.join(SCHEDULE_COLUMNS)} FROM skiplock.schedules"
        " WHERE %(name)s::text IS NULL OR name = %(name)s ORDER BY name",
        {"name": name},
        list,
        dict_row,
    )


def schedule_name(ref: str) -> Call[str | None]:
    """The name of the schedule `ref` names: by its name, else (digits) by its id; None
    when there is none. A name wins over an id that reads the same."""
    return Call(
        "SELECT name FROM skiplock.schedules WHERE name = %(ref)s"
        " OR id = CASE WHEN %(ref)s ~ '^[0-9]{1,18}$' THEN %(ref)s::bigint END"
        " ORDER BY name = %(ref)s DESC LIMIT 1",
        {"ref": ref},
        scalar,
    )


def set_schedule_enabled(name: str, enabled: bool) -> Call[bool]:
    function = "enable_schedule" if enabled else "disable_schedule"
    return Call(f"SELECT skiplock.{function}(%s)", (name,), flag)


def delete_schedule(name: str) -> Call[bool]:
    return Call("SELECT skiplock.delete_schedule(%s)", (name,), flag)


def lock_due_schedules(limit: int, now: datetime | None = None) -> Call[list[DueSchedule]]:
    """Lock up to `limit` due schedules for this transaction (see
    skiplock.lock_due_schedules); `now` stands in for the database's clock."""
    return Call(
        f"SELECT {', '.join(DueSchedule._fields)} FROM skiplock.lock_due_schedules(%s, %s)",
        (limit, now),
        list,
        _DUE_SCHEDULE_ROW,
    )


def fire_schedule(name: str, fire_at: datetime, next_run_at: datetime | None) -> Call[int]:
    return Call("SELECT skiplock.fire_schedule(%s, %s, %s)", (name, fire_at, next_run_at), scalar)


def run_schedule(name: str) -> Call[int | None]:
    """Fire schedule `name` once now, its next run kept; the job id, None if unknown."""
    return Call("SELECT skiplock.run_schedule(%s)", (name,), scalar)


def set_schedule_next_run(
    name: str, next_run_at: datetime | None, error: str | None = None
) -> Call[bool]:
    return Call(
        "SELECT skiplock.set_schedule_next_run(%s, %s, %s)",
        (name, next_run_at, error),
        flag,
    )
