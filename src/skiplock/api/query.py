"""Query-string and path parameters: parsed strictly, each error a 422 naming the parameter.

Also the opaque page cursors: base64url of a small JSON document. Opaque to clients (they
pass `next_cursor` back as it is), checked on the way in, never trusted as SQL.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

from starlette.requests import Request

from skiplock.api.problems import Problem

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


class Query:
    """The query string of one request, with only `allowed` names and each at most once."""

    def __init__(self, request: Request, allowed: Collection[str]) -> None:
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
        if not (raw.lstrip("-").isascii() and raw.lstrip("-").isdigit()) or len(raw) > 12:
            raise invalid_parameter(name, f"{name} must be an integer between {low} and {high}")
        value = int(raw)
        if not low <= value <= high:
            raise invalid_parameter(name, f"{name} must be an integer between {low} and {high}")
        return value

    def limit(self) -> int:
        """`limit`, clamped to 1..LIMIT_MAX (default LIMIT_DEFAULT); not a number is 422."""
        raw = self._values.get("limit")
        if raw is None:
            return LIMIT_DEFAULT
        if not (raw.lstrip("-").isascii() and raw.lstrip("-").isdigit()) or len(raw) > 12:
            raise invalid_parameter(
                "limit", f"limit must be an integer (clamped to 1..{LIMIT_MAX})"
            )
        return max(1, min(LIMIT_MAX, int(raw)))

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self._values.get(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:  # also false for NaN
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
    """An ISO 8601 datetime with a timezone ("Z" allowed), or None."""
    # Python 3.10's fromisoformat does not read the "Z" suffix; in a query string a "+"
    # may have been decoded to a space.
    text = raw.strip()
    text = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    if len(text) > 10 and text[-6] == " ":
        text = text[:-6] + "+" + text[-5:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
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
