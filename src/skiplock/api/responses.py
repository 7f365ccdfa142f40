"""What the API answers, as types /openapi.json is generated from (api/openapi.py).

A job and a workflow are the core's own dataclasses (skiplock.jobs.Job,
skiplock.workflows.Workflow): a field added there is in the document with no change
here, and so is its listed form (`listed`). The rows the store reads as dicts (queues,
schedules, dead letters, workers, tasks, audit entries) are declared here, one Struct
each. A field without a default is always present in the answer.
"""

from __future__ import annotations

import typing
from collections.abc import Collection, Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from skiplock.api.fields import JSONObject
from skiplock.jobs import STATUSES, Job, Status
from skiplock.store import (
    DEAD_LETTER_PREVIEWS,
    JOB_FIELDS,
    JOB_PREVIEWS,
    WORKFLOW_PREVIEWS,
    JobLogLine,
    WebhookDelivery,
)
from skiplock.workflows import Workflow

WorkflowState = Literal["running", "succeeded", "failed", "cancelled"]
Count = Annotated[int, Meta(ge=0)]


class Struct(msgspec.Struct, kw_only=True):
    """An answer's shape (never decoded: the handlers build the JSON)."""


class Problem(Struct):
    """Every 4xx/5xx (RFC 9457): `error` (also the title) is a stable phrase a client can
    switch on; `field` names the request field at fault when there is one."""

    type: str
    title: str
    status: int
    error: str
    detail: str | msgspec.UnsetType = msgspec.UNSET
    field: str | msgspec.UnsetType = msgspec.UNSET


class Cut(Struct):
    """A value a list left out for its size: the size of its JSON text in bytes, its
    first characters, and the URL that has it whole."""

    bytes: Count
    preview: str
    url: str


def listed(
    name: str, model: Any, previewed: Collection[str], *, without: Collection[str] = ()
) -> Any:
    """`model` (a dataclass or Struct) as a list shows it: each `previewed` field may be
    null (cut for its size), and `truncated` says what was cut."""
    hints = typing.get_type_hints(model, include_extras=True)
    names = [f.name for f in fields(model)] if is_dataclass(model) else model.__struct_fields__
    kept = [(n, hints[n] | None if n in previewed else hints[n]) for n in names if n not in without]
    return msgspec.defstruct(
        name, [*kept, ("truncated", dict[str, Cut])], bases=(Struct,), module=__name__
    )


class Health(Struct):
    status: Literal["ok"]
    # present when the database answered in time
    workers: Count | msgspec.UnsetType = msgspec.UNSET
    queue_depth: Count | msgspec.UnsetType = msgspec.UNSET


class Ready(Struct):
    status: Literal["ready"]
    schema_version: int


# ---- jobs -----------------------------------------------------------------------------

JobListItem = listed(
    "JobListItem", Job, JOB_PREVIEWS, without=set(Job.__dataclass_fields__) - set(JOB_FIELDS)
)


class JobState(Struct):
    id: int
    status: Status


class JobIds(Struct):
    ids: list[int]


class JobResult(Struct):
    id: int
    status: Literal["succeeded"]
    result: Any


class JobPage(Struct):
    jobs: list[JobListItem]  # type: ignore[valid-type]
    next_cursor: str | None


class JobLogPage(Struct):
    """A page of a job's log; `status` is the job's, so a client following it knows when
    to stop, and `next_after` is the `after` to ask with next (the last line's seq)."""

    job_id: int
    status: Status
    lines: list[JobLogLine]
    next_after: Count
    more: bool


class JobWebhooks(Struct):
    """The deliveries of a job's callback, newest first; empty without a callback URL
    or before the job finished. A delivery's `last_error` is its latest failure's
    message; `run_at` is when it runs next (null once finished)."""

    job_id: int
    status: Status
    callback_url: str | None
    deliveries: list[WebhookDelivery]


# ---- queues ---------------------------------------------------------------------------

Queue = msgspec.defstruct(
    "Queue",
    [
        ("queue", str),
        ("paused", bool),
        ("max_running", int | None),
        ("rate_limit", int | None),
        ("rate_period", float | None),
        ("retry_policy", JSONObject | None),
        ("timeout", Annotated[float, Meta(description="Seconds.")] | None),
        ("max_attempts", int | None),
        ("priority", int),
        ("weight", int),
        *((status, Count) for status in STATUSES),
    ],
    bases=(Struct,),
    module=__name__,
)


class Queues(Struct):
    queues: list[Queue]  # type: ignore[valid-type]


class QueuePaused(Struct):
    queue: str
    paused: bool


