"""Every SQL statement the Python side sends, each a call into the schema's functions.

A `Call` pairs one statement with the parsing of its rows, so the sync producer, the
async core, the API and the CLI share the same SQL instead of keeping copies in step.
Outside migrations, this is the only place that writes SQL.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, NamedTuple, TypeVar

import psycopg
from psycopg.types.json import set_json_loads

from skiplock.jobs import STATUSES, ClaimedJob, Job, Undecodable
from skiplock.options import NAMES

T = TypeVar("T")
Row = tuple[Any, ...]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One statement and how to read its rows; run it on a sync or an async connection."""

    sql: str
    params: Sequence[Any] | Mapping[str, Any]
    parse: Callable[[list[Row]], T]

    def run(self, conn: psycopg.Connection[Any]) -> T:
        return self.parse(conn.execute(self.sql.encode(), self.params).fetchall())

    async def arun(self, conn: psycopg.AsyncConnection[Any]) -> T:
        cursor = await conn.execute(self.sql.encode(), self.params)
        return self.parse(await cursor.fetchall())


def _scalar(rows: list[Row]) -> Any:
    return rows[0][0] if rows else None


def _column(rows: list[Row]) -> list[Any]:
    return [row[0] for row in rows]


# The batch calls send their arrays as array literals built here: psycopg's generic list
# dumper cost ~10% of a worker's CPU on no-op jobs; a join costs a fraction of that.
def int_array(values: Sequence[int]) -> str:
    """A PostgreSQL array literal of integers, for a `%s::bigint[]` parameter."""
    return "{" + ",".join(map(str, values)) + "}"


def text_array(values: Sequence[str]) -> str:
    """A PostgreSQL array literal of strings (each quoted), e.g. JSON texts for jsonb[]."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


def load_json(data: str | bytes) -> Any:
    """json.loads with a shortcut for `{}`, the args and meta of most jobs; installed on
    worker connections (see psycopg.types.json.set_json_loads).

    A document Python cannot decode (an integer of more than 4,300 digits, which jsonb
    stores) loads as `Undecodable`: raising here would fail the whole claim statement,
    batch and all, on every try. The worker fails that one job instead."""
    if data == b"{}" or data == "{}":
        return {}
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        return Undecodable(str(exc))


def _int_or_digits(digits: str) -> int | str:
    return int(digits) if len(digits.lstrip("-")) <= 4300 else digits


def load_readable_json(data: str | bytes) -> Any:
    """json.loads for inspection (API, CLI, App.get_job): an integer too long for
    Python's `int()` (jsonb keeps up to 131,072 digits) comes back as its digits in a
    string, so one such job does not make a whole listing fail."""
    try:
        return json.loads(data)
    except ValueError:
        return json.loads(data, parse_int=_int_or_digits)


def show_readable_json(conn: psycopg.Connection[Any]) -> None:
    """Decode this connection's json/jsonb with load_readable_json (a pool's configure)."""
    set_json_loads(load_readable_json, conn)


async def ashow_readable_json(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_loads(load_readable_json, conn)


# ---- producers ------------------------------------------------------------------------


class EnqueueRequest(NamedTuple):
    """One job to enqueue; `args_json` is already-encoded JSON text (see jobs.encode_json).

    A NamedTuple (immutable, and built ~5x faster than a frozen dataclass): bulk
    enqueue makes one per job.
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
        """This request with other args (_replace took 2.6 us a job of a bulk, this 1.2)."""
        return EnqueueRequest._make((self.task, args_json, *self[2:]))

    def as_json_object(self) -> str:
        """This job as one element of enqueue_many's JSON array: every option that is
        set, by its name (durations in seconds)."""
        parts = [f'"task":{json.dumps(self.task)}', f'"args":{self.args_json}']
        for name in NAMES:
            value = getattr(self, name)
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


def enqueue(job: EnqueueRequest) -> Call[int]:
    return Call(
        "SELECT skiplock.enqueue(%s, %s::jsonb, queue => %s, priority => %s, run_at => %s,"
        " delay => %s, max_attempts => %s, retry_policy => %s::jsonb, timeout => %s,"
        " tags => %s::text[], meta => %s::jsonb, unique_key => %s, unique_scope => %s,"
        " unique_for => %s, expires_at => %s, expires_in => %s, depends_on => %s::bigint[],"
        " on_dependency_failure => %s, callback_url => %s)",
        (
            job.task,
            job.args_json,
            job.queue,
            job.priority,
            job.run_at,
            job.delay,
            job.max_attempts,
            _option_param("retry_policy", job.retry_policy),
            job.timeout,
            _option_param("tags", job.tags),
            _option_param("meta", job.meta),
            job.unique_key,
            job.unique_scope,
            job.unique_for,
            job.expires_at,
            job.expires_in,
            list(job.depends_on) or None,
            job.on_dependency_failure,
            job.callback_url,
        ),
        _scalar,
    )


def enqueue_many(jobs: Sequence[EnqueueRequest]) -> Call[list[int]]:
    """Many jobs in one statement. Jobs that share their options (see shared_options) go
    in as one INSERT or, past INSERT_MAX_JOBS, one COPY; the others through
    skiplock.enqueue_many, which reads each job's own options."""
    options = shared_options(jobs)
    if options is not None:
        return (
            insert_jobs(jobs, options) if len(jobs) <= INSERT_MAX_JOBS else copy_jobs(jobs, options)
        )
    document = "[" + ",".join(job.as_json_object() for job in jobs) + "]"
    return Call("SELECT skiplock.enqueue_many(%s::jsonb)", (document,), _column)


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
DEFAULT_QUEUE = "default"  # skiplock.jobs.queue's default
# Up to this many jobs, one INSERT beats reserve_job_ids + COPY: one round trip instead
# of three, names checked once (COPY checks each row's), and no COPY slot bookkeeping
# (on PostgreSQL 17 and 18 it grows with the square of the rows per statement, up to
# 1,000). Past it COPY wins: it streams, and the bookkeeping is paid once. Per 1,000
# jobs with small args, INSERT / COPY: 100-job batches 33 / 47 ms, 1,000: 14.4 / 17.9,
# 2,000: 13.5 / 14.6, 5,000: 13.1 / 13.2, 20,000: 13.9 / 12.6.
INSERT_MAX_JOBS = 5_000


