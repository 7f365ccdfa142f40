"""Schedules across daylight-saving transitions: exact fire times for the documented
policy, a property test over many zones and years, and the scheduler tick on those nights.

The policy (docs/schedules.md): an expression with a fixed hour fires each matching wall
time once — a time the spring-forward jump skips fires at the first instant after the
jump, a time the fall-back repeats fires at its first occurrence only. An expression whose
hour is a wildcard or a step follows the clock: it fires whenever the clock shows a
matching time, in both passes of a repeated hour, and not for times the clock never shows.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import zoneinfo
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import psycopg
import pytest
from croniter import CroniterBadDateError, croniter
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from skiplock import schedules
from skiplock.errors import ConfigError

UTC = timezone.utc
MINUTE = timedelta(minutes=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(cron: str, tz: str, start: datetime, n: int) -> list[datetime]:
    out, moment = [], start
    for _ in range(n):
        moment = schedules.next_fire(cron, tz, moment)
        out.append(moment)
    return out


# Fall-back nights: the repeated hour is 01:00-01:59 in New York and London, 02:00-02:59
# in Berlin and Sydney, 01:30-01:59 on Lord Howe Island (a 30-minute shift).
FALL_BACK = [
    pytest.param(
        "*/15 1 * * *",
        "America/New_York",
        utc(2026, 10, 31, 12),
        [utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 15), utc(2026, 11, 1, 5, 30),
         utc(2026, 11, 1, 5, 45), utc(2026, 11, 2, 6)],
        id="new-york",
    ),
    pytest.param(
        "*/15 1 * * *",
        "Europe/London",
        utc(2026, 10, 24, 12),
        [utc(2026, 10, 25, 0), utc(2026, 10, 25, 0, 15), utc(2026, 10, 25, 0, 30),
         utc(2026, 10, 25, 0, 45), utc(2026, 10, 26, 1)],
        id="london",
    ),
    pytest.param(
        "*/15 2 * * *",
        "Europe/Berlin",
        utc(2026, 10, 24, 12),
        [utc(2026, 10, 25, 0), utc(2026, 10, 25, 0, 15), utc(2026, 10, 25, 0, 30),
         utc(2026, 10, 25, 0, 45), utc(2026, 10, 26, 1)],
        id="berlin",
    ),
    pytest.param(
        "*/15 2 * * *",
        "Australia/Sydney",
        utc(2026, 4, 4),
        [utc(2026, 4, 4, 15), utc(2026, 4, 4, 15, 15), utc(2026, 4, 4, 15, 30),
         utc(2026, 4, 4, 15, 45), utc(2026, 4, 5, 16)],
        id="sydney",
    ),
    pytest.param(
        "*/15 1 * * *",
        "Australia/Lord_Howe",
        utc(2026, 4, 4),
        [utc(2026, 4, 4, 14), utc(2026, 4, 4, 14, 15), utc(2026, 4, 4, 14, 30),
         utc(2026, 4, 4, 14, 45), utc(2026, 4, 5, 14, 30)],
        id="lord-howe",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("cron", "tz", "start", "expected"), FALL_BACK)
def test_fall_back_fires_a_fixed_hour_once_per_wall_time_at_its_first_occurrence(
    cron: str, tz: str, start: datetime, expected: list[datetime]
) -> None:
    assert fires(cron, tz, start, len(expected)) == expected
    # Catch-up after an outage through the repeated hour runs the last first-pass time.
    assert (
        schedules.latest_fire(cron, tz, expected[0], expected[3] + timedelta(hours=2))
        == (expected[3])
    )


SPRING_FORWARD = [
    # 2026-03-08, New York: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
    pytest.param(
        "*/15 2 * * *", "America/New_York", utc(2026, 3, 7, 12),
        [utc(2026, 3, 8, 7), utc(2026, 3, 9, 6)], id="new-york-skipped-hour",
    ),
    pytest.param(
        "*/7 1-3 * * *", "America/New_York", utc(2026, 3, 8, 6, 50),
        [utc(2026, 3, 8, 6, 56), utc(2026, 3, 8, 7), utc(2026, 3, 8, 7, 7)],
        id="new-york-range-over-the-jump",
    ),
    # 2026-03-29, Berlin: 02:00 CET jumps to 03:00 CEST (01:00 UTC).
    pytest.param(
        "0,20,40 2 * * *", "Europe/Berlin", utc(2026, 3, 28, 12),
        [utc(2026, 3, 29, 1), utc(2026, 3, 30, 0)], id="berlin",
    ),
    # 2026-10-04, Sydney: 02:00 AEST jumps to 03:00 AEDT (16:00 UTC the day before).
    pytest.param(
        "30 2 * * *", "Australia/Sydney", utc(2026, 10, 3),
        [utc(2026, 10, 3, 16), utc(2026, 10, 4, 15, 30)], id="sydney",
    ),
    # 2026-10-04, Lord Howe Island: 02:00 (+10:30) jumps to 02:30 (+11), 15:30 UTC.
    pytest.param(
        "*/15 2 * * *", "Australia/Lord_Howe", utc(2026, 10, 3),
        [utc(2026, 10, 3, 15, 30), utc(2026, 10, 3, 15, 45), utc(2026, 10, 4, 15)],
        id="lord-howe",
    ),
    # 2011-12-29, Samoa: 24:00 (-10) jumps to 2011-12-31 00:00 (+14), 10:00 UTC; the
    # whole of 30 December is skipped.
    pytest.param(
        "30 2 * * *", "Pacific/Apia", utc(2011, 12, 29, 12),
        [utc(2011, 12, 29, 12, 30), utc(2011, 12, 30, 10), utc(2011, 12, 30, 12, 30)],
        id="apia-skipped-day",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("cron", "tz", "start", "expected"), SPRING_FORWARD)
def test_spring_forward_fires_skipped_wall_times_once_at_the_jump(
    cron: str, tz: str, start: datetime, expected: list[datetime]
) -> None:
    assert fires(cron, tz, start, len(expected)) == expected


def test_a_wildcard_or_step_hour_follows_the_clock_through_both_transitions() -> None:
    every_quarter = fires("*/15 * * * *", "America/New_York", utc(2026, 11, 1, 4, 50), 9)
    assert every_quarter == [utc(2026, 11, 1, 5) + k * timedelta(minutes=15) for k in range(9)]
    # 00:00 CEST, 02:00 CEST, 02:00 CET, 04:00 CET
    assert fires("0 */2 * * *", "Europe/Berlin", utc(2026, 10, 24, 21), 4) == [
        utc(2026, 10, 24, 22),
        utc(2026, 10, 25, 0),
        utc(2026, 10, 25, 1),
        utc(2026, 10, 25, 3),
    ]
    # The clock never shows 02:30 in New York on 2026-03-08: 01:30 EST, then 03:30 EDT.
    assert fires("30 * * * *", "America/New_York", utc(2026, 3, 8, 6), 2) == [
        utc(2026, 3, 8, 6, 30),
        utc(2026, 3, 8, 7, 30),
    ]
    # Lord Howe Island: 01:00 (+10:30), then 03:00 (+11); 02:00 is never shown.
    assert fires("0 * * * *", "Australia/Lord_Howe", utc(2026, 10, 3, 14), 2) == [
        utc(2026, 10, 3, 14, 30),
        utc(2026, 10, 3, 16),
    ]


def test_a_start_inside_the_repeated_hour_finds_the_next_fire() -> None:
    ny = ZoneInfo("America/New_York")
    first_pass = datetime(2026, 11, 1, 1, 50, tzinfo=ny)  # 01:50 EDT
    second_pass = datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=ny)  # 01:10 EST
    assert schedules.next_fire("*/15 * * * *", "America/New_York", first_pass) == utc(
        2026, 11, 1, 6
    )
    assert schedules.next_fire("*/15 * * * *", "America/New_York", second_pass) == utc(
        2026, 11, 1, 6, 15
    )
    assert schedules.next_fire("*/15 1 * * *", "America/New_York", second_pass) == utc(
        2026, 11, 2, 6
    )


# --- property: many zones, years and expressions, starting near the transitions ------

ZONES = sorted(zoneinfo.available_timezones())

NAMED_CRONS = [
    "*/15 1 * * *",
    "*/15 2 * * *",
    "0,20,40 2 * * *",
    "*/7 1-3 * * *",
    "30 2 * * *",
    "30 1 * * *",
    "45 0 * * *",
    "* * * * *",
    "*/15 * * * *",
    "0 */2 * * *",
    "@hourly",
    "@daily",
]


def cron_field(top: int) -> st.SearchStrategy[str]:
    value = st.integers(0, top)
    return st.one_of(
        st.just("*"),
        st.integers(1, top).map(lambda k: f"*/{k}"),
        value.map(str),
        st.lists(value, min_size=2, max_size=4, unique=True).map(
            lambda vs: ",".join(str(v) for v in sorted(vs))
        ),
        st.tuples(value, value, st.integers(1, 7)).map(
            lambda t: f"{min(t[:2])}-{max(t[:2])}/{t[2]}"
        ),
    )


def hour_field(near: list[int]) -> st.SearchStrategy[str]:
    """Hour fields that name the hours around a transition often, and any hour sometimes."""
    close = st.sampled_from(near)
    return st.one_of(
        close.map(str),
        st.tuples(close, st.integers(0, 23)).map(lambda t: ",".join(map(str, sorted(set(t))))),
        st.tuples(close, st.integers(0, 2)).map(lambda t: f"{max(t[0] - t[1], 0)}-{t[0]}"),
        cron_field(23),
    )


def crons(near: list[int]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NAMED_CRONS),
        st.tuples(cron_field(59), hour_field(near)).map(lambda mh: f"{mh[0]} {mh[1]} * * *"),
    )


@functools.cache
def transitions(tz: str, year: int) -> tuple[datetime, ...]:
    """The instants in `year` at which the zone's UTC offset changes (whole minutes)."""
    zone = ZoneInfo(tz)
    found = []
    day = utc(year, 1, 1)
    while day.year == year:
        following = day + timedelta(days=1)
        if day.astimezone(zone).utcoffset() != following.astimezone(zone).utcoffset():
            low, high = 0, 24 * 60  # minutes after `day`; the change lies in (low, high]
            while high - low > 1:
                mid = (low + high) // 2
                moment = day + mid * MINUTE
                if moment.astimezone(zone).utcoffset() == day.astimezone(zone).utcoffset():
                    low = mid
                else:
                    high = mid
            found.append(day + high * MINUTE)
        day = following
    return tuple(found)


