"""Cron schedules: the maths (DST, catch-up), the SQL, and exactly-once firing."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import psycopg
import pytest

import skiplock
from skiplock import schedules
from skiplock.worker import Worker

NY = "America/New_York"
UTC = timezone.utc


def local(*args: int, tz: str = NY) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(tz))


def fires(cron: str, tz: str, start: datetime, n: int) -> list[datetime]:
    out, moment = [], start
    for _ in range(n):
        moment = schedules.next_fire(cron, tz, moment)
        out.append(moment)
    return out


def test_next_fire_is_utc_and_strictly_after() -> None:
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert fires("*/15 * * * *", "UTC", start, 2) == [
        start + timedelta(minutes=15),
        start + timedelta(minutes=30),
    ]
    assert schedules.next_fire("@daily", "Europe/Paris", start) == datetime(
        2026, 1, 1, 23, 0, tzinfo=UTC
    )


def test_spring_forward_runs_a_skipped_time_once_at_the_jump() -> None:
    # 2026-03-08: 02:00 EST jumps to 03:00 EDT in New York; 02:30 does not exist.
    got = [m.astimezone(ZoneInfo(NY)) for m in fires("30 2 * * *", NY, local(2026, 3, 7, 12), 3)]
    assert [(m.day, m.hour, m.minute) for m in got] == [(8, 3, 0), (9, 2, 30), (10, 2, 30)]


def test_fall_back_runs_a_fixed_time_once_and_hourly_every_real_hour() -> None:
    # 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:30 happens twice.
    daily = fires("30 1 * * *", NY, local(2026, 10, 31, 12), 2)
    assert [m - daily[0] for m in daily] == [timedelta(0), timedelta(hours=25)]
    assert daily[0] == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, the first one
    hourly = fires("0 * * * *", NY, local(2026, 11, 1, 0, 30), 3)
    assert [m - hourly[0] for m in hourly] == [timedelta(0), timedelta(hours=1), timedelta(hours=2)]


def test_catch_up_runs_only_the_most_recent_missed_fire() -> None:
    due = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    now = datetime(2026, 1, 1, 3, 7, tzinfo=UTC)
    assert schedules.latest_fire("*/5 * * * *", "UTC", due, now) == datetime(
        2026, 1, 1, 3, 5, tzinfo=UTC
    )
    assert schedules.latest_fire("*/5 * * * *", "UTC", due, due) == due


def test_bad_cron_and_timezone_are_refused(conn: psycopg.Connection) -> None:
    with pytest.raises(skiplock.ConfigError, match="cron"):
        schedules.validate("61 * * * *", "UTC")
    with pytest.raises(skiplock.ConfigError, match="timezone"):
        schedules.validate("* * * * *", "Mars/Olympus")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="time zone"):
        conn.execute("SELECT skiplock.create_schedule('s', '* * * * *', 't', p_timezone => 'Nope')")
    with pytest.raises(psycopg.errors.CheckViolation, match="cron_shape_valid"):
        conn.execute("SELECT skiplock.create_schedule('s', 'every minute', 't')")
    conn.execute("SELECT skiplock.create_schedule('s', '* * * * *', 't')")
    with pytest.raises(psycopg.errors.UniqueViolation, match="already exists"):
        conn.execute("SELECT skiplock.create_schedule('s', '*/2 * * * *', 't')")
    assert conn.execute("SELECT count(*) FROM skiplock.schedules").fetchone() == (1,)


def run_ticks(dsn: str, n: int) -> list[list[int]]:
    async def one() -> list[int]:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
            return await schedules.tick(c)

    async def many() -> list[list[int]]:
        return list(await asyncio.gather(*(one() for _ in range(n))))

    return asyncio.run(many())


def test_overdue_schedule_fires_once_across_concurrent_schedulers(
    dsn: str, conn: psycopg.Connection
) -> None:
    conn.execute("SELECT skiplock.create_schedule('every5', '*/5 * * * *', 'report', '{\"k\": 1}')")
    assert run_ticks(dsn, 1) == [[]]  # first pass only computes next_run_at
    (next_run_at,) = conn.execute("SELECT next_run_at FROM skiplock.schedules").fetchone()
    assert next_run_at > datetime.now(UTC) - timedelta(seconds=5)
    # The workers were down for three hours (written directly, as a crash state).
    conn.execute("UPDATE skiplock.schedules SET next_run_at = next_run_at - interval '3 hours'")
    results = run_ticks(dsn, 6)
    fired = [job for result in results for job in result]
    assert len(fired) == 1
    job = conn.execute("SELECT task, args, meta FROM skiplock.all_jobs").fetchone()
    assert job[0:2] == ("report", {"k": 1}) and job[2]["schedule"] == "every5"
    row = conn.execute(
        "SELECT next_run_at > now(), last_job_id, last_run_at > now() - interval '5 minutes'"
        " FROM skiplock.schedules"
    ).fetchone()
    assert row == (True, fired[0], True)
    assert run_ticks(dsn, 2) == [[], []]


def test_a_cron_only_sql_accepted_is_parked_with_its_error(
    dsn: str, conn: psycopg.Connection
) -> None:
    conn.execute("SELECT skiplock.create_schedule('bad', '61 * * * *', 't')")
    run_ticks(dsn, 1)
    row = conn.execute("SELECT enabled, next_run_at, last_error FROM skiplock.schedules").fetchone()
    assert row[0] is False and row[1] is None and "61" in row[2]


def test_enable_disable_delete(conn: psycopg.Connection) -> None:
    conn.execute("SELECT skiplock.create_schedule('s', '@hourly', 't')")
    conn.execute("UPDATE skiplock.schedules SET next_run_at = now() - interval '1 day'")
    assert conn.execute("SELECT skiplock.disable_schedule('s')").fetchone() == (True,)
    assert conn.execute("SELECT skiplock.enable_schedule('s')").fetchone() == (True,)
    # re-enabled: computed again from now, no catch-up for the time it was off
    assert conn.execute("SELECT next_run_at FROM skiplock.schedules").fetchone() == (None,)
    assert conn.execute("SELECT skiplock.delete_schedule('s')").fetchone() == (True,)
    assert conn.execute("SELECT skiplock.delete_schedule('s')").fetchone() == (False,)


def test_schedules_declared_in_code_are_written_at_worker_start_and_fire(
    dsn: str, conn: psycopg.Connection
) -> None:
    app = skiplock.App(dsn)

    @app.schedule("0 4 * * *", timezone="Europe/Paris", args={"full": True})
    @app.task(name="nightly", queue="reports")
    async def nightly(full: bool) -> str:
        return "done" if full else "partial"

    with pytest.raises(skiplock.ConfigError, match="cron"):
        app.schedule("not cron")

    async def body() -> None:
        worker = Worker(app, queues=["reports"], schedule_interval=0.05, poll_interval=0.05)
        runner = asyncio.create_task(worker.run())
        await asyncio.wait_for(worker.started.wait(), 30)
        for _ in range(200):
            row = conn.execute("SELECT next_run_at FROM skiplock.schedules").fetchone()
            if row and row[0] is not None:
                break
            await asyncio.sleep(0.05)
        conn.execute("UPDATE skiplock.schedules SET next_run_at = now() - interval '1 minute'")
        for _ in range(200):
            done = conn.execute(
                "SELECT result FROM skiplock.all_jobs WHERE status = 'succeeded'"
            ).fetchall()
            if done:
                break
            await asyncio.sleep(0.05)
        worker.stop()
        await runner

    asyncio.run(body())
    row = conn.execute(
        "SELECT cron, timezone, task, queue, args FROM skiplock.schedules WHERE name = 'nightly'"
    ).fetchone()
    assert row == ("0 4 * * *", "Europe/Paris", "nightly", "reports", {"full": True})
    assert conn.execute("SELECT result FROM skiplock.all_jobs").fetchall() == [("done",)]
    app.close()


def test_the_sql_examples_of_docs_schedules_run(conn: psycopg.Connection) -> None:
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "schedules.md"
    blocks = re.findall(r"```sql\n(.*?)```", doc.read_text(), re.S)
    assert blocks
    for block in blocks:
        conn.execute(block.encode())
    assert conn.execute("SELECT count(*) FROM skiplock.schedules").fetchone() == (0,)


def test_validate_refuses_seconds_fields_and_absurd_zones() -> None:
    with pytest.raises(skiplock.ConfigError, match="cron"):
        schedules.validate("* * * * * *", "UTC")
    with pytest.raises(skiplock.ConfigError, match="timezone"):
        schedules.validate("* * * * *", "A" * 300)