def shared_options(jobs: Sequence[EnqueueRequest]) -> list[tuple[str, Any]] | None:
    """The options (name, value) all of `jobs` share, the unset ones left out for the
    table's defaults; None when they differ, or when one needs the database's clock, a
    unique key or dependencies."""
    if not jobs:
        return None
    first = jobs[0]
    shared = first[2:]
    # Jobs without args built from one task's template are the very same object.
    if any(job is not first and job[2:] != shared for job in jobs):
        return None
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
    # the queue even when it is the default: its domain check then runs once, not per job
    shared.setdefault("queue", DEFAULT_QUEUE)
    task = jobs[0].task
    if all(job.task == task for job in jobs):
        shared["task"] = task
        document = "[" + ",".join([job.args_json for job in jobs]) + "]"
    else:
        document = _pairs(jobs)
    return Call(
        "SELECT skiplock.insert_jobs(%s::jsonb, %s::jsonb)",
        (document, json.dumps(shared)),
        _scalar,
    )


def _option_param(name: str, value: Any) -> Any:
    """An option as a statement parameter; None (unset) stays None."""
    if value is None:
        return None
    if name in ("retry_policy", "meta"):
        return json.dumps(value)
    if name == "tags":
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
    """Reserve ids (`sql`, one statement), then COPY the rows with those ids: COPY
    returns no ids, and callers need them in input order. Two round trips for any
    number of jobs; the COPY is one statement, so one NOTIFY and all-or-nothing, and it
    joins the caller's transaction like any statement."""

    copy_sql: str = ""
    lines: Sequence[str] = ()
    # For a role that may not insert into skiplock.jobs (a producer: the reservation
    # then returns NULL): the same jobs through skiplock.insert_jobs, built only then.
    instead: Callable[[], Call[list[int]]] | None = None

    def _data(self, ids: list[int]) -> str:
        return "".join([f"{job_id}\t{line}" for job_id, line in zip(ids, self.lines, strict=True)])

    def run(self, conn: psycopg.Connection[Any]) -> list[int]:
        ids = self.parse(conn.execute(self.sql.encode(), self.params).fetchall())
        if ids is None and self.instead is not None:
            return self.instead().run(conn)
        with conn.cursor().copy(self.copy_sql.encode()) as copy:
            copy.write(self._data(ids))
        return ids

    async def arun(self, conn: psycopg.AsyncConnection[Any]) -> list[int]:
        cursor = await conn.execute(self.sql.encode(), self.params)
        ids = self.parse(await cursor.fetchall())
        if ids is None and self.instead is not None:
            return await self.instead().arun(conn)
        async with conn.cursor().copy(self.copy_sql.encode()) as copy:
            await copy.write(self._data(ids))
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


def _copy_option(name: str, value: Any) -> str:
    if name in ("retry_policy", "meta"):
        return _copy_text(json.dumps(value))
    if name == "tags":
        return _copy_text(text_array(list(value)))
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return f"{value.total_seconds()} seconds"
    return _copy_text(str(value))


def copy_jobs(jobs: Sequence[EnqueueRequest], options: list[tuple[str, Any]]) -> CopyCall:
    """A COPY of jobs sharing `options`, written once as the end of every row."""
    suffix = "".join("\t" + _copy_option(name, value) for name, value in options) + "\n"
    columns = ", ".join(["id", "task", "args", *(name for name, _ in options)])
    return CopyCall(
        # COPY needs INSERT on the table; without it (a producer-only role), no ids are
        # reserved and the jobs go through insert_jobs instead
        "SELECT CASE WHEN has_table_privilege('skiplock.jobs', 'INSERT')"
        " THEN skiplock.reserve_job_ids(%s) END",
        (len(jobs),),
        _scalar,
        copy_sql=f"COPY skiplock.jobs ({columns}) FROM STDIN",
        lines=_copy_lines(jobs, suffix),
        instead=lambda: insert_jobs(jobs, options),
    )


def _copy_lines(jobs: Sequence[EnqueueRequest], suffix: str) -> list[str]:
    """`task<TAB>args<suffix>` per job, each task escaped once (bulk jobs share few)."""
    tasks: dict[str, str] = {}
    lines = []
    for job in jobs:
        task = tasks.get(job.task)
        if task is None:
            task = tasks[job.task] = _copy_text(job.task) + "\t"
        args = job.args_json
        lines.append(task + (args if args == "{}" else _copy_text(args)) + suffix)
    return lines


# ---- inspection -----------------------------------------------------------------------

JOB_COLUMNS = (
    "id, task, args, queue, priority, status, attempt, max_attempts, run_at, created_at,"
    " started_at, finished_at, progress, result, last_error, errors, tags, meta,"
    " retry_policy, timeout, worker_id, lease_expires_at, cancel_requested_at, callback_url"
)
JOB_FIELDS = tuple(name.strip() for name in JOB_COLUMNS.split(","))


# ---- list previews --------------------------------------------------------------------
# A listing must stay small whatever its rows hold (one page of 150 jobs with 1 MB args
# and results was 300 MB of JSON, and ten times that in the API's memory). So a list
# sends a JSON value whole only while its JSON text is at most PREVIEW_CHARS bytes; a
# longer one is NULL, and the row's `truncated` column says what was cut: {column:
# {"bytes": size of its JSON text in UTF-8, "preview": its first PREVIEW_CHARS
# characters}}. The cut is made in PostgreSQL, so no big value leaves the database; the
# whole value comes from the row's own read (get_job, get_dead_letter, ...). Bytes, not
# characters, decide: octet_length is free where length() reads the whole text.
PREVIEW_CHARS = 1000


