"""The one declaration of the job options (skiplock.options) says what skiplock.enqueue
takes, as pg_proc shows it: the same names in the same order, the same types and
defaults; and the Python form has a field per declared option."""

from __future__ import annotations

import dataclasses
import re

import psycopg

from skiplock.options import NAMES, OPTIONS, JobOptions
from skiplock.store import EnqueueRequest


def enqueue_arguments(conn: psycopg.Connection) -> list[tuple[str, str, str | None]]:
    """(name, type, default or None) per argument of skiplock.enqueue, from pg_proc."""
    (arguments,) = conn.execute(
        "SELECT pg_get_function_arguments('skiplock.enqueue'::regproc)"
    ).fetchone()
    found = []
    # Arguments are split at commas outside quotes (defaults such as '{}').
    for text in re.findall(r"(?:[^,']|'[^']*')+", arguments):
        m = re.fullmatch(r"\s*(\w+) (.+?)(?: DEFAULT (.+))?", text)
        assert m, text
        name, sql_type, default = m.groups()
        if default is not None:
            default = re.sub(r"::[\w\[\] ]+$", "", default)
        found.append((name, sql_type, None if default == "NULL" else default))
    return found


def test_declaration_is_what_skiplock_enqueue_takes(conn: psycopg.Connection) -> None:
    arguments = enqueue_arguments(conn)
    assert [name for name, _, _ in arguments[:2]] == ["task", "args"]
    declared = [(o.name, o.sql_type, o.sql_default) for o in OPTIONS]
    assert arguments[2:] == declared


def test_python_form_and_store_request_have_a_field_per_option_in_order() -> None:
    assert tuple(field.name for field in dataclasses.fields(JobOptions)) == NAMES
    assert EnqueueRequest._fields == ("task", "args_json", *NAMES)


def test_every_option_has_help_and_a_distinct_flag() -> None:
    flags = [option.flag for option in OPTIONS]
    assert len(set(flags)) == len(flags)
    for option in OPTIONS:
        assert option.help.endswith((".", ")")), option.name
        assert option.metavar, option.name


def test_skiplock_enqueue_has_a_flag_per_option() -> None:
    from skiplock.cli.enqueue import enqueue

    flags = {param.name: param.opts for param in enqueue.params}
    for option in OPTIONS:
        assert flags[option.name] == [option.flag], option.name
