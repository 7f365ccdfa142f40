"""The rules every API field shares (names, numbers, JSON values), and the one way a
request body becomes a model: `decode`, whose every failure is a 422 naming its field.

The rules are msgspec constraints (`Annotated[..., Meta(...)]`), so the same text both
checks a body and appears in /openapi.json. What a JSON Schema cannot say (a name
matched in full, jsonb's limits on text) is checked once, in `check_text` and
`check_json_object`, by the models that need it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta

from skiplock.api.problems import Problem, invalid_field, reject_unknown_fields
from skiplock.jobs import JSONError, encode_json
from skiplock.options import (
    BIGINT_MAX,
    BY_NAME,
    INT4_MAX,
    MAX_SECONDS,
    PRIORITY_RANGE,
    QUEUE_PATTERN,
    TASK_PATTERN,
    PositiveSeconds,
    QueueName,
    Seconds,
    TaskName,
    Timestamp,
)

__all__ = [
    "BIGINT_MAX",
    "INT4_MAX",
    "MAX_SECONDS",
    "PRIORITY_RANGE",
    "PositiveSeconds",
    "QueueName",
    "Seconds",
    "TaskName",
    "Timestamp",
]

# The rules of the job options (skiplock/options.py), which are the jobs table's.
TASK_NAME = re.compile(TASK_PATTERN[1:-1])
QUEUE_NAME = re.compile(QUEUE_PATTERN[1:-1])
Priority = BY_NAME["priority"].wire
Attempts = BY_NAME["max_attempts"].wire
JSONObject = Annotated[dict[str, Any], Meta(description="Any JSON object.")]

M = TypeVar("M")


def decode(
    value: Mapping[str, Any],
    model: type[M],
    rules: Mapping[str, str],
    *,
    fields: Sequence[str],
) -> M:
    """`value` (a parsed JSON object) as a `model`; a 422 naming the first bad field,
    with `rules[field]` (what a valid value looks like) as its detail.

    Unknown fields are named first, all of them; `null` is "not given" for every
    optional field (each defaults to None).
    """
    reject_unknown_fields(value, fields)
    try:
        return msgspec.convert(value, model)
    except msgspec.ValidationError as exc:
        message = str(exc)
        name = _field_of(message)
        if name is None:
            raise Problem(422, "invalid field", message) from None
        if value.get(name) is None and name in rules:
            raise invalid_field(name, f"{name} is required") from None
        # The field is named by the problem: msgspec's "- at `$.path`" would say it twice.
        reason = message.split(" - at `$", 1)[0]
        raise invalid_field(name, rules.get(name, f"{name}: {reason}")) from None


_AT = re.compile(r"at `\$\.([A-Za-z_][A-Za-z0-9_]*)")
_MISSING = re.compile(r"missing required field `([^`]+)`")


def _field_of(message: str) -> str | None:
    """The top-level field a msgspec error is about: `$.tags[1]` → tags."""
    found = _AT.search(message) or _MISSING.search(message)
    return found.group(1) if found else None


def within(prefix: str, problem: Problem, label: str) -> Problem:
    """`problem` about an item of a list: its field under `prefix` (`[3].queue`,
    `steps[3].queue`), its detail after `label` ("job 3: ...")."""
    return Problem(
        problem.status,
        problem.error,
        f"{label}: {problem.detail}",
        field=f"{prefix}.{problem.field}" if problem.field else prefix,
    )


def check_text(name: str, value: str, pattern: re.Pattern[str], rule: str) -> None:
    """422 unless `pattern` matches all of `value`: a JSON Schema pattern (and msgspec's)
    is a search, and `$` also matches before a final newline."""
    if not pattern.fullmatch(value):
        raise invalid_field(name, rule)


def check_json_object(name: str, value: dict[str, Any]) -> None:
    """422 naming `name` for an object jsonb cannot store (NaN, NUL, a lone surrogate)."""
    try:
        encode_json(value, what=name)
    except JSONError as exc:
        raise invalid_field(name, str(exc)) from None
    except RecursionError:
        raise invalid_field(name, f"{name} is nested too deeply") from None
    if not is_utf8(json.dumps(value, ensure_ascii=False)):
        # A lone surrogate (a "\ud800" escape with no partner) passes json.dumps but not
        # jsonb's input; say which field holds it.
        raise invalid_field(name, f"{name} contains a lone UTF-16 surrogate escape")


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def seconds_rule(name: str, *, positive: bool) -> str:
    return (
        f"{name} must be a number of seconds {'> 0' if positive else '>= 0'} and at most"
        f" {MAX_SECONDS:.0f}, or a duration such as 90s, 5m, 1h30m, 2d or PT5M"
    )


def integer_rule(name: str, low: int, high: int) -> str:
    return f"{name} must be an integer between {low} and {high}"
