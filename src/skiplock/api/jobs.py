"""/api/v1/jobs: enqueue a job and read one back.

Every field of an enqueue is checked here, before the database sees it, so that a bad
request gets a 422 naming its field; the database's own checks stay the last word
(anything that slips past still comes back as a 422, see problems.py).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from skiplock.api.body import read_json_object
from skiplock.api.problems import Problem, invalid_field
from skiplock.api.state import api_state
from skiplock.jobs import JSONError, encode_json

# The same rules as the jobs table's CHECK constraints (sql/migrations/0001_initial.sql).
TASK_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,200}")
QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
PRIORITY_RANGE = (-100, 100)
INT4_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
MAX_SECONDS = timedelta.max.total_seconds()


@dataclass(frozen=True)
class EnqueueBody:
    """A checked POST /api/v1/jobs body: the arguments of App.enqueue_async."""

    task: str
    args: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)


def _task(value: Any) -> str:
    if not isinstance(value, str) or not TASK_NAME.fullmatch(value):
        raise invalid_field(
            "task", "task must be a string of 1 to 200 characters from A-Z a-z 0-9 _ . : / -"
        )
    return value


def _json_object(name: str) -> Callable[[Any], dict[str, Any]]:
    def check(value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise invalid_field(name, f"{name} must be a JSON object")
        try:
            encode_json(value, what=name)
        except JSONError as exc:
            raise invalid_field(name, str(exc)) from None
        except RecursionError:
            raise invalid_field(name, f"{name} is nested too deeply") from None
        if not _is_utf8(json.dumps(value, ensure_ascii=False)):
            # A lone surrogate (a "\ud800" escape with no partner) passes json.dumps
            # but not jsonb's input; say which field holds it.
            raise invalid_field(name, f"{name} contains a lone UTF-16 surrogate escape")
        return value

    return check


def _queue(value: Any) -> str:
    if not isinstance(value, str) or not QUEUE_NAME.fullmatch(value):
        raise invalid_field(
            "queue", "queue must be a string of 1 to 64 characters from A-Z a-z 0-9 _ . : -"
        )
    return value


def _integer(name: str, low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        # bool is a subclass of int in Python; `true` is not a priority.
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise invalid_field(name, f"{name} must be an integer between {low} and {high}")
        return value

    return check


def _seconds(name: str, *, positive: bool) -> Callable[[Any], timedelta]:
    rule = "> 0" if positive else ">= 0"

    def check(value: Any) -> timedelta:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (isinstance(value, float) and not math.isfinite(value))
            or not (0 < value if positive else 0 <= value)
        ):
            raise invalid_field(name, f"{name} must be a number of seconds {rule}")
        if value > MAX_SECONDS:
            raise invalid_field(name, f"{name} must be at most {MAX_SECONDS:.0f} seconds")
        return timedelta(seconds=value)

    return check


def _run_at(value: Any) -> datetime:
    detail = "run_at must be an ISO 8601 datetime with a timezone, e.g. 2030-01-01T09:00:00Z"
    if not isinstance(value, str):
        raise invalid_field("run_at", detail)
    # Python 3.10's fromisoformat does not read the "Z" suffix.
    text = value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise invalid_field("run_at", detail) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise invalid_field("run_at", detail)
    return parsed


def _tags(value: Any) -> tuple[str, ...]:
    detail = "tags must be a list of strings (no NUL characters or lone surrogates)"
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise invalid_field("tags", detail)
    for tag in value:
        # PostgreSQL text cannot hold NUL, and a lone surrogate cannot be sent as UTF-8.
        if "\x00" in tag or not _is_utf8(tag):
            raise invalid_field("tags", detail)
    return tuple(value)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Optional fields: body name → check, in the order they are checked. The names are
# App.enqueue_async's options, so a checked body passes straight through.
OPTIONS: dict[str, Callable[[Any], Any]] = {
    "queue": _queue,
    "priority": _integer("priority", *PRIORITY_RANGE),
    "delay": _seconds("delay", positive=False),
    "run_at": _run_at,
    "max_attempts": _integer("max_attempts", 1, INT4_MAX),
    "timeout": _seconds("timeout", positive=True),
    "tags": _tags,
    "meta": _json_object("meta"),
}
FIELDS = ("task", "args", *OPTIONS)


def parse_enqueue(body: Mapping[str, Any]) -> EnqueueBody:
    """Check an enqueue body; raises a 422 Problem naming the first bad field.

    `null` counts as "not given" for every optional field.
    """
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise Problem(
            422,
            "unknown field",
            f"unknown field(s): {', '.join(unknown)}; expected some of {', '.join(FIELDS)}",
            field=unknown[0],
        )
    if body.get("task") is None:
        raise invalid_field("task", "task is required")
    task = _task(body["task"])
    args = _json_object("args")(body["args"]) if body.get("args") is not None else {}
    options = {
        name: check(body[name]) for name, check in OPTIONS.items() if body.get(name) is not None
    }
    return EnqueueBody(task, args, options)


def parse_job_id(text: str) -> int | None:
    """The id in a job URL, or None when it cannot be a job id (not a bigint >= 0)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        return None
    job_id = int(text)
    return job_id if job_id <= BIGINT_MAX else None


async def enqueue_job(request: Request) -> Response:
    """POST /api/v1/jobs → 201 {"id", "status"} with Location /api/v1/jobs/{id}."""
    api = api_state(request)
    job = parse_enqueue(await read_json_object(request, limit=api.max_body_bytes))
    job_id = await api.call(api.app.enqueue_async(job.task, job.args, **job.options))
    # The status comes from the database's clock (all_jobs), not ours: "scheduled" when
    # run_at is still ahead of now(), and a worker may already have claimed it.
    created = await api.call(api.app.get_job_async(job_id))
    location = request.url_for("get_job", job_id=str(job_id)).path
    return JSONResponse(
        {"id": job_id, "status": created.status}, status_code=201, headers={"Location": location}
    )


async def get_job(request: Request) -> Response:
    """GET /api/v1/jobs/{id} → 200 with the job; 404 for an unknown or impossible id."""
    api = api_state(request)
    raw = request.path_params["job_id"]
    job_id = parse_job_id(raw)
    if job_id is None:
        # An id that cannot exist is just another job that is not there.
        raise Problem(404, "not found", f"job {raw} not found")
    job = await api.call(api.app.get_job_async(job_id))
    return JSONResponse(job.to_json())


routes = [
    Route("/jobs", enqueue_job, methods=["POST"], name="enqueue_job"),
    Route("/jobs/{job_id}", get_job, methods=["GET"], name="get_job"),
]
"""Mounted under /api/v1 by create_app."""
