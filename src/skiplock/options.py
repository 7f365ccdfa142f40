"""The job options, each declared once.

An option's name is its word everywhere: the parameter of `skiplock.enqueue` in SQL, the
keyword of `App.enqueue` and `@app.task`, the field of a REST enqueue body and of a bulk
item, and (dashed) the `skiplock enqueue` flag. Its `wire` type is what JSON and the
command line carry, with its bounds: REST bodies are decoded into it and CLI flags
converted to it (msgspec), and the OpenAPI schema is generated from it. `JobOptions` is
the typed Python form: one field per declared option, in the same order (a test checks
both against `skiplock.enqueue` in pg_proc).

Every option defaults to "not given": the task's default when it has one (the App's, or
the one a worker published to the registry), then the database's built-in value.
`sql_default` is the SQL parameter's default, NULL ("not given") for every option that a
task can default.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec

from skiplock.errors import ConfigError
from skiplock.retry import RetryPolicy
from skiplock.webhooks import MAX_URL_BYTES, URL_PATTERN, check_callback_url

INT4_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1
# The longest duration: timedelta's whole days (timedelta.max.total_seconds() rounds up
# to a float that timedelta(seconds=...) refuses).
MAX_SECONDS = timedelta.max.days * 86400.0
QUEUE_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
TASK_PATTERN = r"^[A-Za-z0-9_.:/-]{1,200}$"
# PostgreSQL text holds no NUL character.
TEXT_PATTERN = r"^[^\x00]*$"

# A duration is a number of seconds, or a text other job systems' clients send: "90s",
# "5m", "1h30m", "2d", or ISO 8601's "PT5M", "P1DT2H".
DURATION_PATTERN = (
    r"^(?:[0-9]+(?:\.[0-9]+)?|(?=[0-9])(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+(?:\.[0-9]+)?s)?"
    r"|P(?=[0-9T])(?:[0-9]+D)?(?:T(?=[0-9])(?:[0-9]+H)?(?:[0-9]+M)?(?:[0-9]+(?:\.[0-9]+)?S)?)?)$"
)
# What a value matching each pattern is, in words: the schema's description and the
# error's message.
PATTERN_WORDS = {
    QUEUE_PATTERN: "1 to 64 characters from A-Z a-z 0-9 _ . : -",
    TASK_PATTERN: "1 to 200 characters from A-Z a-z 0-9 _ . : / -",
    TEXT_PATTERN: "text without NUL characters",
    URL_PATTERN: "an http or https URL",
    DURATION_PATTERN: "seconds, or a duration such as 90s, 5m, 1h30m, 2d or PT5M",
}


def _words(pattern: str, **bounds: Any) -> msgspec.Meta:
    return msgspec.Meta(pattern=pattern, description=PATTERN_WORDS[pattern], **bounds)


QueueName = Annotated[str, _words(QUEUE_PATTERN)]
TaskName = Annotated[str, _words(TASK_PATTERN)]
Text = Annotated[str, _words(TEXT_PATTERN)]
Key = Annotated[str, _words(TEXT_PATTERN, min_length=1)]
CallbackURL = Annotated[str, _words(URL_PATTERN, max_length=MAX_URL_BYTES)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SECONDS)]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_SECONDS)]
DurationText = Annotated[str, _words(DURATION_PATTERN)]
Duration = Seconds | DurationText
PositiveDuration = PositiveSeconds | DurationText
# The duration types, and the number each becomes.
DURATIONS: dict[Any, Any] = {Duration: Seconds, PositiveDuration: PositiveSeconds}
# Priorities by name, as other job systems' clients send them.
PRIORITY_RANGE = (-100, 100)
PRIORITY_NAMES = {"low": -50, "normal": 0, "high": 50, "critical": 100}
Priority = (
    Annotated[int, msgspec.Meta(ge=PRIORITY_RANGE[0], le=PRIORITY_RANGE[1])]
    | Literal["low", "normal", "high", "critical"]
)
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
JobId = Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX)]


@dataclass(frozen=True)
class JobOption:
    """One option as every seam sees it."""

    name: str
    wire: Any  # the JSON / CLI type, with its bounds (a msgspec annotation)
    sql_type: str  # the SQL parameter's type, as pg_proc prints it
    sql_default: str | None  # the SQL parameter's default expression; None: NULL
    help: str
    metavar: str = ""
    # A rule the wire type cannot say; raises ValueError.
    rule: Callable[[Any], Any] | None = None

    @property
    def flag(self) -> str:
        """The `skiplock enqueue` flag; a list option takes one value per flag."""
        if self.many:
            return "--" + self.name.removesuffix("s").replace("_", "-")
        return "--" + self.name.replace("_", "-")

    @property
    def many(self) -> bool:
        """A list: the CLI flag repeats (`--tag a --tag b`)."""
        return get_origin(self.wire) is list

    @property
    def names(self) -> tuple[str, ...]:
        """The words the option takes (a Literal in its wire type), if any."""
        members = get_args(self.wire) if get_origin(self.wire) in (Union, UnionType) else ()
        return tuple(
            word
            for member in (*members, self.wire)
            if get_origin(member) is Literal
            for word in get_args(member)
        )

    @property
    def json_text(self) -> bool:
        """An object: the CLI flag takes it as JSON text."""
        return self.wire is RetryPolicy or get_origin(self.wire) is dict


OPTIONS: tuple[JobOption, ...] = (
    JobOption("queue", QueueName, "text", None, "The queue the job waits in.", "NAME"),
    JobOption(
        "priority",
        Priority,
        "integer",
        None,
        "-100..100, or low (-50), normal (0), high (50), critical (100); a higher priority"
        " runs first within its queue.",
        "N",
    ),
    JobOption(
        "run_at",
        Timestamp,
        "timestamp with time zone",
        None,
        "Not before this moment (ISO 8601 with a time zone).",
        "TIME",
    ),
    JobOption(
        "delay",
        Duration,
        "interval",
        None,
        "Run this many seconds later (after run_at).",
        "SECONDS",
    ),
    JobOption(
        "max_attempts",
        Annotated[int, msgspec.Meta(ge=1, le=INT4_MAX)],
        "integer",
        None,
        "Attempts in all, the first included; then the job goes to the dead letters.",
        "N",
    ),
    JobOption(
        "retry_policy",
        RetryPolicy,
        "jsonb",
        None,
        'The wait before a retry: {"kind": "exponential" | "linear" | "fixed", "base":'
        ' seconds, "max_delay": seconds, "jitter": 0..1}; unset, the queue\'s default,'
        " then exponential from 1 s.",
        "JSON",
    ),
    JobOption(
        "timeout",
        PositiveDuration,
        "interval",
        None,
        "Seconds an attempt may run before it is stopped and counts as failed.",
        "SECONDS",
    ),
    JobOption("tags", list[Text], "text[]", "'{}'", "Labels to filter jobs by.", "TAG"),
    JobOption(
        "meta",
        dict[str, Any],
        "jsonb",
        "'{}'",
        "A JSON object kept with the job for the caller's own use.",
        "JSON",
    ),
    JobOption(
        "unique_key",
        Key,
        "text",
        None,
        "At most one job with this key at a time: while another holds it, no job is"
        " created and the holder's id is returned.",
        "KEY",
    ),
    JobOption(
        "unique_scope",
        Literal["queued", "active", "period"],
        "text",
        None,
        "How long the key is held: until the job starts (queued), until it finishes"
        " (active, the default) or unique_for seconds after (period).",
        "SCOPE",
    ),
    JobOption(
        "unique_for",
        Duration,
        "interval",
        None,
        "Hold the unique key this many seconds after the job finishes.",
        "SECONDS",
    ),
    JobOption(
        "expires_at",
        Timestamp,
        "timestamp with time zone",
        None,
        "A deadline: not started by then, the job ends expired (ISO 8601 with a time zone).",
        "TIME",
    ),
    JobOption(
        "expires_in",
        Duration,
        "interval",
        None,
        "A deadline this many seconds from now.",
        "SECONDS",
    ),
    JobOption(
        "depends_on",
        list[JobId],
        "bigint[]",
        None,
        "Ids of jobs that must succeed first; the job waits until they have.",
        "ID",
    ),
    JobOption(
        "on_dependency_failure",
        Literal["fail", "cancel", "run"],
        "text",
        None,
        "What the job does when a job it depends on does not succeed: fail (the"
        " default), cancel or run anyway.",
        "POLICY",
    ),
    JobOption(
        "callback_url",
        CallbackURL,
        "text",
        None,
        "An http(s) URL the job's outcome is POSTed to, signed, when it finishes.",
        "URL",
        rule=check_callback_url,
    ),
)
BY_NAME: dict[str, JobOption] = {option.name: option for option in OPTIONS}
NAMES: tuple[str, ...] = tuple(BY_NAME)


@dataclass(frozen=True, slots=True)
class JobOptions:
    """The options of one job, or a task's defaults: None (or empty) means not given.

    The Python form of OPTIONS, field for field; durations are seconds or timedeltas.
    """

    queue: str | None = None
    priority: int | None = None
    run_at: datetime | None = None
    delay: timedelta | float | None = None
    max_attempts: int | None = None
    retry_policy: RetryPolicy | None = None
    timeout: timedelta | float | None = None
    tags: Sequence[str] = ()
    meta: Mapping[str, Any] | None = None
    unique_key: str | None = None
    unique_scope: str | None = None
    unique_for: timedelta | float | None = None
    expires_at: datetime | None = None
    expires_in: timedelta | float | None = None
    depends_on: Sequence[int] = ()
    on_dependency_failure: str | None = None
    callback_url: str | None = None

    @classmethod
    def checked(cls, values: Mapping[str, Any]) -> JobOptions:
        """Options given as keywords (Python values or their JSON forms), each checked
        against its declaration; ConfigError names the first unknown or bad one."""
        if not values:
            return NO_OPTIONS
        unknown = sorted(set(values) - BY_NAME.keys())
        if unknown:
            raise ConfigError(f"unknown job option(s): {', '.join(unknown)}")
        return cls(
            **{
                name: check(BY_NAME[name], value)
                for name, value in values.items()
                if value is not None and not (BY_NAME[name].many and not value)
            }
        )

    def merged(self, override: JobOptions) -> JobOptions:
        """These options with those `override` gives."""
        if override is NO_OPTIONS:
            return self
        changes = {
            name: value
            for name in NAMES
            if (value := getattr(override, name)) is not None and value != ()
        }
        return dataclasses.replace(self, **changes) if changes else self

    def given(self) -> dict[str, Any]:
        """The options that are set, by name."""
        return {
            name: value
            for name in NAMES
            if (value := getattr(self, name)) is not None and value != ()
        }


# No option given: what JobOptions.checked returns for no keywords, the usual enqueue,
# which the producer then takes by identity down its short way (App._request).
NO_OPTIONS = JobOptions()


def check(option: JobOption, value: Any) -> Any:
    """`value` as JobOptions holds it, or ConfigError naming the option.

    Accepts the Python form (timedelta, RetryPolicy, tuple) and the JSON form (seconds,
    an object, a list) alike.
    """
    if isinstance(value, timedelta):
        value = value.total_seconds()
    elif option.wire is RetryPolicy and isinstance(value, RetryPolicy):
        return value
    elif isinstance(value, tuple):
        value = list(value)
    try:
        checked = msgspec.convert(value, option.wire)
        if option.rule is not None:
            checked = option.rule(checked)
        if option.wire in DURATIONS and isinstance(checked, str):
            checked = msgspec.convert(duration_seconds(checked), DURATIONS[option.wire])
    except (msgspec.ValidationError, ValueError) as exc:
        raise ConfigError(f"{option.name}: {_reason(exc, option.names)}") from None
    if option.many:
        return tuple(checked)
    if option.wire in DURATIONS:
        return timedelta(seconds=checked)
    if isinstance(checked, str) and checked in PRIORITY_NAMES:
        return PRIORITY_NAMES[checked]
    return checked


def positive_duration(value: Any) -> timedelta:
    """A duration > 0 (seconds, or a text such as 90s, 12h or PT30M) as a timedelta, for
    settings that take one; ValueError saying what it must be."""
    try:
        seconds = msgspec.convert(value, PositiveDuration, strict=False)
        if isinstance(seconds, str):
            seconds = msgspec.convert(duration_seconds(seconds), PositiveSeconds)
    except msgspec.ValidationError as exc:
        raise ValueError(_reason(exc)) from None
    return timedelta(seconds=seconds)


def from_cli(option: JobOption, value: Any) -> Any:
    """A flag's text (a tuple of texts for a repeated flag) as the option's value;
    ConfigError naming the flag."""
    try:
        if option.json_text:
            value = json.loads(value)
        else:
            value = msgspec.convert(value, option.wire, strict=False)
        return check(option, value)
    except (ValueError, ConfigError) as exc:
        raise ConfigError(
            f"{option.flag}: {_reason(exc, option.names).removeprefix(option.name + ': ')}"
        ) from None


_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_PARTS = re.compile(r"([0-9]+(?:\.[0-9]+)?)([dhmsDHMS])")


def duration_seconds(text: str) -> float:
    """Seconds in a duration text that matches DURATION_PATTERN ("90", "1h30m", "PT5M")."""
    if text[:1] == "P":
        days, _, clock = text[1:].partition("T")
        parts = [(number, "d") for number, _ in _PARTS.findall(days)]
        parts += [(number, unit.lower()) for number, unit in _PARTS.findall(clock)]
    else:
        parts = _PARTS.findall(text) or [(text, "s")]
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def _reason(exc: Exception, names: Sequence[str] = ()) -> str:
    """msgspec's message without its `- at $...` suffix (the caller names the field),
    a pattern said in words."""
    reason = str(exc).split(" - at `$", 1)[0]
    if reason.startswith("Invalid enum value") and names:
        return f"{reason}; expected one of {', '.join(names)}"
    for pattern, words in PATTERN_WORDS.items():
        if reason.endswith(f"matching regex {pattern!r}"):
            return f"must be {words}"
    return reason


def wire_fields() -> list[tuple[str, Any, None]]:
    """(name, type, default) per option for a request model (msgspec.defstruct): each
    optional, null meaning not given, its help the schema's description."""
    return [
        (option.name, Annotated[option.wire, msgspec.Meta(description=option.help)] | None, None)
        for option in OPTIONS
    ]


# The options a task's published defaults carry: those that are the same for every job
# of a task. Per-job ones (run_at, expires_at, unique_*, depends_on) apply only through
# the App that declares them.
PUBLISHED_DEFAULTS = (
    "priority",
    "max_attempts",
    "retry_policy",
    "timeout",
    "tags",
    "meta",
    "on_dependency_failure",
    "callback_url",
    "delay",
    "expires_in",
)


def published_defaults(defaults: JobOptions) -> dict[str, Any]:
    """A task's defaults as the registry holds them (skiplock.tasks.defaults): JSON
    values by name, durations in seconds; the queue is published beside them."""
    published: dict[str, Any] = {}
    for name, value in defaults.given().items():
        if name not in PUBLISHED_DEFAULTS:
            continue
        if isinstance(value, timedelta):
            value = value.total_seconds()
        elif isinstance(value, RetryPolicy):
            value = value.to_json()
        elif isinstance(value, tuple):
            value = list(value)
        published[name] = value
    return published
