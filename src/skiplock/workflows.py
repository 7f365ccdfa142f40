"""Workflows: jobs enqueued together as one graph, in one call and one transaction.

A `Step` is one job of the graph: a task, its args and enqueue options, the steps it
comes `after`, and whether it receives its parents' results (`result_arg`: the one
parent's result; `results_arg`: the list of all parents' results, in `after` order).
`chain` and `group` build the two common shapes; App.workflow / App.chain / App.group
enqueue them through skiplock.enqueue_workflow, where the graph is checked and written.

Results are written into a step's args as it becomes ready, so handlers receive them
as ordinary keyword arguments. Like every job, a step can run more than once.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from skiplock.errors import ConfigError

STEP_FIELDS = ("name", "after", "result_arg", "results_arg", "on_dependency_failure")


class Step:
    """One job of a workflow: `Step("etl.load", {"day": "2024-05-01"}, after=["extract"])`.

    `options` are App.enqueue's (queue, priority, delay, max_attempts, retry_policy, timeout,
    tags, meta, run_at, expires_at, expires_in); unset ones take the task's defaults.
    `on_dependency_failure` says what the step does when a parent does not succeed:
    "fail" (default), "cancel" or "run". Without a `name`, chain/group/workflow name the
    step after its task.
    """

    def __init__(
        self,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        after: Sequence[str] = (),
        result_arg: str | None = None,
        results_arg: str | None = None,
        on_dependency_failure: str | None = None,
        **options: Any,
    ) -> None:
        if isinstance(after, str):
            raise ConfigError(f"after must be a list of step names, got {after!r}")
        for option in ("unique_key", "depends_on"):
            if option in options:
                raise ConfigError(f"a workflow step does not take {option}; use after")
        if options.get("callback_url") is not None:
            raise ConfigError("a workflow step does not take callback_url (webhooks are per job)")
        self.task = task
        self.args = dict(args or {})
        self.name = name
        self.after = tuple(after)
        self.result_arg = result_arg
        self.results_arg = results_arg
        self.on_dependency_failure = on_dependency_failure
        self.options = options

    def __repr__(self) -> str:
        return f"Step({self.task!r}, name={self.name!r}, after={list(self.after)!r})"

    def but(self, **changes: Any) -> Step:
        """A copy with some of name, after, result_arg, results_arg changed."""
        fields = {k: getattr(self, k) for k in STEP_FIELDS}
        fields.update(changes)
        return Step(self.task, self.args, **fields, **self.options)


def named(steps: Sequence[Step]) -> list[Step]:
    """The steps, each with a name: its own, or its task's (`task`, `task-2`, ...)."""
    taken = {s.name for s in steps if s.name}
    out = []
    for step in steps:
        if step.name is None:
            name, n = step.task, 1
            while name in taken:
                n += 1
                name = f"{step.task}-{n}"
            taken.add(name)
            step = step.but(name=name)
        out.append(step)
    return out


def chain(*steps: Step, result_arg: str | None = "previous") -> list[Step]:
    """a → b → c: each step runs after the one before and, unless `result_arg` is None,
    receives its result as the keyword argument `result_arg` (a step's own result_arg
    wins)."""
    if not steps:
        raise ConfigError("a chain needs at least one step")
    linked = named(steps)
    out = [linked[0]]
    for previous, step in itertools.pairwise(linked):
        if step.after:
            raise ConfigError(f"step {step.name!r} of a chain has after; the chain sets it")
        out.append(
            step.but(
                after=[previous.name],
                result_arg=step.result_arg or (None if step.results_arg else result_arg),
            )
        )
    return out


def group(*steps: Step, then: Step | None = None, results_arg: str = "results") -> list[Step]:
    """Run `steps` in parallel; then, when all have succeeded, the callback `then` with
    the list of their results (in the order given) as the keyword argument `results_arg`
    (a callback's own results_arg or result_arg wins)."""
    if not steps:
        raise ConfigError("a group needs at least one step")
    members = named([*steps, *([then] if then else [])])
    if then is None:
        return members
    *parallel, callback = members
    if callback.after:
        raise ConfigError(f"the callback {callback.name!r} of a group has after; the group sets it")
    own = callback.results_arg or callback.result_arg
    return [
        *parallel,
        callback.but(
            after=[s.name for s in parallel],
            results_arg=None if callback.result_arg else (own or results_arg),
        ),
    ]


@dataclass(frozen=True)
class WorkflowStep:
    """One step of a workflow as the workflow_jobs view shows it."""

    step: str
    job_id: int
    after: list[str]
    task: str | None
    queue: str | None
    status: str | None  # None once the step's job was pruned from the history
    attempt: int | None
    max_attempts: int | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    result: Any
    last_error: str | None
    # What a listing of steps left out for its size, as store.list_workflow_step_previews
    # says ({} when nothing, and always from App.get_workflow, which reads them whole).
    truncated: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in vars(self).items()}


@dataclass(frozen=True)
class Workflow:
    """How a workflow is doing: `state` (running, succeeded, failed, cancelled), counts
    of its steps by status, and the steps themselves."""

    id: int
    name: str | None
    meta: dict[str, Any]
    created_at: datetime
    state: str
    counts: dict[str, int]
    finished_at: datetime | None
    steps: list[WorkflowStep] = field(default_factory=list)

    @classmethod
    def from_rows(cls, summary: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> Workflow:
        counts = {
            k: v
            for k, v in summary.items()
            if k not in ("id", "name", "meta", "created_at", "state", "finished_at")
        }
        return cls(
            id=summary["id"],
            name=summary["name"],
            meta=summary["meta"],
            created_at=summary["created_at"],
            state=summary["state"],
            counts=counts,
            finished_at=summary["finished_at"],
            steps=[WorkflowStep(**row) for row in steps],
        )

    @property
    def finished(self) -> bool:
        return self.state != "running"

    @property
    def results(self) -> dict[str, Any]:
        """{step name: result} of the steps that succeeded."""
        return {s.step: s.result for s in self.steps if s.status == "succeeded"}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "meta": self.meta,
            "created_at": self.created_at.isoformat(),
            "state": self.state,
            "counts": self.counts,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "steps": [s.to_json() for s in self.steps],
        }


def document(
    steps: Sequence[tuple[Step, str]], *, name: str | None, meta: Mapping[str, Any] | None
) -> str:
    """The JSON document skiplock.enqueue_workflow takes, from named steps and each one's
    enqueue options already encoded as enqueue_many's JSON object (with task defaults)."""
    encoded = []
    for step, options_json in steps:
        item = json.loads(options_json)
        item["name"] = step.name
        if step.after:
            item["after"] = list(step.after)
        for key in ("result_arg", "results_arg", "on_dependency_failure"):
            if getattr(step, key) is not None:
                item[key] = getattr(step, key)
        encoded.append(item)
    body: dict[str, Any] = {"steps": encoded}
    if name is not None:
        body["name"] = name
    if meta is not None:
        body["meta"] = dict(meta)
    return json.dumps(body, allow_nan=False)
