"""Reading and admin calls of an App: jobs and workflows by id, cancel and retry, queue
settings, and waiting for an outcome. Each is one call of the SQL API."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, TypeVar

import psycopg
import psycopg.errors

from skiplock import store
from skiplock.database import Database
from skiplock.errors import JobCancelled, JobFailed, JobNotFound, WorkflowNotFound
from skiplock.jobs import Job
from skiplock.queue_settings import checked_settings
from skiplock.retry import RetryPolicy
from skiplock.tasks import duration
from skiplock.waiter import run_blocking, wait_until_finished
from skiplock.workflows import Workflow

T = TypeVar("T")
# Workflows deleted per statement by prune_workflows.
PRUNE_BATCH = 1000
# Log lines read per statement by get_job_logs (store.job_logs' default limit).
LOG_PAGE = 1000


class AdminCalls(Database):
    """The calls an App makes about jobs and workflows that already exist."""

    # ---- jobs ---------------------------------------------------------------------------

    def get_job(self, job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> Job:
        """The job with its status, and `task_published`: whether any worker has published
        its task (False: it waits for one that serves it); JobNotFound when no job has
        this id."""
        return _found(job_id, self.run(store.get_job(job_id), conn))

    async def get_job_async(
        self, job_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> Job:
        return _found(job_id, await self.arun(store.get_job(job_id), conn))

    def get_job_logs(
        self,
        job_id: int,
        attempt: int | None = None,
        *,
        conn: psycopg.Connection[Any] | None = None,
    ) -> list[store.JobLogLine]:
        """The job's stored log, oldest line first: every attempt's, or `attempt`'s only
        (see skiplock.job_logs); JobNotFound when no job has this id."""
        lines: list[store.JobLogLine] = []
        while True:
            after = lines[-1].seq if lines else 0
            page = self.run(store.job_logs(job_id, attempt=attempt, after=after), conn)
            lines += page
            if len(page) < LOG_PAGE:
                break
        if not lines:
            _found(job_id, self.run(store.get_job(job_id), conn))
        return lines

    def cancel_job(self, job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> str:
        """Cancel a job; returns its status after the call (see skiplock.cancel_job)."""
        return _found(job_id, self.run(store.cancel_job(job_id), conn))

    async def cancel_job_async(
        self, job_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> str:
        return _found(job_id, await self.arun(store.cancel_job(job_id), conn))

    def retry_job(self, job_id: int, *, conn: psycopg.Connection[Any] | None = None) -> str:
        """Run a failed, finished or waiting job again now (see skiplock.retry_job)."""
        return _found(job_id, self.run(store.retry_job(job_id), conn))

    async def retry_job_async(
        self, job_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> str:
        return _found(job_id, await self.arun(store.retry_job(job_id), conn))

    def wait_for_result(self, job_id: int, *, timeout: float | None = None) -> Any:
        """Block until the job finishes and return its result.

        Listens on skiplock_finished (no busy poll; a slow re-check every few seconds
        covers a lost notification; with nowhere to LISTEN, see `listen_dsn`, a re-check
        every second). Raises JobFailed (failed or expired), JobCancelled,
        JobNotFound, or TimeoutError after `timeout` seconds.
        """
        return run_blocking(self.wait_for_result_async(job_id, timeout=timeout))

    async def wait_for_result_async(self, job_id: int, *, timeout: float | None = None) -> Any:
        async def read(conn: psycopg.AsyncConnection[Any]) -> Job:
            return _found(job_id, await store.get_job(job_id).arun(conn))

        job = await wait_until_finished(
            self,
            read,
            lambda job: job.finished,
            lambda job: (job.id,),
            timeout=timeout,
            what=f"job {job_id}",
        )
        return _result(job)

    # ---- queues -------------------------------------------------------------------------

    def configure_queue(
        self, queue: str, *, conn: psycopg.Connection[Any] | None = None, **settings: Any
    ) -> None:
        """Change the settings of `queue` given as keywords and keep the others; None
        clears one (priority and weight go back to 0 and 1, paused to False). The
        settings are those of skiplock.queue_settings: paused, max_running, rate_limit
        with rate_period, retry_policy, timeout, max_attempts, priority, weight.
        ConfigError names a bad one, and nothing is changed. Creates the queue if needed.
        See skiplock.configure_queue."""
        self.run(store.configure_queue(queue, _checked(settings)), conn)

    def set_queue_limits(
        self,
        queue: str,
        *,
        max_running: int | None = None,
        rate_limit: int | None = None,
        rate_period: timedelta | float | str | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> None:
        """Cap `queue` across all workers: at most `max_running` jobs at once and
        `rate_limit` starts per `rate_period`; None removes a limit. ConfigError names a
        bad value. See skiplock.set_queue_limits."""
        limits = _checked(
            {"max_running": max_running, "rate_limit": rate_limit, "rate_period": rate_period}
        )
        self.run(store.set_queue_limits(queue, **limits), conn)

    def set_queue_defaults(
        self,
        queue: str,
        *,
        retry_policy: RetryPolicy | None = None,
        timeout: timedelta | float | str | None = None,
        max_attempts: int | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> None:
        """Give `queue`'s jobs that set no retry policy, timeout or max_attempts of their
        own (neither in enqueue nor in their task) these; None clears one. The retry
        policy and timeout apply to jobs already waiting too, max_attempts to jobs
        enqueued from now on. ConfigError names a bad value. See
        skiplock.set_queue_defaults."""
        defaults = _checked(
            {"retry_policy": retry_policy, "timeout": timeout, "max_attempts": max_attempts}
        )
        self.run(store.set_queue_defaults(queue, **defaults), conn)

    def set_queue_order(
        self,
        queue: str,
        *,
        priority: int | str = 0,
        weight: int = 1,
        conn: psycopg.Connection[Any] | None = None,
    ) -> None:
        """Place `queue` among the queues a worker serves: the work of a higher
        `priority` (-100..100, or low, normal, high, critical) queue is taken first, and
        queues of the same priority are claimed in proportion to their `weight`
        (1..1000). ConfigError names a bad value. See skiplock.set_queue_order."""
        order = _checked({"priority": priority, "weight": weight})
        self.run(store.set_queue_order(queue, **order), conn)

    # ---- workflows ----------------------------------------------------------------------

    def get_workflow(
        self, workflow_id: int, *, conn: psycopg.Connection[Any] | None = None
    ) -> Workflow:
        """The workflow's state, counts and steps; WorkflowNotFound for an unknown id."""
        if conn is not None:
            return _read_workflow(conn, workflow_id)
        with self._sync_pool().connection() as pooled:
            return _read_workflow(pooled, workflow_id)

    def wait_for_workflow(self, workflow_id: int, *, timeout: float | None = None) -> Workflow:
        """Block until every step of the workflow has finished and return it (check
        `state`: succeeded, failed or cancelled; `results` maps steps to results).

        Listens on skiplock_finished like wait_for_result; TimeoutError after `timeout`
        seconds, WorkflowNotFound for an unknown id.
        """
        return run_blocking(self.wait_for_workflow_async(workflow_id, timeout=timeout))

    async def wait_for_workflow_async(
        self, workflow_id: int, *, timeout: float | None = None
    ) -> Workflow:
        return await wait_until_finished(
            self,
            lambda conn: _read_workflow_async(conn, workflow_id),
            lambda workflow: workflow.finished,
            lambda workflow: [step.job_id for step in workflow.steps],
            timeout=timeout,
            what=f"workflow {workflow_id}",
        )

    def cancel_workflow(
        self, workflow_id: int, *, conn: psycopg.Connection[Any] | None = None
    ) -> int:
        """Cancel every unfinished step: those not yet running at once, running ones
        through their workers' cancellation signal (they end cancelled unless they finish
        first). Returns how many steps it cancelled or asked to stop, 0 when the workflow
        had already finished; WorkflowNotFound for an unknown id. See
        skiplock.cancel_workflow."""
        with _workflow_known(workflow_id):
            return self.run(store.cancel_workflow(workflow_id), conn)

    async def cancel_workflow_async(
        self, workflow_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> int:
        with _workflow_known(workflow_id):
            return await self.arun(store.cancel_workflow(workflow_id), conn)

    def retry_workflow(
        self, workflow_id: int, *, conn: psycopg.Connection[Any] | None = None
    ) -> int:
        """Run again the steps of a finished workflow that did not succeed (failed,
        cancelled, expired), each waiting for its parents and receiving their results as
        on the first run; steps that succeeded keep their results. Returns how many steps
        it retried (0: none needed it). WorkflowNotFound for an unknown id;
        psycopg.errors.ObjectNotInPrerequisiteState while a step has not finished. Like
        any job, a retried step can run more than once. See skiplock.retry_workflow."""
        with _workflow_known(workflow_id):
            return self.run(store.retry_workflow(workflow_id), conn)

    async def retry_workflow_async(
        self, workflow_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> int:
        with _workflow_known(workflow_id):
            return await self.arun(store.retry_workflow(workflow_id), conn)

    def prune_workflows(
        self, older_than: timedelta | float, *, conn: psycopg.Connection[Any] | None = None
    ) -> int:
        """Forget workflows created more than `older_than` ago whose steps have all
        finished (their jobs' records stay); returns how many. See skiplock.prune_workflows."""
        period = duration(older_than, "older_than")
        assert period is not None
        deleted = 0
        while True:  # bounded batches, one short statement each
            batch: int = self.run(store.prune_workflows(period, PRUNE_BATCH), conn)
            deleted += batch
            if batch < PRUNE_BATCH:
                return deleted


def _read_workflow(conn: psycopg.Connection[Any], workflow_id: int) -> Workflow:
    summary = store.get_workflow_summary(workflow_id).run(conn)
    if summary is None:
        raise WorkflowNotFound(workflow_id)
    return Workflow.from_rows(summary, store.list_workflow_steps(workflow_id).run(conn))


async def _read_workflow_async(conn: psycopg.AsyncConnection[Any], workflow_id: int) -> Workflow:
    summary = await store.get_workflow_summary(workflow_id).arun(conn)
    if summary is None:
        raise WorkflowNotFound(workflow_id)
    return Workflow.from_rows(summary, await store.list_workflow_steps(workflow_id).arun(conn))


@contextlib.contextmanager
def _workflow_known(workflow_id: int) -> Iterator[None]:
    """skiplock's own exception for the SQL functions' "workflow N not found"."""
    try:
        yield
    except psycopg.errors.NoDataFound:
        raise WorkflowNotFound(workflow_id) from None


def _checked(settings: dict[str, Any]) -> dict[str, Any]:
    """Queue settings checked by their declaration; a RetryPolicy as its JSON object."""
    policy = settings.get("retry_policy")
    if isinstance(policy, RetryPolicy):
        settings = {**settings, "retry_policy": policy.to_json()}
    return checked_settings(settings)


def _found(job_id: int, value: T | None) -> T:
    if value is None:
        raise JobNotFound(job_id)
    return value


def _result(job: Job) -> Any:
    if job.status == "succeeded":
        return job.result
    if job.status == "cancelled":
        raise JobCancelled(job.id)
    raise JobFailed(job.id, job.status, (job.last_error or {}).get("error"))
