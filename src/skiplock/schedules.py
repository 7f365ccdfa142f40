"""Recurring schedules: cron maths (croniter) and the scheduler tick every worker runs.

Policy, documented in docs/schedules.md:
- catch-up: when a schedule is found overdue (workers were down), only its most recent
  missed fire time runs, once; older missed fire times are dropped;
- DST, for an expression with a fixed hour (2, 1-3, @daily): each matching wall time fires
  once — one the spring-forward jump skips fires at the first instant after the jump
  (02:30 → 03:00 that day; several skipped times fire together, once), one the fall-back
  repeats fires at its first occurrence only. An expression whose hour is a wildcard or
  a step (hourly, */2) follows the clock: it fires whenever the clock shows a matching
  time, in both passes of a repeated hour, and not for times the clock never shows.
- a fire time already stored runs even if the one after it cannot be computed; the
  schedule is then disabled with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from croniter import CroniterBadDateError, croniter

from skiplock import store
from skiplock.errors import ConfigError

log = logging.getLogger("skiplock.scheduler")


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule declared in code (`@app.schedule`), written to the database at worker
    start."""

    name: str
    cron: str
    task: str
    args_json: str = "{}"
    # None: the task's published default, the queue's, the built-in value, resolved by
    # skiplock.create_schedule
    queue: str | None = None
    priority: int | None = None
    timezone: str = "UTC"
    max_attempts: int | None = None


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


def _follows_the_clock(cron: str) -> bool:
    # An hour that is a wildcard or a step (hourly, */2) fires on the clock as it runs;
    # a fixed hour (2, 1-3, 0,12; @daily and the longer aliases) fires per wall time.
    if cron.startswith("@"):
        return cron == "@hourly"
    hour = cron.split()[1]
    return "*" in hour or "/" in hour


def _jump_instant(earlier: datetime, later: datetime, zone: ZoneInfo) -> datetime:
    """The instant the clock jumps forward, for a wall time inside the skipped span:
    `later` (read with the offset after the jump) lies before it, `earlier` (read with the
    offset before) at or after it. Offsets change on whole seconds."""
    low, high = later.astimezone(timezone.utc), earlier.astimezone(timezone.utc)
    before = low.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) // 2
        if middle.astimezone(zone).utcoffset() == before:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0)


def _fire_instants(wall: datetime, zone: ZoneInfo, *, clock: bool) -> list[datetime]:
    """The UTC instants at which a matching local wall time fires, under the DST policy."""
    earlier = wall.replace(tzinfo=zone, fold=0)
    later = wall.replace(tzinfo=zone, fold=1)
    if earlier.utcoffset() == later.utcoffset():  # shown once
        return [earlier.astimezone(timezone.utc)]
    if earlier.astimezone(timezone.utc) < later.astimezone(timezone.utc):  # shown twice
        occurrences = [earlier, later] if clock else [earlier]
        return [moment.astimezone(timezone.utc) for moment in occurrences]
    # Never shown: skipped by a spring-forward jump.
    return [] if clock else [_jump_instant(earlier, later, zone)]


def next_fire(cron: str, tz: str, after: datetime) -> datetime:
    """The first fire time strictly after `after`, as an aware UTC datetime.

    croniter walks naive local wall times (calendar arithmetic only, no offsets); each
    matching wall time is then placed on the real timeline by the DST policy. Wall order
    and time order differ only inside a repeated hour, so the walk starts early enough
    to see second-pass times after `after` and stops once no later wall time can fire
    earlier than the best instant found."""
    zone = ZoneInfo(tz)
    clock = _follows_the_clock(cron)
    local = after.astimezone(zone)
    wall = local.replace(tzinfo=None)
    # In the first pass of a repeated hour, wall times behind `after` by up to the shift
    # come round again after it: start that far back (elsewhere the shift is zero).
    wall -= local.replace(fold=1).astimezone(timezone.utc) - local.astimezone(timezone.utc)
    walls = croniter(cron, wall)
    best: datetime | None = None
    while True:
        try:
            candidate: datetime = walls.get_next(datetime)
        except CroniterBadDateError:
            raise ConfigError(f"cron {cron!r} has no fire time after {after}") from None
        for moment in _fire_instants(candidate, zone, clock=clock):
            if moment > after and (best is None or moment < best):
                best = moment
        # No instant of this or any later wall time is earlier than this bound.
        bound = min(
            candidate.replace(tzinfo=zone, fold=fold).astimezone(timezone.utc) for fold in (0, 1)
        )
        if best is not None and bound >= best:
            return best


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
            if next_run_at is None:
                try:
                    first = next_fire(cron, tz, db_now)
                except (ConfigError, ValueError, KeyError) as exc:
                    # Created through SQL with an expression croniter rejects: park it.
                    log.error("schedule %s disabled: %s", name, exc)
                    await store.set_schedule_next_run(name, None, str(exc)).arun(conn)
                    continue
                await store.set_schedule_next_run(name, first).arun(conn)
                continue
            following: datetime | None
            error: str | None = None
            try:
                fire_at = latest_fire(cron, tz, next_run_at, db_now)
                following = next_fire(cron, tz, db_now)
            except (ConfigError, ValueError, KeyError) as exc:
                # next_run_at was computed when the expression still worked: that fire
                # time is promised, so it runs; only then is the schedule parked.
                fire_at, following, error = next_run_at, None, str(exc)
            job_id = await store.fire_schedule(name, fire_at, following).arun(conn)
            if error is not None:
                log.error("schedule %s disabled after its %s fire: %s", name, fire_at, error)
                await store.set_schedule_next_run(name, None, error).arun(conn)
            elif fire_at != next_run_at:
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
