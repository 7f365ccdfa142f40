"""The request bodies of the job and workflow routes, declared once as msgspec Structs:
decoding into them checks a body (api/fields.py `decode`), and /openapi.json shows
them (api/openapi.py).

An enqueue is one Struct, built by `enqueue_model` from the job options as
skiplock/options.py declares them (`wire_fields`): the job body (POST /api/v1/jobs,
alone or in a list) has all of them, a workflow step those a step takes. A decoded
body's options are App.enqueue_async's keyword arguments.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, cast

import msgspec
from msgspec import Meta

from skiplock.api.fields import (
    INT4_MAX,
    PRIORITY_RANGE,
    QUEUE_NAME,
    TASK_NAME,
    Attempts,
    JSONObject,
    Priority,
    QueueName,
    Seconds,
    TaskName,
    check_json_object,
    check_text,
    decode,
    integer_rule,
    is_utf8,
    seconds_rule,
)
from skiplock.api.problems import invalid_field
from skiplock.errors import ConfigError
from skiplock.options import NAMES, OPTIONS, check, wire_fields
from skiplock.passwords import (
    MAX_PASSWORD_CHARS,
    PASSWORD_RULE,
    USER_NAME,
    USER_NAME_RULE,
    password_problem,
)
from skiplock.queue_settings import NAMES as QUEUE_SETTINGS
from skiplock.queue_settings import SETTINGS, WEIGHT_RANGE, checked_settings
from skiplock.synonyms import SynonymError, canonical

# What a valid value looks like, as a 422's detail says it, for the options whose words
# clients read (tests pin them); any other option's detail is msgspec's reason after
# the option's name.
RULES = {
    "queue": "queue must be a string of 1 to 64 characters from A-Z a-z 0-9 _ . : -",
    "priority": integer_rule("priority", *PRIORITY_RANGE) + ", or low, normal, high or critical",
    "delay": seconds_rule("delay", positive=False),
    "run_at": "run_at must be an ISO 8601 datetime with a timezone, e.g. 2030-01-01T09:00:00Z",
    "max_attempts": integer_rule("max_attempts", 1, INT4_MAX),
    "timeout": seconds_rule("timeout", positive=True),
    "tags": "tags must be a list of strings (no NUL characters or lone surrogates)",
    "meta": "meta must be a JSON object",
    "callback_url": "callback_url must be an http or https URL",
}
ENQUEUE_RULES: dict[str, str] = {
    "task": "task must be a string of 1 to 200 characters from A-Z a-z 0-9 _ . : / -",
    "args": "args must be a JSON object",
    **RULES,
    "allow_unregistered_task": "allow_unregistered_task must be a boolean",
}


class Enqueue(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What every enqueue body has: the task, its args, and the task-registry opt-out;
    the job options are added by `enqueue_model`."""

    task: TaskName
    args: JSONObject | None = None
    allow_unregistered_task: (
        Annotated[bool, Meta(description="Enqueue even if no worker has published the task.")]
        | None
    ) = None

    # The job options this model holds (enqueue_model sets them).
    option_names: ClassVar[frozenset[str]] = frozenset()

    def check(self) -> None:
        """The rules a JSON Schema cannot state; a 422 naming the field."""
        check_text("task", self.task, TASK_NAME, ENQUEUE_RULES["task"])
        if self.args is not None:
            check_json_object("args", self.args)
        queue = getattr(self, "queue", None)
        if queue is not None:
            check_text("queue", queue, QUEUE_NAME, ENQUEUE_RULES["queue"])
        tags = getattr(self, "tags", None)
        # PostgreSQL text cannot hold NUL, and a lone surrogate cannot be sent as UTF-8.
        if tags is not None and any("\x00" in tag or not is_utf8(tag) for tag in tags):
            raise invalid_field("tags", ENQUEUE_RULES["tags"])
        meta = getattr(self, "meta", None)
        if meta is not None:
            check_json_object("meta", meta)
        for option in OPTIONS:
            value = getattr(self, option.name, None) if option.name in self.option_names else None
            if option.rule is not None and value is not None:
                try:
                    option.rule(value)
                except ValueError as exc:
                    raise invalid_field(option.name, str(exc)) from None

    def options(self) -> dict[str, Any]:
        """The options given (not null), as the declaration converts them (durations as
        timedelta, priorities as numbers, lists as tuples): App.enqueue_async's keyword
        arguments."""
        given: dict[str, Any] = {}
        for option in OPTIONS:
            if option.name not in self.option_names:
                continue
            value = getattr(self, option.name)
            if value is None:
                continue
            try:
                given[option.name] = check(option, value)
            except ConfigError as exc:
                raise invalid_field(option.name, RULES.get(option.name, str(exc))) from None
        return given

    @property
    def job_args(self) -> dict[str, Any]:
        return self.args if self.args is not None else {}


