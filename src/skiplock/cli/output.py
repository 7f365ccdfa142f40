"""How commands print: JSON, aligned tables, local times, one field's text."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import click


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(v) for v in row] for row in [headers, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def print_rows(
    rows: Sequence[Mapping[str, Any]],
    *,
    as_json: bool,
    empty: str,
    headers: Sequence[str],
    row: Callable[[Mapping[str, Any]], Sequence[Any]],
) -> None:
    """A list command's output: the rows as JSON, else `empty` or a table of `row(r)`."""
    if as_json:
        print_json(rows)
    elif not rows:
        click.echo(empty)
    else:
        click.echo(table(headers, [row(r) for r in rows]))


def when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else ""


def field_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
