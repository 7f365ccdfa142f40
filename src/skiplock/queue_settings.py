"""The settings of a queue, each declared once.

A setting's name is its word everywhere: its column of skiplock.queues and of the
queue_stats view, its key in skiplock.configure_queue, the keyword of App.configure_queue,
the field of the REST queue bodies (POST and PUT /api/v1/queues) and, dashed, the flag
of `skiplock queues create|set`. Each is declared as a job option is (options.JobOption):
its wire type, with its bounds, decodes REST bodies and CLI flags and is shown in
/openapi.json, and `options.check` gives its Python value or a ConfigError naming it.
`sql_default` is the value a null (clear) gives the column.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from skiplock.errors import ConfigError
from skiplock.options import (
    BY_NAME as JOB_OPTIONS,
)
from skiplock.options import (
    INT4_MAX,
    JobOption,
    PositiveDuration,
    Priority,
    check,
)
from skiplock.retry import RetryPolicy

Count = Annotated[int, msgspec.Meta(ge=1, le=INT4_MAX)]
WEIGHT_RANGE = (1, 1000)


def _retry_policy(value: dict[str, Any]) -> dict[str, Any]:
    """A policy object as given (kept as written), once RetryPolicy has read it."""
    RetryPolicy.from_json(value)
    return value


SETTINGS: tuple[JobOption, ...] = (
    JobOption(
        "paused",
        bool,
        "boolean",
        "false",
        "A paused queue keeps its jobs and takes new ones, but none is claimed.",
    ),
    JobOption(
        "max_running",
        Count,
        "integer",
        None,
        "At most this many of its jobs running at once, across all workers.",
        "N",
    ),
    JobOption(
        "rate_limit",
        Count,
        "integer",
        None,
        "At most this many of its jobs started per rate_period, across all workers"
        " (given with rate_period).",
        "N",
    ),
    JobOption(
        "rate_period",
        PositiveDuration,
        "interval",
        None,
        "The window of rate_limit, in seconds or a duration such as 1m.",
        "SECONDS",
    ),
    JobOption(
        "retry_policy",
        dict[str, Any],
        "jsonb",
        None,
        'The retry policy of its jobs that have none: {"kind": "exponential" | "linear" |'
        ' "fixed", "base": seconds, "max_delay": seconds, "jitter": 0..1}.',
        "JSON",
        rule=_retry_policy,
    ),
    JobOption(
        "timeout",
        PositiveDuration,
        "interval",
        None,
        "The timeout of its jobs that have none, in seconds or a duration such as 5m.",
        "SECONDS",
    ),
    JobOption(
        "max_attempts",
        JOB_OPTIONS["max_attempts"].wire,
        "integer",
        None,
        "Attempts in all for its jobs that set none and whose task sets none (else 20).",
        "N",
    ),
    JobOption(
        "priority",
        Priority,
        "smallint",
        "0",
        "-100..100, or low, normal, high, critical: a worker serving several queues takes"
        " the work of a higher-priority queue first.",
        "N",
    ),
    JobOption(
        "weight",
        Annotated[int, msgspec.Meta(ge=WEIGHT_RANGE[0], le=WEIGHT_RANGE[1])],
        "integer",
        "1",
        "1..1000: among queues of the same priority, a worker claims in proportion to"
        " their weights.",
        "N",
    ),
)
BY_NAME: dict[str, JobOption] = {setting.name: setting for setting in SETTINGS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
# Given together or not at all: a rate is a count per period.
RATE = ("rate_limit", "rate_period")


def checked_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """Settings given as keywords, each checked against its declaration and in its
    Python form (durations as timedelta, priority names as numbers); None stays None
    (clear it). ConfigError names the first unknown or bad one, or a rate half given."""
    unknown = sorted(set(values) - BY_NAME.keys())
    if unknown:
        raise ConfigError(f"unknown queue setting(s): {', '.join(unknown)}")
    if (RATE[0] in values) != (RATE[1] in values):
        missing = RATE[1] if RATE[0] in values else RATE[0]
        raise ConfigError(f"{missing}: rate_limit and rate_period are set together")
    if (values.get(RATE[0]) is None) != (values.get(RATE[1]) is None):
        missing = RATE[1] if values.get(RATE[0]) is not None else RATE[0]
        raise ConfigError(f"{missing}: rate_limit and rate_period are cleared together")
    return {
        name: None if value is None else check(BY_NAME[name], value)
        for name, value in values.items()
    }
