"""skiplock: background jobs on PostgreSQL alone."""

__version__ = "0.1.0"

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
)
from skiplock.jobs import Job
from skiplock.registry import App, Task
from skiplock.retry import RetryPolicy

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
    "Task",
    "UnknownTask",
    "__version__",
]
