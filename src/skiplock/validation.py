"""Job args checked against their task's JSON Schema (jsonschema).

A schema is compiled once, when the task is registered (or, in the API, once per
distinct published schema); a task without one costs a single `is None` test. The same
check runs in three places: the producer (App.enqueue), the API (POST /api/v1/jobs,
against the schema the workers published) and the worker, before the handler, for
jobs that reached the table another way (raw SQL, an old producer).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
from jsonschema.protocols import Validator

from skiplock.errors import ConfigError
from skiplock.jobs import encode_json

__all__ = ["InvalidArgs", "SchemaCache", "Validator", "check_args", "compile_schema"]


class InvalidArgs(ConfigError):
    """Job args that fail their task's schema; `path` names the failing spot, e.g.
    `args.to` or `args.items[2]`. Retrying cannot fix it."""

    def __init__(self, task: str, path: str, message: str) -> None:
        super().__init__(f"{path} does not match the schema of task {task}: {message}")
        self.task = task
        self.path = path
        self.message = message


def compile_schema(schema: Mapping[str, Any] | bool, *, what: str) -> Validator:
    """A validator for `schema` (its `$schema` picks the draft; default 2020-12);
    ConfigError naming `what` when the schema itself is not valid JSON Schema."""
    if not isinstance(schema, (Mapping, bool)):
        raise ConfigError(f"{what} must be a JSON Schema (an object or a boolean)")
    document: Any = schema if isinstance(schema, bool) else dict(schema)
    cls = jsonschema.validators.validator_for(document, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(document)
    except jsonschema.exceptions.SchemaError as exc:
        raise ConfigError(f"{what} is not a valid JSON Schema: {exc.message}") from None
    try:
        encode_json(document, what=what)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    validator: Validator = cls(document)
    return validator


def args_path(path: Iterable[Any]) -> str:
    """`args` followed by the JSON path of the failing value: args.to, args.items[2]."""
    text = "args"
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def first_error(
    validator: Validator, args: Any, *, filled_later: Collection[str] = ()
) -> InvalidArgs | None:
    """The most relevant schema violation of `args` (jsonschema's best_match), or None.

    `filled_later` names arguments that are not known yet (a workflow step's
    result_arg/results_arg, filled in with its parents' results when it becomes ready):
    they count as present, whatever their value turns out to be."""
    if filled_later and isinstance(args, dict):
        args = {**args, **dict.fromkeys(filled_later)}
    errors = (
        error
        for error in validator.iter_errors(args)
        if not (error.absolute_path and error.absolute_path[0] in filled_later)
    )
    error = jsonschema.exceptions.best_match(errors)
    if error is None:
        return None
    return InvalidArgs("", args_path(error.absolute_path), error.message)


def check_args(task: str, validator: Validator | None, args: Any) -> None:
    """Raise InvalidArgs when `args` fail `validator`; nothing to do without one."""
    if validator is None:
        return
    error = first_error(validator, args)
    if error is not None:
        raise InvalidArgs(task, error.path, error.message)


def rejected_args(task: Any, args: Any) -> str | None:
    """For the worker, before the handler: None when the task has no schema or the args
    pass it; otherwise the error JSON for fail_jobs, with `"retry": false` so the job
    goes straight to the dead letters (running it again cannot fix its args)."""
    validator: Validator | None = task.validator
    if validator is None:
        return None
    error = first_error(validator, args)
    if error is None:
        return None
    invalid = InvalidArgs(task.name, error.path, error.message)
    return encode_json(
        {
            "error": f"InvalidArgs: {invalid}",
            "type": "InvalidArgs",
            "path": invalid.path,
            "retry": False,
        },
        what="error",
    )


class SchemaCache:
    """Compiled validators of published schemas, keyed by the schema's JSON text, so the
    API compiles each distinct schema once (bounded: cleared when full)."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self._validators: dict[str, Validator] = {}

    def validator(self, task: str, schema: Any) -> Validator:
        key = json.dumps(schema, sort_keys=True)
        found = self._validators.get(key)
        if found is None:
            if len(self._validators) >= self.size:
                self._validators.clear()
            found = compile_schema(schema, what=f"the schema of task {task}")
            self._validators[key] = found
        return found
