"""Reading jobs from the all_jobs view (sql/functions/020_views.sql): one job, a list,
a keyset page, a page of previews."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from skiplock.jobs import STATUSES, Job
from skiplock.store.call import Call, checked_row, dataclass_row, first
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
        list,
        _JOB_ROW,
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
        page.row_factory,
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
