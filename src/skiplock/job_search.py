"""Searching jobs by their args or meta: what a user types (a JSON object, or
`key=value` pairs) as the JSON document the job's value must contain (`@>`), which the
API, the CLI and the dashboard all take."""

from __future__ import annotations

import json
from typing import Any

# A search is a filter, not a payload: a few keys, a short value.
MAX_SEARCH_CHARS = 1000


def containment(text: str, field: str) -> dict[str, Any]:
    """The document `text` asks `field` (args or meta) to contain.

    `{"user_id": 5}` is taken as it is. `user_id=5 plan=pro` (pairs separated by
    spaces) means {"user_id": 5, "plan": "pro"}: a value that reads as JSON is that
    JSON (5, true, null, "5"), else the text itself; a dotted key reaches into objects
    (`address.city=Lyon`). ValueError says what is wrong, naming `field`."""
    text = text.strip()
    if len(text) > MAX_SEARCH_CHARS:
        raise ValueError(f"{field} search must be at most {MAX_SEARCH_CHARS} characters")
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except ValueError:
            raise ValueError(f"{field} search is not a valid JSON object") from None
        if not isinstance(document, dict):
            raise ValueError(f"{field} search must be a JSON object")
        return storable(document, field)
    found: dict[str, Any] = {}
    for pair in text.split():
        key, sign, raw = pair.partition("=")
        if not sign or not key or any(not part for part in key.split(".")):
            raise ValueError(f"{field} search must be a JSON object or key=value pairs")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        *parents, last = key.split(".")
        node = found
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"{field} search gives {part} twice")
            node = child
        if last in node:
            raise ValueError(f"{field} search gives {key} twice")
        node[last] = value
    if not found:
        raise ValueError(f"{field} search is empty")
    return storable(found, field)


def storable(document: dict[str, Any], field: str) -> dict[str, Any]:
    """`document`, unless it holds what jsonb cannot (the NUL character)."""

    def has_nul(value: Any) -> bool:
        if isinstance(value, str):
            return "\x00" in value
        if isinstance(value, dict):
            return any(has_nul(k) or has_nul(v) for k, v in value.items())
        if isinstance(value, list):
            return any(has_nul(v) for v in value)
        return False

    if has_nul(document):
        raise ValueError(f"{field} search must not contain the NUL character")
    return document
