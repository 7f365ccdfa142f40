"""What a job is, as callers see it: its status words, its record, its JSON rules."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from json.encoder import encode_basestring_ascii
from typing import Any, Literal, NamedTuple, get_args

Status = Literal[
    "waiting",
    "scheduled",
    "queued",
    "running",
    "retrying",
    "succeeded",
    "failed",
    "cancelled",
    "expired",
]
STATUSES: tuple[str, ...] = get_args(Status)
FINISHED: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "expired"})


class JSONError(ValueError):
    """A value cannot be stored as PostgreSQL jsonb."""


# One encoder for every call: json.dumps with options builds a new one each time.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
# JSONEncoder.encode still builds its C encoder on every call: half the time of encoding
# a small dict, which bulk enqueue pays per job. This one is built
# once with the same settings. Without markers it keeps no state between calls (threads
# share it) and checks no cycles: a value that contains itself ends in RecursionError.
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)  # None without the C module
_C_ENCODER = (
    _c_make_encoder(
        None, _ENCODER.default, encode_basestring_ascii, None, ":", ",", False, False, False
    )
    if _c_make_encoder is not None
    else None
)


def _encode(value: Any) -> str:
    if _C_ENCODER is None:  # no C accelerator in this Python
        return _ENCODER.encode(value)
    return "".join(_C_ENCODER(value, 0))


def encode_json(value: Any, *, what: str) -> str:
    """JSON text that jsonb accepts, or JSONError naming `what`.

    jsonb rejects NaN/Infinity and the \\u0000 escape; checking here gives the caller a
    clear error instead of a failed batch statement later.
    """
    if value is None:
        return "null"  # what most handlers return: skip the encoder
    try:
        text = _encode(value)
    except (TypeError, ValueError) as exc:
        raise JSONError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise JSONError(
            f"{what} nests too deeply or contains itself (at most 200 levels are stored)"
        ) from None
    if "\\u0000" in text:
        raise JSONError(
            f"{what} contains the NUL character (\\u0000), which PostgreSQL cannot store"
        )
    return text


class Undecodable(dict[str, Any]):
    """A claimed job's args or meta that Python's json cannot decode (jsonb stores
    integers of more than 4,300 digits, which `int()` refuses). The worker loads it in
    place of the value so one such row fails only its own job, not the claim batch.
    An empty dict, so whatever looks at a job before the check (hooks, middleware,
    tracing) reads nothing instead of breaking."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


def undecodable_error(job: ClaimedJob) -> str | None:
    """For the worker, before the handler: None when the job's args and meta decoded;
    otherwise the error JSON for fail_jobs, with `"retry": false` (running it again
    cannot make its args readable), so the job goes straight to the dead letters."""
    for name, value in (("args", job.args), ("meta", job.meta)):
        if isinstance(value, Undecodable):
            return encode_json(
                {
                    "error": f"UndecodableJSON: the job's {name} cannot be decoded by"
                    f" Python's json: {value.reason}",
                    "type": "UndecodableJSON",
                    "retry": False,
                },
                what="error",
            )
    return None


@dataclass(frozen=True)
class Job:
    """One job as the all_jobs view shows it, wherever it lives."""

    id: int
    task: str
    args: dict[str, Any]
    queue: str
    priority: int
    status: Status
    attempt: int
    max_attempts: int
    run_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: dict[str, Any] | None
    result: Any
    last_error: dict[str, Any] | None
    errors: list[dict[str, Any]] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    retry_policy: dict[str, Any] | None = None
    timeout: timedelta | None = None
    worker_id: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    callback_url: str | None = None
    # the key it was enqueued with (unique_key); held in skiplock.unique_keys until freed
    unique_key: str | None = None
    # not started after this, it ends `expired`
    expires_at: datetime | None = None
    # the ids of the jobs it waits on (None: none), and what it does if one fails
    # ("fail", "cancel" or "run"; None once it has left the hot table)
    depends_on: list[int] | None = None
    on_dependency_failure: str | None = None
    # whether a worker has published its task (skiplock.tasks): read with one job
    # (get_job), None in lists. Last: list reads fill the fields before it by position.
    task_published: bool | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps ISO 8601, durations in seconds)."""
        return {name: json_field(value) for name, value in self.__dict__.items()}


def json_field(value: Any) -> Any:
    """A job field as JSON: timestamps ISO 8601, durations in seconds, a worker id as
    text; anything else as it is."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


class ClaimedJob(NamedTuple):
    """A job a worker holds: (worker_id, attempt) is its fencing token.

    A NamedTuple: immutable, and a worker builds one per job, about four times faster
    than a frozen dataclass. The store builds it from the claim's columns by name.
    """

    id: int
    task: str
    args: dict[str, Any]
    queue: str
    priority: int
    attempt: int
    max_attempts: int
    timeout: timedelta | None
    created_at: datetime
    tags: list[str]
    meta: dict[str, Any]
    run_at: datetime
