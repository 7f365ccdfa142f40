"""`skiplock workflows`: enqueue, list, show, cancel, retry and prune workflows."""

from __future__ import annotations

import json
from typing import IO

import click

from skiplock import store
from skiplock.app import App
from skiplock.cli.output import print_json, table, when
from skiplock.cli.root import SECONDS_MAX, CliError, Settings, connect, main, pass_settings
from skiplock.jobs import FINISHED as FINISHED_STATUSES


@main.group()
def workflows() -> None:
    """Enqueue, list, show, cancel, retry and prune workflows. A workflow is a graph of
    jobs followed as one unit."""


@workflows.command("enqueue")
@click.argument("document", type=click.File("r"), metavar="FILE")
@click.option("--json", "as_json", is_flag=True, help='Print {"id", "jobs"}.')
@pass_settings
def enqueue_workflow(settings: Settings, document: IO[str], as_json: bool) -> None:
    """Enqueue the workflow described in FILE (JSON; `-` reads stdin), in one
    transaction, and print its id. The document is skiplock.enqueue_workflow's:
    {"name", "meta", "steps": [{"name", "task", "args", "after", "result_arg", ...}]}."""
    text = document.read()
    try:
        json.loads(text)
    except ValueError as exc:
        raise CliError(f"{document.name} is not valid JSON: {exc}") from None
    with connect(settings.dsn()) as conn:
        workflow_id = store.enqueue_workflow(text).run(conn)
        jobs = store.workflow_job_ids(workflow_id).run(conn)
    if as_json:
        print_json({"id": workflow_id, "jobs": jobs})
    else:
        click.echo(workflow_id)


WORKFLOW_HEADERS = ("ID", "NAME", "STATE", "STEPS", "DONE", "CREATED", "FINISHED")


@workflows.command("list")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def list_workflows(settings: Settings, limit: int, as_json: bool) -> None:
    """Newest workflows first, with their state and how many steps have finished. With
    --json, a meta longer than 1,000 bytes of JSON is null, with its size and a preview
    under "truncated"."""
    with connect(settings.dsn()) as conn:
        found = store.list_workflow_summaries(limit=limit).run(conn)
    if as_json:
        print_json(found)
    elif not found:
        click.echo("no workflows")
    else:
        rows = [
            (
                w["id"],
                w["name"] or "",
                w["state"],
                w["steps"],
                sum(w[status] for status in FINISHED_STATUSES),
                when(w["created_at"]),
                when(w["finished_at"]),
            )
            for w in found
        ]
        click.echo(table(WORKFLOW_HEADERS, rows))


@workflows.command("prune")
@click.option(
    "--older-than",
    type=click.FloatRange(min=0, max=SECONDS_MAX),
    required=True,
    metavar="SECONDS",
    help="Created at least this long ago.",
)
@pass_settings
def prune_workflows(settings: Settings, older_than: float) -> None:
    """Forget finished workflows (their jobs' history and dead letters stay)."""
    app = App(settings.dsn())
    with connect(app.dsn) as conn:
        deleted = app.prune_workflows(older_than, conn=conn)
    click.echo(f"{deleted} workflow{'s' if deleted != 1 else ''} pruned")


@workflows.command("cancel")
@click.argument("workflow_id", type=int)
@pass_settings
def cancel_workflow(settings: Settings, workflow_id: int) -> None:
    """Cancel every unfinished step; running ones are asked to stop."""
    app = App(settings.dsn())
    with connect(app.dsn) as conn:
        count = app.cancel_workflow(workflow_id, conn=conn)
    if count == 0:
        click.echo(f"workflow {workflow_id} has already finished; nothing to cancel")
    else:
        done = f"{_steps(count)} cancelled (running ones are told to stop)"
        click.echo(f"workflow {workflow_id}: {done}")


@workflows.command("retry")
@click.argument("workflow_id", type=int)
@pass_settings
def retry_workflow(settings: Settings, workflow_id: int) -> None:
    """Run the steps of a finished workflow that did not succeed again, in graph order."""
    app = App(settings.dsn())
    with connect(app.dsn) as conn:
        count = app.retry_workflow(workflow_id, conn=conn)
    if count == 0:
        click.echo(f"workflow {workflow_id} has no step to retry")
    else:
        click.echo(f"workflow {workflow_id}: {_steps(count)} retried")


def _steps(count: int) -> str:
    return f"{count} step{'s' if count != 1 else ''}"


STEP_HEADERS = ("STEP", "JOB", "TASK", "QUEUE", "STATUS", "AFTER", "ATTEMPT", "FINISHED", "ERROR")


@workflows.command("show")
@click.argument("workflow_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_settings
def show_workflow(settings: Settings, workflow_id: int, as_json: bool) -> None:
    """A workflow's state, its counts by status and a table of its steps."""
    app = App(settings.dsn())
    with connect(app.dsn) as conn:
        workflow = app.get_workflow(workflow_id, conn=conn)
    if as_json:
        print_json(workflow.to_json())
        return
    counts = ", ".join(
        f"{n} {status}" for status, n in workflow.counts.items() if n and status != "steps"
    )
    click.echo(
        f"workflow {workflow.id}{' ' + workflow.name if workflow.name else ''}: {workflow.state}"
    )
    click.echo(f"steps: {workflow.counts['steps']} ({counts})")
    click.echo(f"created: {when(workflow.created_at)}  finished: {when(workflow.finished_at)}")
    rows = [
        (
            s.step,
            s.job_id,
            s.task or "",
            s.queue or "",
            s.status or "(pruned)",
            ",".join(s.after),
            f"{s.attempt}/{s.max_attempts}" if s.attempt is not None else "",
            when(s.finished_at),
            (s.last_error or "")[:60],
        )
        for s in workflow.steps
    ]
    click.echo(table(STEP_HEADERS, rows))
