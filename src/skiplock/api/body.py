"""Reading a JSON request body under a size limit, without buffering an oversized one."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request

from skiplock.api.problems import Problem


def _too_large(limit: int) -> Problem:
    return Problem(413, "body too large", f"the request body must be at most {limit} bytes")


async def read_json(request: Request, *, limit: int) -> Any:
    """The body parsed as JSON (any value): 413 over `limit` bytes, 400 if not JSON.

    A declared Content-Length over the limit is refused before reading anything; a body
    without one (chunked) is read chunk by chunk and refused as soon as it passes the
    limit, so at most `limit` bytes plus one chunk are ever held.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise Problem(400, "bad request", "Content-Length must be a whole number of bytes")
        if int(declared) > limit:
            raise _too_large(limit)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise _too_large(limit)
    except ClientDisconnect:
        raise Problem(400, "bad request", "the client disconnected during the body") from None
    try:
        # NaN and Infinity are let through here so that the field checks can name the
        # field that holds them (jsonb cannot store them) instead of a bare 400.
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise Problem(400, "invalid json", f"the request body is not valid JSON: {exc}") from None


async def read_json_object(request: Request, *, limit: int) -> dict[str, Any]:
    """read_json, and 400 unless the body is a JSON object."""
    value = await read_json(request, limit=limit)
    if not isinstance(value, dict):
        raise Problem(400, "invalid json", "the request body must be a JSON object")
    return value