def _with_previews(
    page: Call[Any], columns: Sequence[str], previews: Mapping[str, str], order_by: str
) -> Call[list[dict[str, Any]]]:
    """The rows of `page` (a statement selecting `columns`, whose rows are all listed:
    its LIMIT, if any, inside) with the columns of `previews` cut as above. `previews`
    maps a column to the SQL of its JSON text, written over the page's row `j`;
    `order_by` is the order of the rows, over `j`."""
    assert isinstance(page.params, Mapping)
    # The texts are computed once per row (OFFSET 0 keeps the planner from inlining
    # them into each use), and only for the page's rows: the LIMIT is inside.
    texts = ", ".join(f"{text} AS {name}" for name, text in previews.items())
    select = ", ".join(
        f"CASE WHEN octet_length(t.{c}) > %(preview_chars)s THEN NULL ELSE j.{c} END AS {c}"
        if c in previews
        else f"j.{c}"
        for c in columns
    )
    cuts = ", ".join(
        f"'{c}', CASE WHEN octet_length(t.{c}) > %(preview_chars)s THEN jsonb_build_object("
        f"'bytes', octet_length(t.{c}), 'preview', left(t.{c}, %(preview_chars)s)) END"
        for c in previews
    )
    names = (*columns, "truncated")
    return Call(
        f"SELECT {select}, jsonb_strip_nulls(jsonb_build_object({cuts})) AS truncated"
        f" FROM ({page.sql}) j CROSS JOIN LATERAL (SELECT {texts} OFFSET 0) t"
        f" ORDER BY {order_by}",
        {**page.params, "preview_chars": PREVIEW_CHARS},
        lambda rows: [dict(zip(names, row, strict=True)) for row in rows],
    )


# The JSON-valued columns of a listed job (all the others are bounded by their types).
JOB_PREVIEWS = {
    "args": "j.args::text",
    "result": "j.result::text",
    "meta": "j.meta::text",
    "progress": "j.progress::text",
    "last_error": "j.last_error::text",
    "errors": "j.errors::text",
    "tags": "to_jsonb(j.tags)::text",
    "retry_policy": "j.retry_policy::text",
}


def _jobs(rows: list[Row]) -> list[Job]:
    return [Job(*row) for row in rows]


def _job(rows: list[Row]) -> Job | None:
    return Job(*rows[0]) if rows else None


def get_job(job_id: int) -> Call[Job | None]:
    return Call(f"SELECT {JOB_COLUMNS} FROM skiplock.all_jobs WHERE id = %s", (job_id,), _job)