def enqueue_model(
    name: str,
    extra: tuple[tuple[str, Any, Any], ...] = (),
    *,
    without: frozenset[str] = frozenset(),
) -> type[Enqueue]:
    """An Enqueue Struct with every job option of skiplock/options.py (but `without`)
    and `extra` fields."""
    options = [field for field in wire_fields() if field[0] not in without]
    model = msgspec.defstruct(
        name,
        [*extra, *options],
        bases=(Enqueue,),
        kw_only=True,
        module=__name__,
        namespace={"option_names": frozenset(field[0] for field in options)},
    )
    return cast(type[Enqueue], model)


EnqueueJob = enqueue_model("EnqueueJob")
ENQUEUE_FIELDS = tuple(EnqueueJob.__struct_fields__)

STEP_NAME = re.compile("[A-Za-z0-9_.:/-]{1,100}")
StepName = Annotated[str, Meta(pattern=f"^{STEP_NAME.pattern}$")]
ArgName = Annotated[str, Meta(min_length=1, max_length=200)]
STEP_RULES: dict[str, str] = {
    **ENQUEUE_RULES,
    "name": "name must be 1 to 100 of A-Z a-z 0-9 _ . : / -",
    "after": "after must be a list of step names",
    "result_arg": "result_arg must be an argument name (a string of 1 to 200)",
    "results_arg": "results_arg must be an argument name (a string of 1 to 200)",
    "on_dependency_failure": "on_dependency_failure must be fail, cancel or run",
}
# The options a workflow step takes (skiplock.enqueue_workflow): webhooks, unique keys,
# deadlines and dependencies are per job, and a step's dependencies are its `after`.
STEP_OPTIONS = ("queue", "priority", "delay", "run_at", "max_attempts", "timeout", "tags", "meta")
# A workflow step: an enqueue with the step options, and its place in the graph.
WorkflowStep = enqueue_model(
    "EnqueueWorkflowStep",
    (
        ("name", StepName | None, None),
        ("after", list[str] | None, None),
        ("result_arg", ArgName | None, None),
        ("results_arg", ArgName | None, None),
        ("on_dependency_failure", Literal["fail", "cancel", "run"] | None, None),
    ),
    without=frozenset(NAMES) - set(STEP_OPTIONS),
)
STEP_FIELDS = tuple(WorkflowStep.__struct_fields__)
# Steps are enqueued one by one inside enqueue_workflow: the bound keeps a request well
# inside the API's statement timeout (docs/performance.md has the cost of a step).
MAX_STEPS = 1000


