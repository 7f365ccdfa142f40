"""Recurring schedules: cron maths (croniter) and the scheduler tick every worker runs.

Policy, documented in docs/schedules.md:
- catch-up: when a schedule is found overdue (workers were down), only its most recent
  missed fire time runs, once; older missed fire times are dropped;
- DST, for a schedule with a fixed hour: a local time skipped by the spring-forward jump
  fires at the first valid time after it (02:30 → 03:00 that day); a local time repeated
  by the fall-back runs once (the first occurrence). A schedule whose hour is a wildcard
  or a step (hourly, */2) fires every real hour, both repeated hours included.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from croniter import croniter

from skiplock import store
from skiplock.errors import ConfigError

log = logging.getLogger("skiplock.scheduler")


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule declared in code (`@app.periodic`), written to the database at worker
    start."""

    name: str
    cron: str
    task: str
    args_json: str = "{}"
    queue: str = "default"
    priority: int = 0
    timezone: str = "UTC"
    max_attempts: int = 20


def validate(cron: str, tz: str) -> None:
    """ConfigError naming the bad field, for a cron expression or time zone we cannot use."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            f"timezone must be an IANA name such as Europe/Paris, got {tz[:100]!r}"
        ) from None
    # Five fields or an @ alias: croniter would also take a sixth (seconds) field, which the
    # database's cron_shape_valid rule refuses.
    fields = cron.split()
    if not (cron.startswith("@") or len(fields) == 5) or not croniter.is_valid(cron):
        raise ConfigError(
            f"cron must be a 5-field cron expression or @hourly/@daily/…, got {cron!r}"
        )


def _fixed_hour(cron: str) -> bool:
    fields = cron.split()
    if cron.startswith("@"):
        return cron not in ("@hourly",)
    return len(fields) >= 2 and "*" not in fields[1] and "/" not in fields[1]


def _repeats_wall_time(moment: datetime) -> bool:
    # The second occurrence of a local time repeated by the fall-back (fold=1 is the
    # later one; croniter returns it with the later offset).
    earlier = moment.replace(fold=0)
    return earlier.utcoffset() != moment.utcoffset()


def next_fire(cron: str, tz: str, after: datetime) -> datetime:
    """The first fire time strictly after `after`, as an aware UTC datetime."""
    zone = ZoneInfo(tz)
    it = croniter(cron, after.astimezone(zone))
    for _ in range(4):
        moment: datetime = it.get_next(datetime)
        if not (_fixed_hour(cron) and _repeats_wall_time(moment)):
            return moment.astimezone(timezone.utc)
    raise ConfigError(f"cron {cron!r} has no fire time after {after}")


def latest_fire(cron: str, tz: str, due: datetime, now: datetime) -> datetime:
    """The most recent fire time in [due, now]: the one an overdue schedule runs."""
    fire = due
    while True:
        following = next_fire(cron, tz, fire)
        if following > now:
            return fire
        fire = following


async def tick(
    conn: psycopg.AsyncConnection[Any], *, limit: int = 100, now: datetime | None = None
) -> list[int]:
    """One scheduler pass in one transaction: fire what is due, compute missing next
    times. Safe on every worker at once. Returns the ids of the jobs it enqueued.
    `now` stands in for the database's clock (tests move time with it)."""
    fired: list[int] = []
    async with conn.transaction():
        due = await store.lock_due_schedules(limit, now).arun(conn)
        for name, cron, tz, next_run_at, db_now in due:
            try:
                if next_run_at is None:
                    await store.set_schedule_next_run(name, next_fire(cron, tz, db_now)).arun(conn)
                    continue
                fire_at = latest_fire(cron, tz, next_run_at, db_now)
                following = next_fire(cron, tz, db_now)
            except (ConfigError, ValueError, KeyError) as exc:
                # Created through SQL with an expression croniter rejects: park it.
                log.error("schedule %s disabled: %s", name, exc)
                await store.set_schedule_next_run(name, None, str(exc)).arun(conn)
                continue
            job_id = await store.fire_schedule(name, fire_at, following).arun(conn)
            if fire_at != next_run_at:
                log.warning(
                    "schedule %s was overdue since %s; ran its %s fire only",
                    name,
                    next_run_at.isoformat(),
                    fire_at.isoformat(),
                )
            fired.append(job_id)
    return fired


def create_call(spec: ScheduleSpec) -> store.Call[None]:
    """The statement that writes a code-declared schedule (replacing the stored one)."""
    return store.create_schedule(
        spec.name,
        cron=spec.cron,
        task=spec.task,
        args_json=spec.args_json,
        queue=spec.queue,
        priority=spec.priority,
        timezone=spec.timezone,
        max_attempts=spec.max_attempts,
        replace=True,
    )
