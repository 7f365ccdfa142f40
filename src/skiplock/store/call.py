"""A `Call`: one statement and the reading of its rows, run on a sync or an async
connection; with the row factories that read columns by name, the array literals the
batch calls send, and the JSON loaders installed on connections."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import psycopg
from psycopg.rows import BaseRowFactory, RowMaker, tuple_row
from psycopg.types.json import set_json_loads

from skiplock.jobs import Undecodable

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    # psycopg's row factories are typed over it (psycopg.rows imports it the same way)
    from psycopg._cursor_base import BaseCursor

T = TypeVar("T")
N = TypeVar("N", bound=NamedTuple)
R = TypeVar("R")
D = TypeVar("D", bound="DataclassInstance")
Row = tuple[Any, ...]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One statement and how to read its rows; run it on a sync or an async connection.

    `row_factory` (a psycopg row factory) builds each row: by column name where the
    reader names its fields, else a plain tuple. `parse` turns the list of rows into the
    call's result. `prepare=False` plans the statement at every call: one whose filters
    are optional (`x IS NULL OR …`) needs its values to pick its index, which a prepared
    statement's generic plan would not know (None: psycopg's default)."""

    sql: str
    params: Sequence[Any] | Mapping[str, Any]
    parse: Callable[[list[Any]], T]
    row_factory: BaseRowFactory[Any] = tuple_row
    prepare: bool | None = None

    def run(self, conn: psycopg.Connection[Any]) -> T:
        cursor = conn.cursor(row_factory=self.row_factory)
        rows = cursor.execute(self.sql.encode(), self.params, prepare=self.prepare).fetchall()
        return self.parse(rows)

    async def arun(self, conn: psycopg.AsyncConnection[Any]) -> T:
        cursor = conn.cursor(row_factory=self.row_factory)
        await cursor.execute(self.sql.encode(), self.params, prepare=self.prepare)
        return self.parse(await cursor.fetchall())


def scalar(rows: list[Row]) -> Any:
    """The first column of the first row; None without rows."""
    return rows[0][0] if rows else None


def flag(rows: list[Row]) -> bool:
    """The first column of the first row as a bool; False without rows."""
    return bool(rows[0][0]) if rows else False


def column(rows: list[Row]) -> list[Any]:
    """The first column of every row."""
    return [row[0] for row in rows]


def nothing(rows: list[Row]) -> None:
    """For a statement whose rows say nothing."""


def first(rows: list[T]) -> T | None:
    """The first row; None without rows."""
    return rows[0] if rows else None


def checked_row(
    fields: tuple[str, ...], make: Callable[[Sequence[Any]], R], what: str
) -> BaseRowFactory[R]:
    """Rows made by `make` from their values in the order of `fields`, the columns
    matched to the fields by name.

    The names are checked once per statement, against the result's column names; then
    each row is made by position, as fast as from unnamed tuples. A column missing or
    left over raises TypeError naming them."""
    encoded = tuple(name.encode() for name in fields)

    def factory(cursor: BaseCursor[Any, Any]) -> RowMaker[R]:
        # the result's own names: building cursor.description costs ten times more,
        # once per statement (the claim's too)
        result = cursor.pgresult
        names = () if result is None else tuple(map(result.fname, range(result.nfields)))
        if names == encoded:
            return make
        found = tuple((name or b"").decode() for name in names)
        if sorted(found) != sorted(fields):
            missing = sorted(set(fields) - set(found))
            extra = sorted(set(found) - set(fields))
            raise TypeError(
                f"{what} rows need the columns {', '.join(fields)};"
                f" missing: {', '.join(missing) or '-'}, unexpected: {', '.join(extra) or '-'}"
            )
        order = [found.index(name) for name in fields]
        return lambda values: make([values[i] for i in order])

    return factory


def named_tuple_row(cls: type[N]) -> BaseRowFactory[N]:
    """Rows as the NamedTuple `cls`, its fields matched to the columns by name (see
    checked_row): the claim's row factory."""
    return checked_row(cls._fields, cls._make, cls.__name__)


def dataclass_row(cls: type[D]) -> BaseRowFactory[D]:
    """Rows as the dataclass `cls`, its fields matched to the columns by name (see
    checked_row); like psycopg's class_row, without a dict per row."""
    fields = tuple(f.name for f in dataclasses.fields(cls))
    return checked_row(fields, lambda values: cls(*values), cls.__name__)


# The batch calls send their arrays as array literals built here: psycopg's generic list
# dumper cost ~10% of a worker's CPU on no-op jobs; a join costs a fraction of that.
def int_array(values: Sequence[int]) -> str:
    """A PostgreSQL array literal of integers, for a `%s::bigint[]` parameter."""
    return "{" + ",".join(map(str, values)) + "}"


def text_array(values: Sequence[str]) -> str:
    """A PostgreSQL array literal of strings (each quoted), e.g. JSON texts for jsonb[]."""
    quoted = ('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


def load_json(data: str | bytes) -> Any:
    """json.loads with a shortcut for `{}`, the args and meta of most jobs; installed on
    worker connections (see psycopg.types.json.set_json_loads).

    A document Python cannot decode (an integer of more than 4,300 digits, which jsonb
    stores) loads as `Undecodable`: raising here would fail the whole claim statement,
    batch and all, on every try. The worker fails that one job instead."""
    if data == b"{}" or data == "{}":
        return {}
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        return Undecodable(str(exc))


def _int_or_digits(digits: str) -> int | str:
    return int(digits) if len(digits.lstrip("-")) <= 4300 else digits


def load_readable_json(data: str | bytes) -> Any:
    """json.loads for inspection (API, CLI, App.get_job): an integer too long for
    Python's `int()` (jsonb keeps up to 131,072 digits) comes back as its digits in a
    string, so one such job does not make a whole listing fail."""
    try:
        return json.loads(data)
    except ValueError:
        return json.loads(data, parse_int=_int_or_digits)


def show_readable_json(conn: psycopg.Connection[Any]) -> None:
    """Decode this connection's json/jsonb with load_readable_json (a pool's configure)."""
    set_json_loads(load_readable_json, conn)


async def ashow_readable_json(conn: psycopg.AsyncConnection[Any]) -> None:
    """show_readable_json for an async connection."""
    set_json_loads(load_readable_json, conn)