class WorkflowFields(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The fields of a workflow body besides its steps."""

    name: Annotated[str, Meta(pattern="^[A-Za-z0-9_.:/-]{1,200}$")] | None = None
    meta: JSONObject | None = None
    allow_unregistered_task: (
        Annotated[
            bool, Meta(description="Enqueue every step even if no worker has published its task.")
        ]
        | None
    ) = None

    def check(self) -> None:
        if self.name is not None:
            check_text("name", self.name, WORKFLOW_NAME, WORKFLOW_RULES["name"])
        if self.meta is not None:
            check_json_object("meta", self.meta)


class EnqueueWorkflow(WorkflowFields, kw_only=True):
    """POST /api/v1/workflows. Its steps are decoded one by one, so that a bad one is
    named `steps[i].field` (see api/workflows.py)."""

    steps: Annotated[list[WorkflowStep], Meta(min_length=1, max_length=MAX_STEPS)]  # type: ignore[valid-type]


WORKFLOW_NAME = re.compile("[A-Za-z0-9_.:/-]{1,200}")
WORKFLOW_RULES = {
    "name": "name must be 1 to 200 of A-Z a-z 0-9 _ . : / -",
    "meta": "meta must be a JSON object",
    "allow_unregistered_task": ENQUEUE_RULES["allow_unregistered_task"],
}


@dataclass(frozen=True)
class EnqueueBody:
    """A checked enqueue: the arguments of App.enqueue_async."""

    task: str
    args: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    # true: enqueue even if no worker has published the task (see api/tasks.py)
    allow_unregistered_task: bool = False


def parse_enqueue(body: Mapping[str, Any]) -> EnqueueBody:
    """An enqueue body, checked; a 422 naming the first bad field. Other job systems'
    words (skiplock/synonyms.py) stand for their fields."""
    try:
        body = canonical(body)
    except SynonymError as exc:
        raise invalid_field(exc.field, str(exc)) from None
    job = decode(body, EnqueueJob, ENQUEUE_RULES, fields=ENQUEUE_FIELDS)
    job.check()
    return EnqueueBody(job.task, job.job_args, job.options(), bool(job.allow_unregistered_task))


def parse_step(body: Mapping[str, Any]) -> Enqueue:
    """A workflow step, checked; a 422 naming the first bad field."""
    if body.get("callback_url") is not None:
        raise invalid_field("callback_url", "workflow steps take no callback_url")
    given = {name: value for name, value in body.items() if name != "callback_url"}
    step = decode(given, WorkflowStep, STEP_RULES, fields=STEP_FIELDS)
    step.check()
    if getattr(step, "name", None) is not None:
        check_text("name", step.name, STEP_NAME, STEP_RULES["name"])  # type: ignore[attr-defined]
    return step


# ---- queues ---------------------------------------------------------------------------

QUEUE_RULES = {
    "name": "name must be a string of 1 to 64 characters from A-Z a-z 0-9 _ . : -",
    "paused": "paused must be true or false",
    "max_running": integer_rule("max_running", 1, INT4_MAX),
    "rate_limit": integer_rule("rate_limit", 1, INT4_MAX),
    "rate_period": seconds_rule("rate_period", positive=True),
    "retry_policy": "retry_policy must be a JSON object (see docs/worker.md) or null",
    "timeout": seconds_rule("timeout", positive=True),
    "max_attempts": integer_rule("max_attempts", 1, INT4_MAX),
    "priority": RULES["priority"],
    "weight": integer_rule("weight", *WEIGHT_RANGE),
}


class QueueSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """PUT /api/v1/queues/{name}, and what POST /api/v1/queues adds to a name: the
    settings of skiplock/queue_settings.py (added by `queue_model`), each optional: left
    out, unchanged; null, cleared."""

    def settings(self) -> dict[str, Any]:
        """The settings given (null: clear), in their Python form: App.configure_queue's
        keyword arguments; a 422 naming a bad one."""
        given = {
            name: value
            for name in QUEUE_SETTINGS
            if (value := getattr(self, name)) is not msgspec.UNSET
        }
        try:
            return checked_settings(given)
        except ConfigError as exc:
            raise invalid_field(str(exc).split(":", 1)[0], str(exc)) from None


class NamedQueue(QueueSettings, kw_only=True):
    """POST /api/v1/queues: a new queue's name and any of its settings."""

    name: QueueName

    def check(self) -> None:
        check_text("name", self.name, QUEUE_NAME, QUEUE_RULES["name"])


def queue_model(name: str, base: type[QueueSettings]) -> type[QueueSettings]:
    """`base` with every queue setting as an optional field (UNSET when left out), its
    help the schema's description."""
    settings = [
        (
            setting.name,
            Annotated[setting.wire, Meta(description=setting.help)] | None | msgspec.UnsetType,
            msgspec.UNSET,
        )
        for setting in SETTINGS
    ]
    model = msgspec.defstruct(
        name,
        settings,
        bases=(base,),
        kw_only=True,
        module=__name__,
        namespace={"__doc__": base.__doc__},
    )
    return cast(type[QueueSettings], model)


CreateQueue = cast(type[NamedQueue], queue_model("CreateQueue", NamedQueue))
UpdateQueue = queue_model("UpdateQueue", QueueSettings)


# ---- dead letters ---------------------------------------------------------------------

REDRIVE_LIMIT_MAX = 100_000
DEAD_LETTER_RULES = {
    "queue": "queue must be a queue name (or null for any)",
    "task": "task must be a task name (or null for any)",
    "limit": integer_rule("limit", 1, REDRIVE_LIMIT_MAX),
    "older_than": "older_than must be a number of seconds >= 0",
}


class DeadLetterFilter(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which dead letters: those of one queue and/or one task (null: any)."""

    queue: QueueName | None = None
    task: TaskName | None = None

    def check(self) -> None:
        if self.queue is not None:
            check_text("queue", self.queue, QUEUE_NAME, DEAD_LETTER_RULES["queue"])
        if self.task is not None:
            check_text("task", self.task, TASK_NAME, DEAD_LETTER_RULES["task"])


class RedriveDeadLetters(DeadLetterFilter, kw_only=True):
    """POST /api/v1/dead-letters/redrive: up to `limit` (default 10000), oldest first."""

    limit: Annotated[int, Meta(ge=1, le=REDRIVE_LIMIT_MAX)] | None = None


class PurgeDeadLetters(DeadLetterFilter, kw_only=True):
    """POST /api/v1/dead-letters/purge: those that failed over `older_than` seconds ago."""

    older_than: Seconds | None = None


# ---- schedules ------------------------------------------------------------------------

SCHEDULE_RULES = {
    "name": "name must be a string of 1 to 200 characters from A-Z a-z 0-9 _ . : -"
    " (no /: the name is part of the schedule's URL)",
    "cron": "cron must be a 5-field cron expression (minute hour day-of-month month"
    " day-of-week) or one of @hourly @daily @midnight @weekly @monthly @yearly",
    "timezone": "timezone must be an IANA name such as Europe/Paris",
    "enabled": "enabled must be true or false",
    **{name: ENQUEUE_RULES[name] for name in ("task", "args", "queue", "priority")},
    "max_attempts": ENQUEUE_RULES["max_attempts"],
    "allow_unregistered_task": ENQUEUE_RULES["allow_unregistered_task"],
}


class CreateSchedule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /api/v1/schedules: when to enqueue (cron, in timezone) which job."""

    name: Annotated[str, Meta(pattern="^[A-Za-z0-9_.:-]{1,200}$")]
    cron: Annotated[
        str,
        Meta(
            description="5 fields (minute hour day-of-month month day-of-week) or @hourly,"
            " @daily, @midnight, @weekly, @monthly, @yearly."
        ),
    ]
    task: TaskName
    args: JSONObject | None = None
    queue: QueueName | None = None
    priority: Priority | None = None
    timezone: str | None = "UTC"
    max_attempts: Attempts | None = None
    enabled: bool | None = True
    allow_unregistered_task: bool | None = None


SCHEDULE_FIELDS = CreateSchedule.__struct_fields__
SCHEDULE_JOB_FIELDS = ("task", "args", "queue", "priority", "max_attempts")


# ---- login ----------------------------------------------------------------------------

LOGIN_RULES = {
    "username": f"username must be {USER_NAME_RULE}",
    "password": f"password must be {PASSWORD_RULE}",
}


class Login(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /api/v1/login: a user's name and password (`skiplock users create`)."""

    username: Annotated[str, Meta(pattern=f"^{USER_NAME.pattern}$")]
    password: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=MAX_PASSWORD_CHARS,
            description="Checked against its argon2 hash; never stored or logged.",
        ),
    ]

    def check(self) -> None:
        check_text("username", self.username, USER_NAME, LOGIN_RULES["username"])
        problem = password_problem(self.password)
        if problem is not None:
            raise invalid_field("password", problem)


LOGIN_FIELDS = Login.__struct_fields__