def follows_the_clock(cron: str) -> bool:
    if cron.startswith("@"):
        return cron == "@hourly"
    hour = cron.split()[1]
    return "*" in hour or "/" in hour


def expected_fires(cron: str, tz: str, start: datetime, end: datetime) -> list[datetime]:
    """The policy, computed another way: walk real time minute by minute from `start` to
    `end` and note every minute at which the schedule should fire."""
    fields, _ = croniter.expand(cron)
    minutes = set(range(60)) if fields[0] == ["*"] else set(fields[0])
    hours = set(range(24)) if fields[1] == ["*"] else set(fields[1])

    def matches(wall: datetime) -> bool:
        return wall.minute in minutes and wall.hour in hours

    zone = ZoneInfo(tz)
    clock = follows_the_clock(cron)
    moment = start.replace(second=0, microsecond=0) + MINUTE
    shown = (moment - MINUTE).astimezone(zone).replace(tzinfo=None)
    out = []
    while moment <= end:
        local = moment.astimezone(zone)
        wall = local.replace(tzinfo=None)
        second_pass = local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()
        fire = matches(wall) and (clock or not second_pass)
        if not clock and wall - shown > MINUTE:  # the clock jumped over (shown, wall)
            skipped = shown + MINUTE
            while skipped < wall and not fire:
                fire = matches(skipped)
                skipped += MINUTE
        if fire:
            out.append(moment)
        shown = wall
        moment += MINUTE
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    tz=st.sampled_from(ZONES),
    year=st.integers(2000, 2040),
    pick=st.integers(0, 7),
    shift=st.integers(-16 * 60, 3 * 60),
    second=st.integers(0, 59),
)
def test_next_fire_is_after_increasing_and_follows_the_policy_everywhere(
    data: st.DataObject, tz: str, year: int, pick: int, shift: int, second: int
) -> None:
    changes = transitions(tz, year)
    anchor = changes[pick % len(changes)] if changes else utc(year, 1, 1)
    zone = ZoneInfo(tz)
    # The hour the clock shows before the change, the one after it, and the one it skips.
    before = (anchor - MINUTE).astimezone(zone).hour
    cron = data.draw(crons([before, (before + 1) % 24, anchor.astimezone(zone).hour]))
    start = anchor + shift * MINUTE + timedelta(seconds=second)
    chain = fires(cron, tz, start, 6)
    assert chain[0] > start
    assert all(a < b for a, b in itertools.pairwise(chain))
    assert chain == expected_fires(cron, tz, start, chain[-1])
    # Catch-up from the first of them lands on the last one that is due.
    assert (
        schedules.latest_fire(cron, tz, chain[0], chain[-1] - timedelta(microseconds=1))
        == (chain[-2])
    )