class Throughput(Struct):
    minutes: int
    finished: Count
    per_minute_average: float
    per_minute: list[dict[str, Any]]


class QueueStats(Struct):
    queue: str
    paused: bool
    counts: dict[str, int]
    pending: Count
    running: Count
    succeeded: Count
    failed: Count
    workers: Count
    throughput: Throughput
    name: str
    pending_jobs: Count
    running_jobs: Count
    completed_jobs: Count
    failed_jobs: Count
    throughput_per_min: float


class MetricsPeriod(Struct):
    """One period of the metrics history: jobs finished and retried in it, the run-time
    and wait histograms (per-bucket counts over `run_bounds`/`wait_bounds`, +Inf last;
    null: nothing measured), and the queue depth sampled in it (null: no sample, or a
    task was asked for; over several queues their sum and their oldest)."""

    at: datetime
    succeeded: Count
    failed: Count
    retried: Count
    cancelled: Count
    expired: Count
    run_buckets: list[Count] | None
    run_seconds: float
    wait_buckets: list[Count] | None
    wait_seconds: float
    ready: Count | None
    ready_estimated: bool | None
    oldest_ready_seconds: float | None


class MetricsHistory(Struct):
    range: Literal["1h", "24h", "7d"]
    step_seconds: Literal[60, 3600]
    queue: str | None
    task: str | None
    run_bounds: list[float]
    wait_bounds: list[float]
    points: list[MetricsPeriod]


# ---- workflows ------------------------------------------------------------------------

WorkflowSummary = listed("WorkflowSummary", Workflow, WORKFLOW_PREVIEWS, without=("steps",))


class WorkflowCreated(Struct):
    id: int
    jobs: dict[str, int]
    state: Literal["running"]


class WorkflowPage(Struct):
    workflows: list[WorkflowSummary]  # type: ignore[valid-type]
    next_cursor: str | None


class WorkflowCancelled(Struct):
    id: int
    cancelled: Count
    state: WorkflowState | None


class WorkflowRetried(Struct):
    id: int
    retried: Count
    state: WorkflowState | None


# ---- dead letters ---------------------------------------------------------------------


class DeadLetter(Struct):
    id: int
    task: str
    queue: str
    attempt: int
    max_attempts: int
    last_error: str | None
    failed_at: datetime
    args: JSONObject
    errors: list[JSONObject]
    created_at: datetime


DeadLetterListItem = listed("DeadLetterListItem", DeadLetter, DEAD_LETTER_PREVIEWS)


class DeadLetterPage(Struct):
    dead_letters: list[DeadLetterListItem]  # type: ignore[valid-type]
    next_cursor: str | None


class Redriven(Struct):
    redriven: Count
    ids: list[int]


class Purged(Struct):
    purged: Count


# ---- schedules, workers, tasks, audit -------------------------------------------------


class Schedule(Struct):
    id: int
    name: str
    cron: str
    timezone: str
    task: str
    args: JSONObject
    queue: str
    priority: int
    max_attempts: int
    enabled: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_id: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class Schedules(Struct):
    schedules: list[Schedule]


class Worker(Struct):
    id: str
    host: str
    pid: int
    queues: list[str]
    concurrency: int
    version: str
    started_at: datetime
    last_heartbeat_at: datetime
    running_jobs: Count
    alive: bool
    stuck_jobs: Count
    healthy: bool
    stalled_loops: list[str]
    signs_webhooks: bool | None


class Workers(Struct):
    workers: list[Worker]


class ScheduleRun(Struct):
    name: str
    job_id: Annotated[int, Meta(description="The job enqueued now.")]


class WorkerStopping(Struct):
    id: str
    stopping: Annotated[bool, Meta(description="Always true.")]


class Task(Struct):
    name: str
    queue: str
    description: str
    args_schema: JSONObject | bool | None
    first_seen_at: datetime
    last_seen_at: datetime
    workers: list[str]
    # the default job options its workers published (priority, max_attempts, ...)
    defaults: JSONObject


class Tasks(Struct):
    tasks: list[Task]


class AuditEntry(Struct):
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    status: int
    detail: JSONObject


class AuditPage(Struct):
    entries: list[AuditEntry]
    next_before: int | None


class LoginToken(Struct):
    """What a login answers: a bearer token for every route of the user's scope."""

    token: str
    token_type: Literal["bearer"]
    expires_at: datetime
    scope: Literal["read", "write", "admin"]
    queues: str | None


# Any JSON object the API answers with whose keys are not fixed (metrics).
OpenObject = Mapping[str, Any]
