"""The words other job systems' clients send, declared once, beside the job options
(skiplock/options.py) they stand for.

A REST body may say `type` for task, `payload` for args, `scheduled_at` for run_at,
`max_retries` (retries after the first attempt) for max_attempts, and `retry_strategy`,
`retry_delay`, `max_retry_delay` for the retry policy (a queue's body too, and
`max_workers` for its max_running); a job list may filter by
`pending`, `processing`, `completed` or `success`. Durations as texts ("5m", "PT5M") and
priorities by name ("high") are part of the options' own types. Responses and docs use
the canonical words only; docs/api.md lists these under "Coming from another job system".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_args

import msgspec

from skiplock.options import Duration, duration_seconds
from skiplock.retry import RetryKind


@dataclass(frozen=True)
class Synonym:
    """A body field another system's client sends, and the field it stands for."""

    name: str
    field: str
    meaning: str


FIELD_SYNONYMS: tuple[Synonym, ...] = (
    Synonym("type", "task", "the task's name"),
    Synonym("payload", "args", "the task's arguments (a JSON object)"),
    Synonym("scheduled_at", "run_at", "not before this moment"),
    Synonym(
        "max_retries",
        "max_attempts",
        "retries after the first attempt: max_attempts = max_retries + 1",
    ),
    Synonym(
        "retry_strategy",
        "retry_policy",
        "the policy's kind: exponential (the default), linear or fixed",
    ),
    Synonym("retry_delay", "retry_policy", "the policy's base delay (seconds or a duration)"),
    Synonym("max_retry_delay", "retry_policy", "the policy's longest delay"),
)
# A queue's settings, as other systems' queue APIs name them, and the job synonyms that
# name a queue default (max_retries, retry_*).
QUEUE_SYNONYMS: tuple[Synonym, ...] = (
    Synonym("max_workers", "max_running", "the queue's jobs running at once, across all workers"),
    *(synonym for synonym in FIELD_SYNONYMS if synonym.field in ("max_attempts", "retry_policy")),
)
# A schedule's fields, as other systems' schedule APIs name them (and a job's above).
SCHEDULE_SYNONYMS: tuple[Synonym, ...] = (
    Synonym("job_type", "task", "the task each run enqueues"),
    Synonym("cron_expr", "cron", "the cron expression"),
    Synonym("payload", "args", "the args of each run's job"),
)
RETRY_FIELDS = {"retry_strategy": "kind", "retry_delay": "base", "max_retry_delay": "max_delay"}

# Status words of other systems in job filters, and the statuses each one means.
STATUS_SYNONYMS: dict[str, tuple[str, ...]] = {
    # not started yet, whatever it waits for
    "pending": ("waiting", "scheduled", "queued", "retrying"),
    "processing": ("running",),
    "completed": ("succeeded",),
    "success": ("succeeded",),
}


class SynonymError(ValueError):
    """A synonym that conflicts with its field, or carries a value it cannot have."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def canonical(
    body: Mapping[str, Any], synonyms: tuple[Synonym, ...] = FIELD_SYNONYMS
) -> dict[str, Any]:
    """`body` with every one of `synonyms` replaced by the field it stands for (null ones
    dropped); SynonymError naming the synonym when it and its field are both given or
    its value cannot be converted."""
    given = {name: value for name, value in body.items() if value is not None}
    names = {synonym.name for synonym in synonyms}
    out = {name: value for name, value in body.items() if name not in names}
    for synonym in synonyms:
        if synonym.name not in given:
            # a null synonym is its field's null (where null clears, it clears)
            if synonym.name in body and synonym.field not in body:
                if synonym.field != "retry_policy":
                    out[synonym.field] = None
            continue
        if given.get(synonym.field) is not None:
            raise SynonymError(
                synonym.name,
                f"{synonym.name} and {synonym.field} name the same field: send one of them",
            )
        if synonym.field == "retry_policy":
            continue
        value = given[synonym.name]
        if synonym.name == "max_retries":
            value = _retries(value) + 1
        out[synonym.field] = value
    policy = {
        key: _retry_value(name, given[name]) for name, key in RETRY_FIELDS.items() if name in given
    }
    if policy:
        out["retry_policy"] = policy
    return out


def _retries(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SynonymError(
            "max_retries", "max_retries must be an integer >= 0 (retries after the first attempt)"
        )
    return value


def _retry_value(name: str, value: Any) -> Any:
    if name == "retry_strategy":
        if value not in get_args(RetryKind):
            raise SynonymError(name, f"{name} must be one of exponential, linear or fixed")
        return value
    try:
        seconds = msgspec.convert(value, Duration)
        return duration_seconds(seconds) if isinstance(seconds, str) else seconds
    except msgspec.ValidationError:
        raise SynonymError(
            name, f"{name} must be a number of seconds >= 0 or a duration such as 90s or 5m"
        ) from None