DAY_FIELDS = st.tuples(
    st.one_of(
        st.just("*"), st.integers(1, 31).map(str), st.sampled_from(["1-7", "*/10", "L", "29,30,31"])
    ),
    st.one_of(st.just("*"), st.integers(1, 12).map(str), st.sampled_from(["2", "3,10", "*/3"])),
    st.one_of(st.just("*"), st.integers(0, 6).map(str), st.sampled_from(["1-5", "0", "5#2"])),
)


def second_pass(local: datetime) -> bool:
    return local.fold == 1 and local.replace(fold=0).utcoffset() != local.utcoffset()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    days=DAY_FIELDS,
    tz=st.sampled_from(ZONES),
    year=st.integers(2000, 2040),
    pick=st.integers(0, 7),
    shift=st.integers(-16 * 60, 3 * 60),
)
def test_any_day_fields_fire_on_matching_times_or_at_a_jump(
    data: st.DataObject, days: tuple[str, str, str], tz: str, year: int, pick: int, shift: int
) -> None:
    changes = transitions(tz, year)
    anchor = changes[pick % len(changes)] if changes else utc(year, 1, 1)
    zone = ZoneInfo(tz)
    before = (anchor - MINUTE).astimezone(zone).hour
    minute = data.draw(cron_field(59))
    hour = data.draw(hour_field([before, (before + 1) % 24]))
    cron = " ".join([minute, hour, *days])
    assume(croniter.is_valid(cron))
    start = anchor + shift * MINUTE
    try:
        chain = fires(cron, tz, start, 4)
    except ConfigError:
        # Only an expression that never matches (30 February) has no next fire time.
        with pytest.raises(CroniterBadDateError):
            croniter(cron, start.replace(tzinfo=None)).get_next(datetime)
        return
    assert chain[0] > start
    assert all(a < b for a, b in itertools.pairwise(chain))
    for moment in chain:
        local = moment.astimezone(zone)
        if croniter.match(cron, local.replace(tzinfo=None)):
            assert follows_the_clock(cron) or not second_pass(local)
        else:  # a fixed-hour time the clock skipped, fired at the jump
            just_before = (moment - timedelta(seconds=1)).astimezone(zone)
            assert not follows_the_clock(cron)
            assert just_before.utcoffset() < local.utcoffset()  # type: ignore[operator]


