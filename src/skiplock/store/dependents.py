"""Jobs that wait on others (sql/functions/060_dependents.sql): settling them, and one
job's links both ways for its page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from skiplock.store.call import Call, dataclass_row, int_array, scalar


def sweep_waiting_jobs(limit: int = 100) -> Call[int]:
    """Settle up to `limit` waiting jobs that still list a dependency which has left the
    hot table (a finish their enqueue did not see); how many it looked at."""
    return Call("SELECT skiplock.sweep_waiting_jobs(%s)", (limit,), scalar)


@dataclass(frozen=True)
class LinkedJob:
    """A job on the other end of a dependency: `depends_on` (this job waits on it) or
    `dependent` (it waits on this job). task, queue and status are None for a job no
    longer stored (pruned or deleted)."""

    side: Literal["depends_on", "dependent"]
    id: int
    task: str | None
    queue: str | None
    status: str | None


def dependency_links(
    job_id: int, depends_on: Sequence[int], *, limit: int = 100
) -> Call[list[LinkedJob]]:
    """The jobs `job_id` depends on (`depends_on`, the job's own list, in its order; one
    no longer stored has task and status None) and up to `limit` jobs that depend on
    it, lowest id first: those still waiting on it (job_dependencies keeps a row only
    until the dependency succeeds) and, when it is a workflow step, the steps that name
    it as a parent (kept for the workflow's life). Every lookup is an index probe:
    job_dependencies' and workflow_steps' keys, each job table's primary key (the ids
    reach all_jobs as `= ANY` arrays: a join to the view would hash its tables)."""
    wanted = list(dict.fromkeys(depends_on))

    def in_order(rows: list[LinkedJob]) -> list[LinkedJob]:
        found = {row.id: row for row in rows if row.side == "depends_on"}
        upstream = [found.get(i, LinkedJob("depends_on", i, None, None, None)) for i in wanted]
        return upstream + [row for row in rows if row.side == "dependent"]

    return Call(
        "SELECT 'depends_on' AS side, j.id, j.task, j.queue, j.status FROM skiplock.all_jobs j"
        " WHERE j.id = ANY (%(depends_on)s::bigint[])"
        " UNION ALL"
        " SELECT 'dependent', j.id, j.task, j.queue, j.status FROM skiplock.all_jobs j"
        " WHERE j.id = ANY (ARRAY("
        "   SELECT d.job_id FROM skiplock.job_dependencies d WHERE d.depends_on = %(id)s"
        "   UNION"
        "   SELECT s.job_id FROM skiplock.workflow_steps me"
        "   JOIN skiplock.workflow_steps s"
        "     ON s.workflow_id = me.workflow_id AND me.name = ANY (s.after)"
        "   WHERE me.job_id = %(id)s"
        "   ORDER BY 1 LIMIT %(limit)s))"
        " ORDER BY 1, 2",
        {"id": job_id, "depends_on": int_array(wanted), "limit": limit},
        in_order,
        dataclass_row(LinkedJob),
    )
