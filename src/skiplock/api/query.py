"""Query-string parameters: parsed strictly, each error a 422 naming the parameter.

Also the opaque page cursors: base64url of a small JSON document. Opaque to clients (they
pass `next_cursor` back as it is), checked on the way in, never trusted as SQL.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any, TypeVar

from starlette.requests import Request

from skiplock.api.problems import Problem
from skiplock.api.routing import Param

Row = TypeVar("Row")

LIMIT_DEFAULT = 50
LIMIT_MAX = 500


def unknown_parameter(name: str, allowed: Collection[str]) -> Problem:
    return Problem(
        422,
        "unknown parameter",
        f"unknown query parameter {name!r}; expected some of {', '.join(sorted(allowed))}",
        field=name,
    )


def invalid_parameter(name: str, detail: str) -> Problem:
    return Problem(422, "invalid parameter", detail, field=name)


# The only shapes a number may take in a query string: ASCII digits, an optional minus,
# nothing around them. int() and float() read far more (" 5", "+5", "1_000", "1e3", "٣",
# "nan") and raise on some of what a looser check lets through ("--5").
INTEGER = re.compile(r"-?[0-9]{1,19}")
NUMBER = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,15})?")
BIGINT_RANGE = (-(2**63), 2**63 - 1)


def parse_integer(text: str) -> int | None:
    """A plain decimal integer that fits a bigint, or None."""
    if not INTEGER.fullmatch(text):
        return None
    value = int(text)
    return value if BIGINT_RANGE[0] <= value <= BIGINT_RANGE[1] else None


def parse_number(text: str) -> float | None:
    """A plain decimal number (digits, an optional fraction), or None."""
    return float(text) if NUMBER.fullmatch(text) else None


class Query:
    """The query string of one request, with only the `declared` parameters (those its
    Operation lists) and each at most once.

    Every typed read goes through the parse_* functions of this module: a value that is
    not exactly one of its type is a 422 naming the parameter, never an exception.
    """

    def __init__(self, request: Request, declared: Sequence[Param]) -> None:
        allowed = [param.name for param in declared]
        self._values: dict[str, str] = {}
        for name, value in request.query_params.multi_items():
            if name not in allowed:
                raise unknown_parameter(name, allowed)
            if name in self._values:
                raise invalid_parameter(name, f"{name} may be given only once")
            self._values[name] = value

    def text(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is not None and ("\x00" in value or value == ""):
            raise invalid_parameter(name, f"{name} must be a non-empty string without NUL")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        """An integer that must lie in low..high."""
        raw = self._values.get(name)
        if raw is None:
            return default
        value = parse_integer(raw)
        if value is None or not low <= value <= high:
            raise invalid_parameter(name, f"{name} must be an integer between {low} and {high}")
        return value

    def limit(self) -> int:
        """`limit`, clamped to 1..LIMIT_MAX (default LIMIT_DEFAULT); not an integer is 422."""
        raw = self._values.get("limit")
        if raw is None:
            return LIMIT_DEFAULT
        value = parse_integer(raw)
        if value is None:
            raise invalid_parameter(
                "limit", f"limit must be an integer (clamped to 1..{LIMIT_MAX})"
            )
        return max(1, min(LIMIT_MAX, value))

    def number(self, name: str, default: float, low: float, high: float) -> float:
        """A decimal number (digits and an optional fraction) that must lie in low..high."""
        raw = self._values.get(name)
        if raw is None:
            return default
        value = parse_number(raw)
        if value is None or not low <= value <= high:
            raise invalid_parameter(name, f"{name} must be a number between {low:g} and {high:g}")
        return value

    def timestamp(self, name: str) -> datetime | None:
        raw = self._values.get(name)
        if raw is None:
            return None
        parsed = parse_timestamp(raw)
        if parsed is None:
            raise invalid_parameter(
                name,
                f"{name} must be an ISO 8601 datetime with a timezone, e.g. 2030-01-01T09:00:00Z",
            )
        return parsed

    def choice(self, name: str, choices: Collection[str], default: str) -> str:
        value = self._values.get(name, default)
        if value not in choices:
            raise invalid_parameter(name, f"{name} must be one of {', '.join(choices)}")
        return value

    def cursor(self, name: str = "cursor") -> dict[str, Any] | None:
        raw = self._values.get(name)
        return None if raw is None else decode_cursor(raw, name)


def parse_timestamp(raw: str) -> datetime | None:
    """An ISO 8601 datetime with a timezone ("Z" allowed) in ASCII, nothing around it, or
    None."""
    # Python 3.10's fromisoformat does not read the "Z" suffix; in a query string a "+"
    # may have been decoded to a space.
    if not raw.isascii() or raw != raw.strip():
        return None
    text = raw[:-1] + "+00:00" if raw[-1:] in ("Z", "z") else raw
    if len(text) > 10 and text[-6] == " ":
        text = text[:-6] + "+" + text[-5:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    offset = parsed.utcoffset()
    # PostgreSQL takes offsets in whole seconds; Python also reads fractions of one.
    if offset is None or offset.microseconds:
        return None
    return parsed


def encode_cursor(document: dict[str, Any]) -> str:
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, name: str = "cursor") -> dict[str, Any]:
    """The document inside a cursor; 422 naming `name` for anything that is not one."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        document = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        raise invalid_parameter(name, f"{name} is not a cursor this API returned")
    return document


def bad_cursor(name: str = "cursor") -> Problem:
    return invalid_parameter(
        name, f"{name} is not a cursor this API returned for this listing (same sort and order)"
    )


def keyset_page(
    rows: list[Row], limit: int, cursor_of: Callable[[Row], dict[str, Any]]
) -> tuple[list[Row], str | None]:
    """A page of `rows` (read with LIMIT limit + 1: one row more than asked tells whether
    there is a next page, without a COUNT) and the cursor of the next page, or None."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(cursor_of(rows[-1]))


def before_id(cursor: dict[str, Any] | None, name: str = "cursor") -> int | None:
    """The id a newest-first page continues below (cursor {"b": id}), or None."""
    if cursor is None:
        return None
    before = cursor.get("b")
    if isinstance(before, bool) or not isinstance(before, int) or not 0 <= before <= 2**63 - 1:
        raise bad_cursor(name)
    return before


# The parameters every keyset-paged list takes.
LIMIT = Param("limit", int, f"Page size, clamped to 1..{LIMIT_MAX}.", LIMIT_DEFAULT)
CURSOR = Param("cursor", str, "`next_cursor` of the previous page.")
