"""skiplock: background jobs on PostgreSQL alone."""

from skiplock.app import App
from skiplock.context import JobContext
from skiplock.errors import (
    ConfigError,
    Discard,
    JobCancelled,
    JobFailed,
    JobNotFound,
    Retry,
    SchemaError,
    SkiplockError,
    UnknownTask,
    WorkflowNotFound,
)
from skiplock.jobs import Job
from skiplock.retry import RetryPolicy
from skiplock.tasks import Task
from skiplock.version import __version__
from skiplock.workflows import Step, Workflow, chain, group

__all__ = [
    "App",
    "ConfigError",
    "Discard",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobNotFound",
    "Retry",
    "RetryPolicy",
    "SchemaError",
    "SkiplockError",
    "Step",
    "Task",
    "UnknownTask",
    "Workflow",
    "WorkflowNotFound",
    "__version__",
    "chain",
    "group",
]
