"""Enqueueing (sql/functions/030_enqueue.sql): one job through skiplock.enqueue, many
through one INSERT (skiplock.insert_jobs), one COPY, or skiplock.enqueue_many."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import psycopg

from skiplock.options import NAMES, OPTIONS
from skiplock.store.call import Call, column, scalar, text_array


class EnqueueRequest(NamedTuple):
    """One job to enqueue; `args_json` is already-encoded JSON text (see jobs.encode_json).

    A NamedTuple (immutable, and cheaper to build than a frozen dataclass): bulk enqueue
    makes one per job.
    """

    task: str
    args_json: str = "{}"
    queue: str | None = None
    priority: int | None = None
    run_at: datetime | None = None
    delay: timedelta | None = None
    max_attempts: int | None = None
    retry_policy: Mapping[str, Any] | None = None
    timeout: timedelta | None = None
    tags: Sequence[str] = ()
    meta: Mapping[str, Any] | None = None
    unique_key: str | None = None
    unique_scope: str | None = None
    unique_for: timedelta | None = None
    expires_at: datetime | None = None
    expires_in: timedelta | None = None
    depends_on: Sequence[int] = ()
    on_dependency_failure: str | None = None
    callback_url: str | None = None

    def with_args(self, args_json: str) -> EnqueueRequest:
        """This request with other args; cheaper than `_replace`, and bulk enqueue calls
        it once a job."""
        return EnqueueRequest._make((self.task, args_json, *self[2:]))

    def as_json_object(self) -> str:
        """This job as one element of enqueue_many's JSON array: every option that is
        set, by its name (durations in seconds)."""
        parts = [f'"task":{json.dumps(self.task)}', f'"args":{self.args_json}']
        for name, value in zip(NAMES, self[2:], strict=True):
            if value is not None and value != ():
                parts.append(f'"{name}":{json.dumps(_json_value(value))}')
        return "{" + ",".join(parts) + "}"


def _json_value(value: Any) -> Any:
    """An option's value as enqueue_many reads it from JSON."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, tuple):
        return list(value)
    return value


# The options of a job that gives none, as EnqueueRequest holds them.
_UNSET = EnqueueRequest("")[2:]


def enqueue(job: EnqueueRequest) -> Call[int]:
    options = job[2:]
    given = (
        ()
        if options == _UNSET
        else tuple(i for i, value in enumerate(options) if value is not None and value != ())
    )
    params = (job.task, job.args_json, *(_option_param(job[2 + i]) for i in given))
    return Call(_enqueue_sql(given), params, scalar)


@functools.cache
def _enqueue_sql(given: tuple[int, ...]) -> str:
    """skiplock.enqueue with the options set, by name (OPTIONS' declaration, which a test
    checks against the function's arguments); the rest take the function's defaults. A
    plain job sends two parameters, not twenty: a measurable part of a one-job call."""
    named = "".join(f", {OPTIONS[i].name} => %s::{OPTIONS[i].sql_type}" for i in given)
    return f"SELECT skiplock.enqueue(%s, %s::jsonb{named})"


def enqueue_many(jobs: Sequence[EnqueueRequest]) -> Call[list[int]]:
    """Many jobs in one statement. Jobs that share their options (see shared_options) go
    in as one INSERT or, past INSERT_MAX_JOBS, one COPY; the others through
    skiplock.enqueue_many, which reads each job's own options."""
    options = shared_options(jobs)
    if options is not None:
        if len(jobs) <= INSERT_MAX_JOBS or any(job.task != jobs[0].task for job in jobs):
            return insert_jobs(jobs, options)
        return copy_jobs(jobs, options)
    document = "[" + ",".join(job.as_json_object() for job in jobs) + "]"
    return Call("SELECT skiplock.enqueue_many(%s::jsonb)", (document,), column)


