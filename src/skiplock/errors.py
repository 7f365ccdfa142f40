"""The exceptions skiplock raises, one per way a caller can be refused."""

from __future__ import annotations


class SkiplockError(Exception):
    """Base class of every error skiplock raises on purpose."""


class ConfigError(SkiplockError, ValueError):
    """A setting is missing or out of range; the message names the field and the value."""


class SchemaError(SkiplockError):
    """The database schema is missing, modified, or newer than this code knows."""


class JobNotFound(SkiplockError):
    """No job has this id (in the hot table, the history or the dead letters)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class UnknownTask(SkiplockError):
    """A job names a task that this worker's app does not register."""


class JobFailed(SkiplockError):
    """Waiting for a result found the job failed (dead-lettered) or expired."""

    def __init__(self, job_id: int, status: str, error: object) -> None:
        super().__init__(f"job {job_id} {status}: {error}")
        self.job_id = job_id
        self.status = status
        self.error = error


class JobCancelled(SkiplockError):
    """Waiting for a result found the job cancelled."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


class WorkflowNotFound(SkiplockError):
    """No workflow has this id."""

    def __init__(self, workflow_id: int) -> None:
        super().__init__(f"workflow {workflow_id} not found")
        self.workflow_id = workflow_id


class Retry(Exception):
    """Raise from a handler to retry the job after `delay` seconds instead of the policy's."""

    def __init__(self, delay: float, message: str = "retry requested") -> None:
        super().__init__(message)
        self.delay = delay


class Discard(Exception):
    """Raise from a handler to fail the job for good: no further attempts, dead letters."""