def list_jobs(
    *,
    status: str | None = None,
    queue: str | None = None,
    task: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> Call[list[Job]]:
    """Newest first; `before_id` pages back (keyset: ids below it)."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    return Call(
        f"SELECT {JOB_COLUMNS} FROM skiplock.all_jobs"
        " WHERE (%(status)s::text IS NULL OR status = %(status)s)"
        "   AND (%(queue)s::text IS NULL OR queue = %(queue)s)"
        "   AND (%(task)s::text IS NULL OR task = %(task)s)"
        "   AND (%(before)s::bigint IS NULL OR id < %(before)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"status": status, "queue": queue, "task": task, "before": before_id, "limit": limit},
        _jobs,
    )


QUEUE_STAT_COLUMNS = (
    "queue",
    "paused",
    "max_running",
    "rate_limit",
    "rate_period",
    "retry_policy",
    "timeout",
    *STATUSES,
)


def _queue_stat(row: Row) -> dict[str, Any]:
    stat = dict(zip(QUEUE_STAT_COLUMNS, row, strict=True))
    for name in ("rate_period", "timeout"):  # seconds, so the row is plain JSON
        if stat[name] is not None:
            stat[name] = stat[name].total_seconds()
    return stat


def queue_stats() -> Call[list[dict[str, Any]]]:
    return Call(
        f"SELECT {', '.join(QUEUE_STAT_COLUMNS)} FROM skiplock.queue_stats ORDER BY queue",
        (),
        lambda rows: [_queue_stat(row) for row in rows],
    )


def set_queue_limits(
    queue: str,
    *,
    max_running: int | None = None,
    rate_limit: int | None = None,
    rate_period: timedelta | None = None,
) -> Call[None]:
    return Call(
        "SELECT skiplock.set_queue_limits(%s, %s, %s, %s)",
        (queue, max_running, rate_limit, rate_period),
        lambda rows: None,
    )


def set_queue_defaults(
    queue: str,
    *,
    retry_policy: Mapping[str, Any] | None = None,
    timeout: timedelta | None = None,
) -> Call[None]:
    return Call(
        "SELECT skiplock.set_queue_defaults(%s, %s::jsonb, %s)",
        (queue, json.dumps(retry_policy) if retry_policy is not None else None, timeout),
        lambda rows: None,
    )


# ---- admin ----------------------------------------------------------------------------


def cancel_job(job_id: int) -> Call[str | None]:
    return Call("SELECT skiplock.cancel_job(%s)", (job_id,), _scalar)


def retry_job(job_id: int) -> Call[str | None]:
    return Call("SELECT skiplock.retry_job(%s)", (job_id,), _scalar)


def pause_queue(queue: str) -> Call[bool]:
    return Call("SELECT skiplock.pause_queue(%s)", (queue,), lambda rows: bool(_scalar(rows)))


def resume_queue(queue: str) -> Call[bool]:
    return Call("SELECT skiplock.resume_queue(%s)", (queue,), lambda rows: bool(_scalar(rows)))


# ---- workers --------------------------------------------------------------------------


def claim_jobs(
    worker_id: uuid.UUID,
    queues: Sequence[str],
    limit: int,
    lease: timedelta,
    run_after: datetime | None = None,
) -> Call[list[ClaimedJob]]:
    return Call(
        "SELECT id, task, args, queue, priority, attempt, max_attempts, timeout, created_at,"
        " tags, meta, run_at FROM skiplock.claim_jobs(%s, %s::text[], %s, %s,"
        " p_run_after => %s)",
        (worker_id, list(queues), limit, lease, run_after),
        lambda rows: list(map(ClaimedJob._make, rows)),
    )


# The worker's claim session, set once per connection: synchronous_commit off, so its
# commits stop waiting for the WAL flush. Only for statements whose loss in a crash is
# harmless: the worker's claims. It cannot move into claim_jobs' own SET clause (a
# function's setting is reverted before the commit it was meant for). claim_jobs plans
# itself once per session without seq scans in its own SET clause (sql/functions/
# 040_claim.sql), so that holds behind a transaction-mode pooler too.
CLAIM_SESSION_SETTINGS = {"synchronous_commit": "off"}


def set_claim_session() -> Call[None]:
    """Apply CLAIM_SESSION_SETTINGS to this session (one round trip)."""
    names = list(CLAIM_SESSION_SETTINGS)
    return Call(
        "SELECT set_config(name, value, false)"
        " FROM unnest(%s::text[], %s::text[]) AS s(name, value)",
        (names, [CLAIM_SESSION_SETTINGS[n] for n in names]),
        lambda rows: None,
    )


def heartbeat_jobs(
    worker_id: uuid.UUID,
    tokens: Sequence[tuple[int, int]],
    lease: timedelta,
    stuck_jobs: int | None = None,
    stalled_loops: Sequence[str] | None = None,
) -> Call[dict[int, bool]]:
    """Extend the leases of (job id, attempt) tokens and record how many handler threads
    cannot be stopped and which loops are stalled (None: leave them); returns {job id
    still held: cancel requested?}."""
    return Call(
        "SELECT id, cancel_requested FROM skiplock.heartbeat_jobs(%s, %s::bigint[],"
        " %s::integer[], %s, p_stuck_jobs => %s, p_stalled_loops => %s::text[])",
        (
            worker_id,
            int_array([t[0] for t in tokens]),
            int_array([t[1] for t in tokens]),
            lease,
            stuck_jobs,
            None if stalled_loops is None else list(stalled_loops),
        ),
        lambda rows: {row[0]: row[1] for row in rows},
    )


def complete_jobs(
    worker_id: uuid.UUID,
    job_ids: Sequence[int],
    attempts: Sequence[int],
    results_json: Sequence[str],
) -> Call[list[int]]:
    return Call(
        "SELECT skiplock.complete_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (worker_id, int_array(job_ids), int_array(attempts), text_array(results_json)),
        _column,
    )


def fail_jobs(
    worker_id: uuid.UUID,
    job_ids: Sequence[int],
    attempts: Sequence[int],
    errors_json: Sequence[str],
) -> Call[dict[int, str]]:
    """Returns {job id: retrying | failed | cancelled} for the jobs still held."""
    return Call(
        "SELECT id, status FROM skiplock.fail_jobs(%s, %s::bigint[], %s::integer[], %s::jsonb[])",
        (worker_id, int_array(job_ids), int_array(attempts), text_array(errors_json)),
        lambda rows: {row[0]: row[1] for row in rows},
    )


def recorded_attempts(
    worker_id: uuid.UUID, tokens: Sequence[tuple[int, int]]
) -> Call[dict[int, str]]:
    """{job id: status} for the (job id, attempt) tokens whose outcome this worker has
    already recorded (a replayed finish), the others are absent: lost leases."""
    return Call(
        "SELECT id, status FROM skiplock.recorded_attempts(%s, %s::bigint[], %s::integer[])",
        (worker_id, int_array([t[0] for t in tokens]), int_array([t[1] for t in tokens])),
        lambda rows: {row[0]: row[1] for row in rows},
    )


def release_jobs(
    worker_id: uuid.UUID, job_ids: Sequence[int], attempts: Sequence[int]
) -> Call[list[int]]:
    return Call(
        "SELECT skiplock.release_jobs(%s, %s::bigint[], %s::integer[])",
        (worker_id, int_array(job_ids), int_array(attempts)),
        _column,
    )


def rescue_expired_jobs(limit: int = 1000) -> Call[dict[int, str]]:
    return Call(
        "SELECT id, status FROM skiplock.rescue_expired_jobs(%s)",
        (limit,),
        lambda rows: {row[0]: row[1] for row in rows},
    )


def set_job_progress(
    worker_id: uuid.UUID, job_id: int, attempt: int, fraction: float | None, message: str | None
) -> Call[bool]:
    return Call(
        "SELECT skiplock.set_job_progress(%s, %s, %s, %s, %s)",
        (worker_id, job_id, attempt, fraction, message),
        lambda rows: bool(_scalar(rows)),
    )


def register_worker(
    worker_id: uuid.UUID,
    *,
    host: str,
    pid: int,
    queues: Sequence[str],
    concurrency: int,
    version: str,
    signs_webhooks: bool,
) -> Call[None]:
    return Call(
        "SELECT skiplock.register_worker(%s, %s, %s, %s::text[], %s, %s, %s)",
        (worker_id, host, pid, list(queues), concurrency, version, signs_webhooks),
        lambda rows: None,
    )


def unregister_worker(worker_id: uuid.UUID) -> Call[None]:
    return Call("SELECT skiplock.unregister_worker(%s)", (worker_id,), lambda rows: None)


def prune_workers(older_than: timedelta) -> Call[int]:
    return Call("SELECT skiplock.prune_workers(%s)", (older_than,), _scalar)


def sweep_waiting_jobs(limit: int = 100) -> Call[int]:
    return Call("SELECT skiplock.sweep_waiting_jobs(%s)", (limit,), _scalar)


def expire_jobs(limit: int = 1000) -> Call[list[int]]:
    return Call("SELECT skiplock.expire_jobs(%s)", (limit,), _column)


# ---- workflows (0004_workflows.sql) ----------------------------------------------------

WORKFLOW_COLUMNS = ("id", "name", "meta", "created_at", "state", "steps", *STATUSES, "finished_at")
WORKFLOW_STEP_COLUMNS = (
    "step",
    "job_id",
    "after",
    "task",
    "queue",
    "status",
    "attempt",
    "max_attempts",
    "created_at",
    "started_at",
    "finished_at",
    "result",
    "last_error",
)


def enqueue_workflow(document_json: str) -> Call[int]:
    """Enqueue a workflow document (see skiplock.enqueue_workflow); returns its id."""
    return Call("SELECT skiplock.enqueue_workflow(%s::jsonb)", (document_json,), _scalar)


def workflow_job_ids(workflow_id: int) -> Call[dict[str, int]]:
    """{step name: job id}, in declaration order. Read from the workflow_jobs view, not
    the workflow_steps table: a producer-only role may read the view."""
    return Call(
        "SELECT step, job_id FROM skiplock.workflow_jobs WHERE workflow_id = %s ORDER BY position",
        (workflow_id,),
        lambda rows: {row[0]: row[1] for row in rows},
    )


def _workflow_summaries(rows: list[Row]) -> list[dict[str, Any]]:
    return [dict(zip(WORKFLOW_COLUMNS, row, strict=True)) for row in rows]


def get_workflow_summary(
    workflow_id: int, queue_pattern: str | None = None
) -> Call[dict[str, Any] | None]:
    """Counts by status and overall state of one workflow, over the steps in queues
    matching `queue_pattern` (None: all); None when it has no such step or no such id."""
    return Call(
        f"SELECT {', '.join(WORKFLOW_COLUMNS)} FROM skiplock.summarize_workflows(%s) WHERE id = %s",
        (queue_pattern, workflow_id),
        lambda rows: _workflow_summaries(rows)[0] if rows else None,
    )


def list_workflow_summaries(
    queue_pattern: str | None = None, *, before_id: int | None = None, limit: int = 50
) -> Call[list[dict[str, Any]]]:
    """Newest first; `before_id` pages back (keyset on id). Each row with "truncated":
    a meta longer than PREVIEW_CHARS is cut to a preview (see _with_previews);
    get_workflow_summary has it whole."""
    page = Call(
        f"SELECT {', '.join(WORKFLOW_COLUMNS)} FROM skiplock.summarize_workflows(%(pattern)s)"
        " WHERE (%(before)s::bigint IS NULL OR id < %(before)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"pattern": queue_pattern, "before": before_id, "limit": limit},
        _workflow_summaries,
    )
    return _with_previews(page, WORKFLOW_COLUMNS, WORKFLOW_PREVIEWS, "id DESC")


WORKFLOW_PREVIEWS = {"meta": "j.meta::text"}


def list_workflow_steps(
    workflow_id: int, queue_pattern: str | None = None
) -> Call[list[dict[str, Any]]]:
    """The steps of a workflow with their jobs' status, in declaration order."""
    return Call(
        f"SELECT {', '.join(WORKFLOW_STEP_COLUMNS)} FROM skiplock.workflow_jobs"
        " WHERE workflow_id = %s AND skiplock.queue_matches(queue, %s) ORDER BY position",
        (workflow_id, queue_pattern),
        lambda rows: [dict(zip(WORKFLOW_STEP_COLUMNS, row, strict=True)) for row in rows],
    )


def list_workflow_step_previews(
    workflow_id: int, queue_pattern: str | None = None
) -> Call[list[dict[str, Any]]]:
    """list_workflow_steps' rows, each with "truncated": a result or last error longer
    than PREVIEW_CHARS is cut to a preview (see _with_previews); get_job has it whole."""
    page = Call(
        f"SELECT {', '.join(WORKFLOW_STEP_COLUMNS)}, position FROM skiplock.workflow_jobs"
        " WHERE workflow_id = %(workflow)s AND skiplock.queue_matches(queue, %(pattern)s)",
        {"workflow": workflow_id, "pattern": queue_pattern},
        list,
    )
    return _with_previews(page, WORKFLOW_STEP_COLUMNS, WORKFLOW_STEP_PREVIEWS, "j.position")


WORKFLOW_STEP_PREVIEWS = {"result": "j.result::text", "last_error": "to_jsonb(j.last_error)::text"}


def cancel_workflow(workflow_id: int, queue_pattern: str | None = None) -> Call[int]:
    """Cancel the workflow's unfinished steps (in queues matching `queue_pattern`; None:
    all); how many were cancelled or asked to stop. See skiplock.cancel_workflow."""
    return Call("SELECT skiplock.cancel_workflow(%s, %s)", (workflow_id, queue_pattern), _scalar)


def retry_workflow(workflow_id: int, queue_pattern: str | None = None) -> Call[int]:
    """Run the workflow's steps that did not succeed again, in graph order; how many.
    See skiplock.retry_workflow."""
    return Call("SELECT skiplock.retry_workflow(%s, %s)", (workflow_id, queue_pattern), _scalar)


def prune_workflows(older_than: timedelta, limit: int = 1000) -> Call[int]:
    """Delete up to `limit` finished workflows older than `older_than`; how many."""
    return Call("SELECT skiplock.prune_workflows(%s, %s)", (older_than, limit), _scalar)


# ---- schedules ------------------------------------------------------------------------

SCHEDULE_COLUMNS = (
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


def create_schedule(
    name: str,
    *,
    cron: str,
    task: str,
    args_json: str,
    queue: str,
    priority: int,
    timezone: str,
    max_attempts: int,
    enabled: bool = True,
    replace: bool = False,
) -> Call[None]:
    return Call(
        "SELECT skiplock.create_schedule(%s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s)",
        (name, cron, task, args_json, queue, priority, timezone, max_attempts, enabled, replace),
        lambda rows: None,
    )


def list_schedules(name: str | None = None) -> Call[list[dict[str, Any]]]:
    return Call(
        f"SELECT {', '.join(SCHEDULE_COLUMNS)} FROM skiplock.schedules"
        " WHERE %(name)s::text IS NULL OR name = %(name)s ORDER BY name",
        {"name": name},
        lambda rows: [dict(zip(SCHEDULE_COLUMNS, row, strict=True)) for row in rows],
    )


def set_schedule_enabled(name: str, enabled: bool) -> Call[bool]:
    function = "enable_schedule" if enabled else "disable_schedule"
    return Call(f"SELECT skiplock.{function}(%s)", (name,), lambda rows: bool(_scalar(rows)))


def delete_schedule(name: str) -> Call[bool]:
    return Call("SELECT skiplock.delete_schedule(%s)", (name,), lambda rows: bool(_scalar(rows)))


def lock_due_schedules(limit: int, now: datetime | None = None) -> Call[list[Row]]:
    return Call(
        "SELECT name, cron, timezone, next_run_at, db_now FROM skiplock.lock_due_schedules(%s, %s)",
        (limit, now),
        list,
    )


def fire_schedule(name: str, fire_at: datetime, next_run_at: datetime | None) -> Call[int]:
    return Call("SELECT skiplock.fire_schedule(%s, %s, %s)", (name, fire_at, next_run_at), _scalar)


def set_schedule_next_run(
    name: str, next_run_at: datetime | None, error: str | None = None
) -> Call[bool]:
    return Call(
        "SELECT skiplock.set_schedule_next_run(%s, %s, %s)",
        (name, next_run_at, error),
        lambda rows: bool(_scalar(rows)),
    )


def prune_job_history(older_than: timedelta, limit: int) -> Call[int]:
    return Call("SELECT skiplock.prune_job_history(%s, %s)", (older_than, limit), _scalar)


def prune_unique_keys() -> Call[int]:
    return Call("SELECT skiplock.prune_unique_keys()", (), _scalar)


def notify(channel: str, payload: str) -> Call[None]:
    return Call("SELECT pg_notify(%s, %s)", (channel, payload), lambda rows: None)


# ---- admin (0002_admin.sql) -------------------------------------------------------------
# The statements behind the REST API's admin routes. Sort keys and filters are
# allow-listed here: the API passes names, never SQL.

# Sort field → the key expression it orders by. finished_at is NULL for a job that has
# not finished; ordering by coalesce(…, 'infinity') puts those after every finished job
# ascending (first descending) and keeps the keyset comparison a plain row comparison.
JOB_SORT_KEYS: dict[str, str] = {
    "id": "id",
    "created_at": "created_at",
    "finished_at": "coalesce(finished_at, 'infinity'::timestamptz)",
    "priority": "priority",
}


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a page lists; None (or empty) means "any"."""

    statuses: Sequence[str] = ()
    queue: str | None = None
    task: str | None = None
    tag: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    finished_after: datetime | None = None
    finished_before: datetime | None = None


def list_jobs_page(
    filters: JobFilter,
    *,
    sort: str = "id",
    descending: bool = True,
    after: tuple[Any, int] | None = None,
    limit: int = 50,
) -> Call[list[Job]]:
    """One keyset page of jobs ordered by (`sort`, id); `after` is the (key, id) of the
    last row of the previous page. For `finished_at`, a key of None stands for a job
    that has not finished (ordered as +infinity)."""
    key = JOB_SORT_KEYS.get(sort)
    if key is None:
        raise ValueError(f"sort must be one of {', '.join(JOB_SORT_KEYS)}, got {sort!r}")
    for status in filters.statuses:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    direction, compare = ("DESC", "<") if descending else ("ASC", ">")
    after_key = None if after is None else after[0]
    if sort == "finished_at":
        cursor_key = "coalesce(%(after_key)s::timestamptz, 'infinity'::timestamptz)"
    elif sort == "created_at":
        cursor_key = "%(after_key)s::timestamptz"
    else:
        cursor_key = "%(after_key)s::bigint"
    return Call(
        f"SELECT {JOB_COLUMNS} FROM skiplock.all_jobs"
        " WHERE (cardinality(%(statuses)s::text[]) = 0 OR status = ANY (%(statuses)s::text[]))"
        "   AND (%(queue)s::text IS NULL OR queue = %(queue)s)"
        "   AND (%(task)s::text IS NULL OR task = %(task)s)"
        "   AND (%(tag)s::text IS NULL OR %(tag)s::text = ANY (tags))"
        "   AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)"
        "   AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)"
        "   AND (%(finished_after)s::timestamptz IS NULL OR finished_at >= %(finished_after)s)"
        "   AND (%(finished_before)s::timestamptz IS NULL OR finished_at < %(finished_before)s)"
        f"  AND (NOT %(paging)s OR ({key}, id) {compare} ({cursor_key}, %(after_id)s::bigint))"
        f" ORDER BY {key} {direction}, id {direction} LIMIT %(limit)s",
        {
            "statuses": list(filters.statuses),
            "queue": filters.queue,
            "task": filters.task,
            "tag": filters.tag,
            "created_after": filters.created_after,
            "created_before": filters.created_before,
            "finished_after": filters.finished_after,
            "finished_before": filters.finished_before,
            "paging": after is not None,
            "after_key": after_key,
            "after_id": None if after is None else after[1],
            "limit": limit,
        },
        _jobs,
    )


def delete_job(job_id: int) -> Call[str | None]:
    """The deleted job's status; None when no job has this id. Raises (SQLSTATE 55000)
    for a job that has not finished."""
    return Call("SELECT skiplock.delete_job(%s)", (job_id,), _scalar)


def get_queue(queue: str) -> Call[dict[str, Any] | None]:
    return Call(
        f"SELECT {', '.join(QUEUE_STAT_COLUMNS)} FROM skiplock.queue_stats WHERE queue = %s",
        (queue,),
        lambda rows: _queue_stat(rows[0]) if rows else None,
    )


def lock_queue(queue: str) -> Call[bool]:
    """Lock a queue's row until the transaction ends, for a change that reads its settings
    before it writes them; False when there is no such queue."""
    return Call("SELECT true FROM skiplock.queues WHERE name = %s FOR UPDATE", (queue,), bool)


def create_queue(queue: str, *, paused: bool = False) -> Call[bool]:
    """True when created, False when a queue of this name already exists."""
    return Call(
        "SELECT skiplock.create_queue(%s, %s)", (queue, paused), lambda rows: bool(_scalar(rows))
    )


def delete_queue(queue: str) -> Call[bool]:
    """False when no such queue; raises (SQLSTATE 55000) while it still has jobs."""
    return Call("SELECT skiplock.delete_queue(%s)", (queue,), lambda rows: bool(_scalar(rows)))


THROUGHPUT_COLUMNS = ("minute", "succeeded", "failed", "cancelled", "expired")


def queue_throughput(queue: str, minutes: int) -> Call[list[dict[str, Any]]]:
    return Call(
        f"SELECT {', '.join(THROUGHPUT_COLUMNS)} FROM skiplock.queue_throughput(%s, %s)",
        (queue, minutes),
        lambda rows: [dict(zip(THROUGHPUT_COLUMNS, row, strict=True)) for row in rows],
    )


def queue_workers(queue: str) -> Call[int]:
    """How many live workers (heartbeat within the last minute) serve `queue`."""
    return Call(
        "SELECT count(*) FROM skiplock.worker_stats WHERE alive AND %s = ANY (queues)",
        (queue,),
        lambda rows: int(_scalar(rows) or 0),
    )


def unsigned_callbacks(job_ids: Sequence[int]) -> Call[list[tuple[int, str]]]:
    """(id, queue) of the given jobs that carry a callback URL in a queue whose live
    workers (heartbeat within the last minute) all said they hold no webhook secret: a
    delivery from there would go to the dead letters unsent. A queue no live worker
    serves is left out (a worker that comes later may sign), and so is a worker that
    did not say (signs_webhooks NULL)."""
    return Call(
        "SELECT j.id, j.queue FROM skiplock.all_jobs j"
        " WHERE j.id = ANY (%s::bigint[]) AND j.callback_url IS NOT NULL"
        " AND EXISTS (SELECT 1 FROM skiplock.worker_stats w"
        "             WHERE w.alive AND j.queue = ANY (w.queues))"
        " AND NOT EXISTS (SELECT 1 FROM skiplock.worker_stats w"
        "                 WHERE w.alive AND j.queue = ANY (w.queues)"
        "                   AND w.signs_webhooks IS NOT FALSE)"
        " ORDER BY j.id",
        (list(job_ids),),
        lambda rows: [(row[0], row[1]) for row in rows],
    )


def queue_totals() -> Call[list[tuple[str, str, int]]]:
    """(queue, status, total) of finished jobs since install: counters, never a COUNT."""
    return Call(
        "SELECT queue, status, total FROM skiplock.queue_totals ORDER BY queue, status",
        (),
        lambda rows: [(row[0], row[1], int(row[2])) for row in rows],
    )


DEAD_LETTER_COLUMNS = (
    "id",
    "task",
    "queue",
    "attempt",
    "max_attempts",
    "last_error",
    "failed_at",
    "args",
    "errors",
    "created_at",
)


def _dead_letters(rows: list[Row]) -> list[dict[str, Any]]:
    return [dict(zip(DEAD_LETTER_COLUMNS, row, strict=True)) for row in rows]


def list_dead_letters(
    *,
    queue: str | None = None,
    task: str | None = None,
    before_id: int | None = None,
    limit: int = 50,
) -> Call[list[dict[str, Any]]]:
    """Newest first; `before_id` pages back (keyset: ids below it). Each row with
    "truncated": its args, errors and last error longer than PREVIEW_CHARS are cut to a
    preview (see _with_previews); get_dead_letter has them whole."""
    page = Call(
        f"SELECT {', '.join(DEAD_LETTER_COLUMNS)} FROM skiplock.dead_letters"
        " WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)"
        "   AND (%(task)s::text IS NULL OR task = %(task)s)"
        "   AND (%(before)s::bigint IS NULL OR id < %(before)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"queue": queue, "task": task, "before": before_id, "limit": limit},
        _dead_letters,
    )
    return _with_previews(page, DEAD_LETTER_COLUMNS, DEAD_LETTER_PREVIEWS, "id DESC")


DEAD_LETTER_PREVIEWS = {
    "last_error": "to_jsonb(j.last_error)::text",
    "args": "j.args::text",
    "errors": "j.errors::text",
}


def get_dead_letter(job_id: int) -> Call[dict[str, Any] | None]:
    return Call(
        f"SELECT {', '.join(DEAD_LETTER_COLUMNS)} FROM skiplock.dead_letters WHERE id = %s",
        (job_id,),
        lambda rows: _dead_letters(rows)[0] if rows else None,
    )


def redrive_dead_jobs(
    *, queue: str | None = None, task: str | None = None, limit: int = 1000
) -> Call[list[int]]:
    """One batch of up to `limit`; call again until it returns fewer to redrive all."""
    return Call("SELECT skiplock.redrive_dead_jobs(%s, %s, %s)", (queue, task, limit), _column)


def purge_dead_jobs(
    *, queue: str | None = None, task: str | None = None, older_than: timedelta | None = None
) -> Call[int]:
    return Call(
        "SELECT skiplock.purge_dead_jobs(%s, %s, %s)",
        (queue, task, older_than),
        lambda rows: int(_scalar(rows) or 0),
    )


WORKER_COLUMNS = (
    "id",
    "host",
    "pid",
    "queues",
    "concurrency",
    "version",
    "started_at",
    "last_heartbeat_at",
    "running_jobs",
    "alive",
    "stuck_jobs",
    "healthy",
    "stalled_loops",
    "signs_webhooks",
)


def list_workers() -> Call[list[dict[str, Any]]]:
    return Call(
        f"SELECT {', '.join(WORKER_COLUMNS)} FROM skiplock.worker_stats ORDER BY started_at, id",
        (),
        lambda rows: [dict(zip(WORKER_COLUMNS, row, strict=True)) for row in rows],
    )


def stop_worker(worker_id: uuid.UUID) -> Call[bool]:
    """Ask a worker to stop gracefully (NOTIFY skiplock_control); False if unknown."""
    return Call("SELECT skiplock.stop_worker(%s)", (worker_id,), lambda rows: bool(_scalar(rows)))


def applied_migrations() -> Call[dict[int, tuple[str, str]]]:
    """{version: (name, checksum)} of the applied migrations (see migrate.check_schema)."""
    return Call(
        "SELECT version, name, checksum FROM skiplock.schema_migrations",
        (),
        lambda rows: {row[0]: (row[1], row[2]) for row in rows},
    )


def applied_functions() -> Call[str | None]:
    """The checksum of the applied function files (see migrate.check_schema); only ask
    once the migrations passed migrate.verify_applied (the table comes with them)."""
    return Call(
        "SELECT checksum FROM skiplock.schema_functions",
        (),
        lambda rows: rows[0][0] if rows else None,
    )


def set_statement_timeout(milliseconds: int) -> Call[None]:
    """statement_timeout for the rest of the current transaction only (SET LOCAL)."""
    return Call(
        "SELECT set_config('statement_timeout', %s, true)",
        (str(milliseconds),),
        lambda rows: None,
    )


# ---- auth (sql/functions/120_auth.sql) -------------------------------------------------

API_TOKEN_COLUMNS = ("name", "scope", "queue_pattern", "created_at", "last_used_at", "revoked_at")
AUDIT_COLUMNS = ("id", "at", "actor", "action", "target", "status", "detail")


def create_api_token(
    name: str, scope: str, queue_pattern: str | None, token_hash: str, *, replace: bool = False
) -> Call[bool]:
    """Store a token's sha256 hex under `name`; False when the name is taken (and not
    `replace`). A bad name or pattern raises (SQLSTATE 23514)."""
    return Call(
        "SELECT skiplock.create_api_token(%s, %s::skiplock.token_scope, %s, %s, %s)",
        (name, scope, queue_pattern, token_hash, replace),
        lambda rows: bool(_scalar(rows)),
    )


def revoke_api_token(name: str) -> Call[bool]:
    """False when no live token has this name."""
    return Call("SELECT skiplock.revoke_api_token(%s)", (name,), lambda rows: bool(_scalar(rows)))


def find_api_token(token_hash: str) -> Call[tuple[str, str, str | None, str] | None]:
    """(name, scope, queue_pattern, token_hash) of the live token with this hash, or None;
    records its last use (at most once a minute)."""
    return Call(
        "SELECT name, scope, queue_pattern, token_hash FROM skiplock.find_api_token(%s)",
        (token_hash,),
        lambda rows: (rows[0][0], rows[0][1], rows[0][2], rows[0][3]) if rows else None,
    )


def list_api_tokens() -> Call[list[dict[str, Any]]]:
    """Every token, revoked ones too, oldest first; never the hash."""
    return Call(
        f"SELECT {', '.join(API_TOKEN_COLUMNS)} FROM skiplock.api_tokens ORDER BY id",
        (),
        lambda rows: [dict(zip(API_TOKEN_COLUMNS, row, strict=True)) for row in rows],
    )


def record_audit(
    actor: str, action: str, target: str | None, status: int, detail: Mapping[str, Any]
) -> Call[int]:
    return Call(
        "SELECT skiplock.record_audit(%s, %s, %s, %s, %s::jsonb)",
        (actor, action, target, status, json.dumps(detail)),
        _scalar,
    )


def list_audit(*, limit: int = 50, before_id: int | None = None) -> Call[list[dict[str, Any]]]:
    """Newest first; `before_id` pages back (keyset on id)."""
    return Call(
        f"SELECT {', '.join(AUDIT_COLUMNS)} FROM skiplock.audit_log"
        " WHERE (%(before)s::bigint IS NULL OR id < %(before)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"before": before_id, "limit": limit},
        lambda rows: [dict(zip(AUDIT_COLUMNS, row, strict=True)) for row in rows],
    )


def list_jobs_page_matching(
    filters: JobFilter,
    queue_pattern: str | None,
    *,
    sort: str = "id",
    descending: bool = True,
    after: tuple[Any, int] | None = None,
    limit: int = 50,
) -> Call[list[Job]]:
    """list_jobs_page, restricted to queues matching a token's pattern (None: all).

    Built on list_jobs_page's statement so the two never drift; the pattern is a bound
    parameter, matched by skiplock.queue_matches.
    """
    page = list_jobs_page(filters, sort=sort, descending=descending, after=after, limit=limit)
    assert isinstance(page.params, Mapping)
    return Call(
        page.sql.replace(
            " WHERE ", " WHERE skiplock.queue_matches(queue, %(queue_pattern)s) AND ", 1
        ),
        {**page.params, "queue_pattern": queue_pattern},
        page.parse,
    )


def list_job_previews(
    filters: JobFilter,
    queue_pattern: str | None = None,
    *,
    sort: str = "id",
    descending: bool = True,
    after: tuple[Any, int] | None = None,
    limit: int = 50,
) -> Call[list[dict[str, Any]]]:
    """list_jobs_page_matching's page as {JOB_FIELDS..., "truncated"} rows, each
    JSON value longer than PREVIEW_CHARS cut to a preview (see _with_previews)."""
    page = list_jobs_page_matching(
        filters, queue_pattern, sort=sort, descending=descending, after=after, limit=limit
    )
    direction = "DESC" if descending else "ASC"
    order = f"{JOB_SORT_KEYS[sort]} {direction}, id {direction}"
    return _with_previews(page, JOB_FIELDS, JOB_PREVIEWS, order)


def job_queues(job_ids: Sequence[int]) -> Call[set[str]]:
    """The queues the given jobs are in (ids not found are left out)."""
    return Call(
        "SELECT DISTINCT queue FROM skiplock.all_jobs WHERE id = ANY (%s::bigint[])",
        (list(job_ids),),
        lambda rows: {row[0] for row in rows},
    )


# ---- the task registry (sql/functions/110_registry.sql) -------------------------------

TASK_COLUMNS = (
    "name",
    "queue",
    "description",
    "args_schema",
    "first_seen_at",
    "last_seen_at",
    "workers",
)


def publish_tasks(worker_id: uuid.UUID | None, tasks: Sequence[Mapping[str, Any]]) -> Call[int]:
    """Upsert the registry entries of `tasks` ({name, queue, description, args_schema})."""
    return Call(
        "SELECT skiplock.publish_tasks(%s, %s::jsonb)",
        (worker_id, json.dumps(list(tasks))),
        lambda rows: int(_scalar(rows) or 0),
    )


def list_tasks(names: Sequence[str] | None = None) -> Call[list[dict[str, Any]]]:
    """Registered tasks (all, or those in `names`), by name."""
    return Call(
        f"SELECT {', '.join(TASK_COLUMNS)} FROM skiplock.list_tasks(%s::text[])",
        (None if names is None else list(names),),
        lambda rows: [dict(zip(TASK_COLUMNS, row, strict=True)) for row in rows],
    )


def forget_task(name: str) -> Call[bool]:
    """Remove a task from the registry; False when it is not there."""
    return Call("SELECT skiplock.forget_task(%s)", (name,), lambda rows: bool(_scalar(rows)))


def read_job_counts() -> Call[list[tuple[str, str, str, str | None, float | None, int, float]]]:
    """(queue, task, event, status, le, n, seconds) of every job counter (see
    skiplock.read_job_counts): a few rows per queue and task, never a COUNT."""
    return Call(
        "SELECT queue, task, event, status, le, n, seconds FROM skiplock.read_job_counts()",
        (),
        lambda rows: [
            (row[0], row[1], row[2], row[3], row[4], int(row[5]), float(row[6] or 0.0))
            for row in rows
        ],
    )


def job_duration_bounds() -> Call[list[float]]:
    """The duration histogram's bucket bounds in seconds (+Inf implied)."""
    return Call("SELECT skiplock.job_duration_bounds()", (), lambda rows: list(_scalar(rows)))


def prune_audit_log(older_than: timedelta, limit: int = 1000) -> Call[int]:
    """Delete up to `limit` audit entries older than `older_than`, oldest first; how
    many. See skiplock.prune_audit_log."""
    return Call("SELECT skiplock.prune_audit_log(%s, %s)", (older_than, limit), _scalar)