# The options jobs can share in one INSERT or COPY, with their column types: absolute
# values only. Relative times (delay, expires_in) need the database's now(), and every
# other field must be at its default.
SHARED_OPTIONS = {
    "queue": "skiplock.queue_name",
    "priority": "smallint",
    "run_at": "timestamptz",
    "max_attempts": "integer",
    "retry_policy": "skiplock.retry_policy",
    "timeout": "interval",
    "tags": "text[]",
    "meta": "skiplock.job_meta",
    "expires_at": "timestamptz",
    "callback_url": "skiplock.callback_url",
}
_SHARED_DEFAULTS = {
    name: value
    for name, value in EnqueueRequest._field_defaults.items()
    if name not in SHARED_OPTIONS and name != "args_json"
}
# Up to this many jobs, one INSERT beats reserve_job_ids + COPY: one round trip instead
# of three, names checked once (COPY checks each row's), and no COPY slot bookkeeping
# (on PostgreSQL 17 and 18 it grows with the square of the rows per statement, up to
# 1,000). Past it COPY wins: it streams, and the bookkeeping is paid once
# (docs/performance.md, "Costs behind the code's choices").
INSERT_MAX_JOBS = 5_000


def shared_options(jobs: Sequence[EnqueueRequest]) -> list[tuple[str, Any]] | None:
    """The options (name, value) all of `jobs` share, the unset ones left out for the
    task's published defaults; None when they differ, or when one needs the database's clock, a
    unique key or dependencies."""
    if not jobs:
        return None
    first = jobs[0]
    shared = first[2:]
    # Jobs without args built from one task's template are the very same object.
    if any(job is not first and job[2:] != shared for job in jobs):
        return None
    if shared == _UNSET:  # the usual bulk: no option given, none to send
        return []
    if any(getattr(first, name) != default for name, default in _SHARED_DEFAULTS.items()):
        return None
    options = [(name, getattr(first, name)) for name in SHARED_OPTIONS]
    return [(name, value) for name, value in options if value is not None and value != ()]


def insert_jobs(jobs: Sequence[EnqueueRequest], options: list[tuple[str, Any]]) -> Call[list[int]]:
    """One INSERT of jobs sharing `options`, through skiplock.insert_jobs (SECURITY
    DEFINER: a login role holding only skiplock_producer may call it). The shared values
    (the options, and the task when all jobs have one) travel once, as one JSON object;
    the jobs as one JSON array, of args or of [task, args] pairs. Ids come back in input
    order."""
    shared = {name: _json_option(value) for name, value in options}
    task = jobs[0].task
    if all(job.task == task for job in jobs):
        shared["task"] = task
        document = "[" + ",".join([job.args_json for job in jobs]) + "]"
    else:
        document = _pairs(jobs)
    return Call(
        "SELECT skiplock.insert_jobs(%s::jsonb, %s::jsonb)",
        (document, json.dumps(shared)),
        scalar,
    )


