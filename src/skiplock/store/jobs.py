"""Reading jobs from the all_jobs view (sql/functions/020_views.sql): one job, a list,
a keyset page, a page of previews."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from skiplock.jobs import STATUSES, Job
from skiplock.store.call import Call, checked_row, dataclass_row, first, scalar
from skiplock.store.previews import with_previews

# The columns a job is read from: Job's fields, each matched by its name, so a column
# added to the view or moved in it cannot shift another. task_published is not in the
# view (a join there would tax every list): only get_job reads it.
JOB_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Job) if f.name != "task_published")
JOB_COLUMNS = ", ".join(JOB_FIELDS)
_JOB_ROW = checked_row(JOB_FIELDS, lambda values: Job(*values), "Job")
_PUBLISHED_JOB_ROW = dataclass_row(Job)

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

# Sort field → the key expression it orders by. finished_at is NULL for a job that has
# not finished; ordering by coalesce(…, 'infinity') puts those after every finished job
# ascending (first descending) and keeps the keyset comparison a plain row comparison.
# Sort keys and filters are allow-listed here: the API passes names, never SQL.
JOB_SORT_KEYS: dict[str, str] = {
    "id": "id",
    "created_at": "created_at",
    "finished_at": "coalesce(finished_at, 'infinity'::timestamptz)",
    "priority": "priority",
}


def get_job(job_id: int) -> Call[Job | None]:
    """The job with `task_published`: one primary-key probe of skiplock.tasks beside
    the view's row, in the same statement. A scalar subquery, not EXISTS: the planner
    may answer an EXISTS by hashing the whole registry (tests/sql/test_job_read_sql.py)."""
    return Call(
        f"SELECT {JOB_COLUMNS}, coalesce((SELECT true FROM skiplock.tasks t"
        " WHERE t.name = j.task), false) AS task_published"
        " FROM skiplock.all_jobs j WHERE j.id = %s",
        (job_id,),
        first,
        _PUBLISHED_JOB_ROW,
    )


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
        list,
        _JOB_ROW,
    )


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a page lists; None (or empty) means "any". `args` and `meta` are
    documents the job's value must contain (job_search.containment); `id_above` and
    `id_below` bound a search to the ids between them (the dashboard's scan window)."""

    statuses: Sequence[str] = ()
    queue: str | None = None
    task: str | None = None
    tag: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    finished_after: datetime | None = None
    finished_before: datetime | None = None
    args: Mapping[str, Any] | None = None
    meta: Mapping[str, Any] | None = None
    id_above: int | None = None
    id_below: int | None = None


# The filters as conditions on all_jobs, each true when its parameter is NULL: the
# statements built on them are planned at every call (Call.prepare), so the planner sees
# which hold and reaches each table's index through them.
_FILTER_SQL = (
    " WHERE (cardinality(%(statuses)s::text[]) = 0 OR status = ANY (%(statuses)s::text[]))"
    "   AND (%(queue)s::text IS NULL OR queue = %(queue)s)"
    "   AND (%(task)s::text IS NULL OR task = %(task)s)"
    "   AND (%(tag)s::text IS NULL OR %(tag)s::text = ANY (tags))"
    "   AND (%(created_after)s::timestamptz IS NULL OR created_at >= %(created_after)s)"
    "   AND (%(created_before)s::timestamptz IS NULL OR created_at < %(created_before)s)"
    "   AND (%(finished_after)s::timestamptz IS NULL OR finished_at >= %(finished_after)s)"
    "   AND (%(finished_before)s::timestamptz IS NULL OR finished_at < %(finished_before)s)"
    "   AND (%(args)s::jsonb IS NULL OR args @> %(args)s::jsonb)"
    "   AND (%(meta)s::jsonb IS NULL OR meta @> %(meta)s::jsonb)"
    "   AND (%(id_above)s::bigint IS NULL OR id > %(id_above)s)"
    "   AND (%(id_below)s::bigint IS NULL OR id < %(id_below)s)"
    "   AND skiplock.queue_matches(queue, %(queue_pattern)s)"
)


def _filter_params(filters: JobFilter, queue_pattern: str | None) -> dict[str, Any]:
    return {
        "statuses": list(filters.statuses),
        "queue": filters.queue,
        "task": filters.task,
        "tag": filters.tag,
        "created_after": filters.created_after,
        "created_before": filters.created_before,
        "finished_after": filters.finished_after,
        "finished_before": filters.finished_before,
        "args": None if filters.args is None else Jsonb(filters.args),
        "meta": None if filters.meta is None else Jsonb(filters.meta),
        "id_above": filters.id_above,
        "id_below": filters.id_below,
        "queue_pattern": queue_pattern,
    }


