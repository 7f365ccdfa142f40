"""`skiplock jobs`: list, show, cancel, retry and delete jobs, and print their logs."""

from __future__ import annotations

import json
import time
from typing import Any

import click
import psycopg

from skiplock import store
from skiplock.app import App
from skiplock.cli.output import field_text, print_json, table, when
from skiplock.cli.root import CliError, Settings, connect, main, pass_settings
from skiplock.job_search import containment
from skiplock.jobs import STATUSES, Job, json_field
from skiplock.store import JobFilter


@main.group()
def jobs() -> None:
    """List, show, cancel, retry and delete jobs; print their logs."""


@jobs.command("list")
@click.option("--status", type=click.Choice(STATUSES), default=None)
@click.option("--queue", default=None)
@click.option("--task", default=None)
@click.option("--tag", default=None, help="Only jobs carrying this tag.")
@click.option(
    "--args",
    "args_search",
    default=None,
    metavar="SEARCH",
    help="Only jobs whose args contain this: key=value pairs or a JSON object.",
)
@click.option(
    "--meta", "meta_search", default=None, metavar="SEARCH", help="The same, in the meta."
)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def list_jobs(
    settings: Settings,
    status: str | None,
    queue: str | None,
    task: str | None,
    tag: str | None,
    args_search: str | None,
    meta_search: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Newest jobs first. With --json, a value longer than 1,000 bytes of JSON is null,
    with its size and a preview under "truncated"; `jobs show ID --json` has it whole.
    --args user_id=42 (or '{"user_id": 42}') lists the jobs whose args contain it."""
    try:
        args = None if args_search is None else containment(args_search, "--args")
        meta = None if meta_search is None else containment(meta_search, "--meta")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    filters = JobFilter(
        statuses=(status,) if status else (),
        queue=queue,
        task=task,
        tag=tag,
        args=args,
        meta=meta,
    )
    with connect(settings.dsn()) as conn:
        found = store.list_job_previews(filters, limit=limit).run(conn)
    if as_json:
        print_json([{name: json_field(value) for name, value in job.items()} for job in found])
    elif not found:
        click.echo("no jobs")
    else:
        click.echo(table(JOB_HEADERS, [job_row(job) for job in found]))


JOB_HEADERS = ("ID", "TASK", "QUEUE", "STATUS", "ATTEMPT", "CREATED", "FINISHED")


def job_row(job: dict[str, Any]) -> tuple[Any, ...]:
    return (
        job["id"],
        job["task"],
        job["queue"],
        job["status"],
        f"{job['attempt']}/{job['max_attempts']}",
        when(job["created_at"]),
        when(job["finished_at"]),
    )


@jobs.command("show")
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def show_job(settings: Settings, job_id: int, as_json: bool) -> None:
    """Every field of one job, and its last error; says so when no worker has published
    its task (--json: "task_published")."""
    app = App(settings.dsn())
    with connect(app.dsn) as conn:
        job = app.get_job(job_id, conn=conn)
    if as_json:
        print_json(job.to_json())
    else:
        click.echo(describe_job(job))


UNPUBLISHED = "no worker has published this task; it waits (no attempts spent) until one does"


def describe_job(job: Job) -> str:
    fields = job.to_json()
    errors = fields.pop("errors")
    fields.pop("last_error")
    fields["attempt"] = f"{job.attempt}/{fields.pop('max_attempts')}"
    # why a job that looks scheduled or retrying does not run: no worker serves its task
    if fields.pop("task_published") is False and not job.finished:
        fields["task"] = f"{job.task} — {UNPUBLISHED}"
    lines = [f"{name + ':':<21}{field_text(value)}" for name, value in fields.items()]
    lines.append(f"{'errors:':<21}{len(errors)}")
    if job.last_error:
        error = job.last_error
        lines.append(f"last error (attempt {error.get('attempt', '?')}): {error.get('error')}")
        lines.extend("  " + line for line in str(error.get("traceback", "")).splitlines())
    return "\n".join(lines)


@jobs.command("cancel")
@click.argument("job_id", type=int)
@pass_settings
def cancel_job(settings: Settings, job_id: int) -> None:
    """Cancel a job; a running one is asked to stop."""
    app = App(settings.dsn())
    with connect(app.dsn) as conn:
        status = app.cancel_job(job_id, conn=conn)
    if status == "running":
        click.echo(f"job {job_id} is running: cancellation requested")
    elif status == "cancelled":
        click.echo(f"job {job_id} cancelled")
    else:
        raise CliError(f"job {job_id} already {status}")


@jobs.command("retry")
@click.argument("job_id", type=int)
@pass_settings
def retry_job(settings: Settings, job_id: int) -> None:
    """Run a failed or finished job again, or a waiting one now."""
    app = App(settings.dsn())
    with connect(app.dsn) as conn:
        status = app.retry_job(job_id, conn=conn)
    click.echo(f"job {job_id} {status}")


@jobs.command("delete")
@click.argument("job_id", type=int)
@pass_settings
def delete_job(settings: Settings, job_id: int) -> None:
    """Delete a finished job for good (from the history or the dead letters); one that
    has not finished is refused: cancel it first. Totals since install stay."""
    with connect(settings.dsn()) as conn:
        status = store.delete_job(job_id).run(conn)
    if status is None:
        raise CliError(f"job {job_id} not found")
    click.echo(f"job {job_id} deleted (it had {status})")


# Lines read per statement; a full page is followed at once by the next.
LOG_PAGE = 1000


@jobs.command("logs")
@click.argument("job_id", type=int)
@click.option("--attempt", type=click.IntRange(1), default=None, help="Only this attempt.")
@click.option(
    "--follow",
    "-f",
    is_flag=True,
    help="Print new lines as they are stored, until the job has finished (Ctrl-C to stop).",
)
@click.option(
    "--interval",
    type=click.FloatRange(0.05, 60),
    default=0.5,
    show_default=True,
    help="Seconds between two looks for new lines with --follow.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_settings
def job_logs(
    settings: Settings,
    job_id: int,
    attempt: int | None,
    follow: bool,
    interval: float,
    as_json: bool,
) -> None:
    """What the job's handler logged, oldest line first: `time level logger: message`,
    a `--- attempt N ---` line where another attempt begins."""
    with connect(settings.dsn()) as conn:
        try:
            _print_logs(conn, job_id, attempt, follow, interval, as_json)
        except KeyboardInterrupt:
            pass  # Ctrl-C ends --follow: what was stored so far is printed


def _print_logs(
    conn: psycopg.Connection[Any],
    job_id: int,
    attempt: int | None,
    follow: bool,
    interval: float,
    as_json: bool,
) -> None:
    after, shown_attempt = 0, None
    while True:
        job = store.get_job(job_id).run(conn)
        if job is None:
            raise CliError(f"job {job_id} not found")
        # Read after the status: a finished job's lines were stored before it finished,
        # so once the pages below are drained, nothing is left to wait for.
        while True:
            page = store.job_logs(job_id, attempt=attempt, after=after, limit=LOG_PAGE).run(conn)
            for line in page:
                if as_json:
                    click.echo(json.dumps(line.to_json()))
                    continue
                if shown_attempt is not None and line.attempt != shown_attempt:
                    click.echo(f"--- attempt {line.attempt} ---")
                shown_attempt = line.attempt
                click.echo(log_line(line))
            if page:
                after = page[-1].seq
            if len(page) < LOG_PAGE:
                break
        if not follow or job.finished:
            return
        time.sleep(interval)


def log_line(line: store.JobLogLine) -> str:
    at = line.at.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return f"{at} {line.level} {line.logger}: {line.message}"