# --- the scheduler tick on those nights ------------------------------------------------


def tick(dsn: str, now: datetime) -> list[int]:
    async def one() -> list[int]:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
            return await schedules.tick(c, now=now)

    return asyncio.run(one())


def fire_times(conn: psycopg.Connection) -> list[datetime]:
    rows = conn.execute("SELECT (meta->>'fire_at')::timestamptz FROM skiplock.all_jobs").fetchall()
    return [row[0] for row in rows]


def test_the_scheduler_fires_the_last_first_pass_time_and_keeps_the_schedule(
    dsn: str, conn: psycopg.Connection
) -> None:
    conn.execute(
        "SELECT skiplock.create_schedule('quarterly', '*/15 1 * * *', 'report',"
        " p_timezone => 'America/New_York')"
    )
    # Due at 01:45 EDT, the last fire before New York's clocks fall back.
    conn.execute("UPDATE skiplock.schedules SET next_run_at = %s", (utc(2026, 11, 1, 5, 45),))
    fired = tick(dsn, utc(2026, 11, 1, 5, 45, 1))
    assert len(fired) == 1
    assert fire_times(conn) == [utc(2026, 11, 1, 5, 45)]
    row = conn.execute("SELECT enabled, next_run_at, last_error FROM skiplock.schedules").fetchone()
    assert row == (True, utc(2026, 11, 2, 6), None)  # 01:00 EST the next day


def test_a_due_fire_runs_even_when_the_following_one_cannot_be_computed(
    dsn: str, conn: psycopg.Connection
) -> None:
    # A crash state: a fire time was computed and stored, then the expression became one
    # the scheduler cannot use. The fire already promised runs; then the schedule parks.
    conn.execute("SELECT skiplock.create_schedule('broken', '61 * * * *', 'report')")
    conn.execute("UPDATE skiplock.schedules SET next_run_at = %s", (utc(2026, 5, 1, 12),))
    fired = tick(dsn, utc(2026, 5, 1, 12, 0, 30))
    assert len(fired) == 1
    assert fire_times(conn) == [utc(2026, 5, 1, 12)]
    row = conn.execute("SELECT enabled, next_run_at, last_error FROM skiplock.schedules").fetchone()
    assert row[0:2] == (False, None) and "61" in row[2]
    assert tick(dsn, utc(2026, 5, 1, 13)) == []