def _option_param(value: Any) -> Any:
    """An option as a statement parameter: JSON objects as text, lists as arrays;
    None (unset) stays None."""
    if isinstance(value, Mapping):
        return json.dumps(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _json_option(value: Any) -> Any:
    """A shared option as skiplock.insert_jobs reads it from JSON."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds()} seconds"
    if isinstance(value, tuple):
        return list(value)
    return value


def _pairs(jobs: Sequence[EnqueueRequest]) -> str:
    """`[[task, args], ...]` as JSON text, each task encoded once (bulk jobs share few)."""
    tasks: dict[str, str] = {}
    pairs = []
    for job in jobs:
        task = tasks.get(job.task)
        if task is None:
            task = tasks[job.task] = "[" + json.dumps(job.task) + ","
        pairs.append(task + job.args_json + "]")
    return "[" + ",".join(pairs) + "]"


@dataclass(frozen=True)
class CopyCall(Call[list[int]]):
    """Reserve ids (`sql`, one statement), resolve the shared options (`options_sql`,
    skiplock._job_options: given > the task's published defaults > built-in, and
    max_attempts given > the task's > the queue's > 20), then COPY the rows with those ids
    and every resolved option: COPY returns no ids, callers need them in input order, and
    a row that named its options never needs the insert trigger's second write. Three
    round trips for any number of jobs; the COPY is one statement, so one NOTIFY and
    all-or-nothing, and it joins the caller's transaction like any statement."""

    options_sql: str = ""
    options_params: tuple[Any, ...] = ()
    lines: Sequence[str] = ()
    # For a role that may not insert into skiplock.jobs (a producer: the reservation
    # then returns NULL): the same jobs through skiplock.insert_jobs, built only then.
    instead: Callable[[], Call[list[int]]] | None = None

    def _copy(self, ids: list[int], resolved: Mapping[str, Any]) -> tuple[bytes, str]:
        given = [(name, value) for name, value in resolved.items() if value is not None]
        columns = ", ".join(["id", "task", "args", *(name for name, _ in given)])
        suffix = "".join("\t" + _copy_resolved(name, value) for name, value in given) + "\n"
        data = "".join(
            [f"{job_id}\t{line}{suffix}" for job_id, line in zip(ids, self.lines, strict=True)]
        )
        return f"COPY skiplock.jobs ({columns}) FROM STDIN".encode(), data

    def run(self, conn: psycopg.Connection[Any]) -> list[int]:
        ids = self.parse(conn.execute(self.sql.encode(), self.params).fetchall())
        if ids is None and self.instead is not None:
            return self.instead().run(conn)
        resolved = conn.execute(self.options_sql.encode(), self.options_params).fetchone()
        copy_sql, data = self._copy(ids, resolved[0] if resolved else {})
        with conn.cursor().copy(copy_sql) as copy:
            copy.write(data)
        return ids

    async def arun(self, conn: psycopg.AsyncConnection[Any]) -> list[int]:
        cursor = await conn.execute(self.sql.encode(), self.params)
        ids = self.parse(await cursor.fetchall())
        if ids is None and self.instead is not None:
            return await self.instead().arun(conn)
        cursor = await conn.execute(self.options_sql.encode(), self.options_params)
        resolved = await cursor.fetchone()
        copy_sql, data = self._copy(ids, resolved[0] if resolved else {})
        async with conn.cursor().copy(copy_sql) as copy:
            await copy.write(data)
        return ids


def _copy_text(value: str) -> str:
    """A value in COPY's text format (backslash, tab, newline and CR escaped)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        value = (
            value.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return value


def _copy_resolved(name: str, value: Any) -> str:
    """A resolved option (as to_jsonb gives it) in COPY's text format."""
    if name in ("retry_policy", "meta"):
        return _copy_text(json.dumps(value))
    if name == "tags":
        return _copy_text(text_array(list(value)))
    return _copy_text(str(value))


def copy_jobs(jobs: Sequence[EnqueueRequest], options: list[tuple[str, Any]]) -> CopyCall:
    """A COPY of jobs of one task sharing `options`, resolved once and written as the
    end of every row."""
    shared = {name: _json_option(value) for name, value in options}
    return CopyCall(
        # COPY needs INSERT on the table; without it (a producer-only role), no ids are
        # reserved and the jobs go through insert_jobs instead
        "SELECT CASE WHEN has_table_privilege('skiplock.jobs', 'INSERT')"
        " THEN skiplock.reserve_job_ids(%s) END",
        (len(jobs),),
        scalar,
        options_sql="SELECT to_jsonb(o) - 'run_at' || jsonb_strip_nulls(jsonb_build_object("
        "'run_at', %s::timestamptz)) FROM skiplock._job_options(%s::jsonb, %s) o",
        options_params=(shared.get("run_at"), json.dumps(shared), jobs[0].task),
        lines=_copy_lines(jobs),
        instead=lambda: insert_jobs(jobs, options),
    )


def _copy_lines(jobs: Sequence[EnqueueRequest]) -> list[str]:
    """`task<TAB>args` per job, each task escaped once (bulk jobs share few)."""
    tasks: dict[str, str] = {}
    lines = []
    for job in jobs:
        task = tasks.get(job.task)
        if task is None:
            task = tasks[job.task] = _copy_text(job.task) + "\t"
        args = job.args_json
        lines.append(task + (args if args == "{}" else _copy_text(args)))
    return lines
