"""Workflows (sql/functions/090_workflows.sql): enqueue one, read its summary and its
steps (the workflow_jobs view, summarize_workflows), cancel, retry and prune."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from psycopg.rows import dict_row

from skiplock.jobs import STATUSES
from skiplock.store.call import Call, first, scalar
from skiplock.store.previews import with_previews

WORKFLOW_COLUMNS = ("id", "name", "meta", "created_at", "state", "steps", *STATUSES, "finished_at")
WORKFLOW_PREVIEWS = {"meta": "j.meta::text"}
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
WORKFLOW_STEP_PREVIEWS = {"result": "j.result::text", "last_error": "to_jsonb(j.last_error)::text"}


def enqueue_workflow(document_json: str) -> Call[int]:
    """Enqueue a workflow document (see skiplock.enqueue_workflow); returns its id."""
    return Call("SELECT skiplock.enqueue_workflow(%s::jsonb)", (document_json,), scalar)


def workflow_job_ids(workflow_id: int) -> Call[dict[str, int]]:
    """{step name: job id}, in declaration order. Read from the workflow_jobs view, not
    the workflow_steps table: a producer-only role may read the view."""
    return Call(
        "SELECT step, job_id FROM skiplock.workflow_jobs WHERE workflow_id = %s ORDER BY position",
        (workflow_id,),
        lambda rows: {step: job_id for step, job_id in rows},
    )


def get_workflow_summary(
    workflow_id: int, queue_pattern: str | None = None
) -> Call[dict[str, Any] | None]:
    """Counts by status and overall state of one workflow, over the steps in queues
    matching `queue_pattern` (None: all); None when it has no such step or no such id."""
    return Call(
        f"SELECT {', '.join(WORKFLOW_COLUMNS)} FROM skiplock.summarize_workflows(%s) WHERE id = %s",
        (queue_pattern, workflow_id),
        first,
        dict_row,
    )


def list_workflow_summaries(
    queue_pattern: str | None = None, *, before_id: int | None = None, limit: int = 50
) -> Call[list[dict[str, Any]]]:
    """Newest first; `before_id` pages back (keyset on id). Each row with "truncated":
    a meta longer than PREVIEW_CHARS is cut to a preview (see store.previews);
    get_workflow_summary has it whole."""
    page = Call(
        f"SELECT {', '.join(WORKFLOW_COLUMNS)} FROM skiplock.summarize_workflows(%(pattern)s)"
        " WHERE (%(before)s::bigint IS NULL OR id < %(before)s)"
        " ORDER BY id DESC LIMIT %(limit)s",
        {"pattern": queue_pattern, "before": before_id, "limit": limit},
        list,
        dict_row,
    )
    return with_previews(page, WORKFLOW_COLUMNS, WORKFLOW_PREVIEWS, "id DESC")


def list_workflow_steps(
    workflow_id: int, queue_pattern: str | None = None
) -> Call[list[dict[str, Any]]]:
    """The steps of a workflow with their jobs' status, in declaration order."""
    return Call(
        f"SELECT {', '.join(WORKFLOW_STEP_COLUMNS)} FROM skiplock.workflow_jobs"
        " WHERE workflow_id = %s AND skiplock.queue_matches(queue, %s) ORDER BY position",
        (workflow_id, queue_pattern),
        list,
        dict_row,
    )


def list_workflow_step_previews(
    workflow_id: int, queue_pattern: str | None = None
) -> Call[list[dict[str, Any]]]:
    """list_workflow_steps' rows, each with "truncated": a result or last error longer
    than PREVIEW_CHARS is cut to a preview (see store.previews); get_job has it whole."""
    page = Call(
        f"SELECT {', '.join(WORKFLOW_STEP_COLUMNS)}, position FROM skiplock.workflow_jobs"
        " WHERE workflow_id = %(workflow)s AND skiplock.queue_matches(queue, %(pattern)s)",
        {"workflow": workflow_id, "pattern": queue_pattern},
        list,
    )
    return with_previews(page, WORKFLOW_STEP_COLUMNS, WORKFLOW_STEP_PREVIEWS, "j.position")


def cancel_workflow(workflow_id: int, queue_pattern: str | None = None) -> Call[int]:
    """Cancel the workflow's unfinished steps (in queues matching `queue_pattern`; None:
    all); how many were cancelled or asked to stop. See skiplock.cancel_workflow."""
    return Call("SELECT skiplock.cancel_workflow(%s, %s)", (workflow_id, queue_pattern), scalar)


def retry_workflow(workflow_id: int, queue_pattern: str | None = None) -> Call[int]:
    """Run the workflow's steps that did not succeed again, in graph order; how many.
    See skiplock.retry_workflow."""
    return Call("SELECT skiplock.retry_workflow(%s, %s)", (workflow_id, queue_pattern), scalar)


def prune_workflows(older_than: timedelta, limit: int = 1000) -> Call[int]:
    """Delete up to `limit` finished workflows older than `older_than`; how many."""
    return Call("SELECT skiplock.prune_workflows(%s, %s)", (older_than, limit), scalar)