def _check_statuses(filters: JobFilter) -> None:
    for status in filters.statuses:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")


# Where a job of each status lives: unfinished in the hot table, finished in the
# history, failed in the dead letters.
STATUS_TABLES = {
    **{status: "jobs" for status in ("waiting", "scheduled", "queued", "running", "retrying")},
    **{status: "job_history" for status in ("succeeded", "cancelled", "expired")},
    "failed": "dead_jobs",
}


def job_id_span(statuses: Sequence[str] = ()) -> Call[tuple[int, int] | None]:
    """The lowest and highest id of the jobs that can have one of `statuses` (any: every
    job), two index probes a table; None without such jobs. A search of finished jobs
    then starts at the newest finished one, not above a backlog of queued ones."""
    _check_statuses(JobFilter(statuses=statuses))
    tables = sorted({STATUS_TABLES[s] for s in statuses} or set(STATUS_TABLES.values()))
    spans = " UNION ALL ".join(f"SELECT min(id), max(id) FROM skiplock.{t}" for t in tables)
    return Call(
        f"SELECT min(s.min), max(s.max) FROM ({spans}) s",
        (),
        lambda rows: None if rows[0][0] is None else (rows[0][0], rows[0][1]),
    )


def count_jobs(filters: JobFilter, queue_pattern: str | None = None, *, exact: bool) -> Call[int]:
    """How many jobs match: counted when `exact` (the caller bounds the rows read, e.g.
    with `id_above`), else the planner's estimate (the statement is planned, not run)."""
    _check_statuses(filters)
    count = "SELECT count(*) FROM skiplock.all_jobs" + _FILTER_SQL
    if exact:
        return Call(count, _filter_params(filters, queue_pattern), scalar, prepare=False)
    return Call(
        "EXPLAIN (FORMAT JSON) SELECT 1 FROM skiplock.all_jobs" + _FILTER_SQL,
        _filter_params(filters, queue_pattern),
        lambda rows: round(rows[0][0][0]["Plan"]["Plan Rows"]),
        prepare=False,
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
    """One keyset page of jobs ordered by (`sort`, id), in the queues matching a
    token's pattern (None: all; matched by skiplock.queue_matches); `after` is the
    (key, id) of the last row of the previous page. For `finished_at`, a key of None
    stands for a job that has not finished (ordered as +infinity)."""
    key = JOB_SORT_KEYS.get(sort)
    if key is None:
        raise ValueError(f"sort must be one of {', '.join(JOB_SORT_KEYS)}, got {sort!r}")
    _check_statuses(filters)
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
        + _FILTER_SQL
        + f" AND (NOT %(paging)s OR ({key}, id) {compare} ({cursor_key}, %(after_id)s::bigint))"
        f" ORDER BY {key} {direction}, id {direction} LIMIT %(limit)s",
        {
            **_filter_params(filters, queue_pattern),
            "paging": after is not None,
            "after_key": after_key,
            "after_id": None if after is None else after[1],
            "limit": limit,
        },
        list,
        _JOB_ROW,
        prepare=False,
    )


def list_jobs_page(
    filters: JobFilter,
    *,
    sort: str = "id",
    descending: bool = True,
    after: tuple[Any, int] | None = None,
    limit: int = 50,
) -> Call[list[Job]]:
    """list_jobs_page_matching over every queue."""
    return list_jobs_page_matching(
        filters, None, sort=sort, descending=descending, after=after, limit=limit
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
    JSON value longer than PREVIEW_CHARS cut to a preview (see store.previews)."""
    page = list_jobs_page_matching(
        filters, queue_pattern, sort=sort, descending=descending, after=after, limit=limit
    )
    direction = "DESC" if descending else "ASC"
    order = f"{JOB_SORT_KEYS[sort]} {direction}, id {direction}"
    return with_previews(page, JOB_FIELDS, JOB_PREVIEWS, order)


def job_queues(job_ids: Sequence[int]) -> Call[set[str]]:
    """The queues the given jobs are in (ids not found are left out)."""
    return Call(
        "SELECT DISTINCT queue FROM skiplock.all_jobs WHERE id = ANY (%s::bigint[])",
        (list(job_ids),),
        lambda rows: {row[0] for row in rows},
    )
