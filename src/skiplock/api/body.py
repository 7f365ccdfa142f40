"""Reading a JSON request body: its media type, its size, and what all bodies in flight
hold at once (BodyBudget).

A body must come as `Content-Type: application/json` (or a `+json` type; the charset,
when given, must be UTF-8), else 415; a key twice in one object is 422 naming the key,
so no value is silently dropped; a body nested deeper than the parser allows is 400.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skiplock.api.problems import Problem

# A client turned away for want of room retries this soon: bodies in flight are gone in
# the time a request takes, not the minutes a database outage takes.
BUSY_RETRY_AFTER_SECONDS = 1


def _too_large(limit: int) -> Problem:
    return Problem(413, "body too large", f"the request body must be at most {limit} bytes")


def _unsupported(detail: str) -> Problem:
    return Problem(415, "unsupported media type", detail)


def check_media_type(content_type: str | None) -> None:
    """415 unless `content_type` is JSON (application/json or application/*+json) in
    UTF-8: a form, a text or an XML body is never read as if it were JSON."""
    if content_type is None:
        raise _unsupported("the request body must be JSON: send Content-Type: application/json")
    media, *params = content_type.split(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise _unsupported(
            f"the request body must be JSON (Content-Type: application/json), got {media!r}"
        )
    for param in params:
        name, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            raise _unsupported(f"a JSON body must be UTF-8 (RFC 8259), got charset={charset}")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict; 422 naming the key when one appears twice (Python's
    json would keep the last one, so another parser might read another value)."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise Problem(
                    422,
                    "duplicate key",
                    f"the key {key!r} appears more than once in one object",
                    field=key,
                )
            seen.add(key)
    return value


async def read_json(request: Request, *, limit: int) -> Any:
    """The body parsed as JSON (any value): 415 unless it is declared JSON, 413 over
    `limit` bytes, 400 if not UTF-8 JSON or nested too deeply, 422 for a duplicate key.

    A declared Content-Length over the limit is refused before reading anything; a body
    without one (chunked) is read chunk by chunk and refused as soon as it passes the
    limit, so at most `limit` bytes plus one chunk are ever held.
    """
    check_media_type(request.headers.get("content-type"))
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
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Problem(400, "invalid json", f"the request body is not UTF-8: {exc}") from None
    # The bytes are not needed once decoded: free them before the parse builds objects.
    body.clear()
    try:
        # NaN and Infinity are let through here so that the field checks can name the
        # field that holds them (jsonb cannot store them) instead of a bare 400.
        return json.loads(text, object_pairs_hook=_object)
    except RecursionError:
        # The body is small enough (it passed the size limit) but too deep to parse
        # without exhausting the stack: its shape is refused, not its size.
        raise Problem(
            400, "invalid json", "the request body is nested too deeply to be parsed"
        ) from None
    except ValueError as exc:
        raise Problem(400, "invalid json", f"the request body is not valid JSON: {exc}") from None


async def read_json_object(request: Request, *, limit: int) -> dict[str, Any]:
    """read_json, and 400 unless the body is a JSON object."""
    value = await read_json(request, limit=limit)
    if not isinstance(value, dict):
        raise Problem(400, "invalid json", "the request body must be a JSON object")
    return value


class BodyBudget:
    """ASGI middleware: caps the request-body bytes that all requests in this process
    hold at once, at `max_bytes`.

    A parsed body costs several times its size (the text, the objects, the jsonb sent
    on) until its answer is out, so the per-request limit alone lets N concurrent large
    requests hold N times it. A request reserves each chunk of its body as it arrives and
    gives all of it back once its answer is sent; a chunk that finds no room gets 503
    with Retry-After. Reserving as bytes arrive, not the declared Content-Length up
    front, means a client must send a body to hold room: a few connections that declare
    large bodies and send nothing cannot turn every other request away.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.held = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reserved = 0

        async def receive_within_budget() -> Message:
            nonlocal reserved
            message = await receive()
            size = len(message.get("body", b"")) if message["type"] == "http.request" else 0
            if size and self.held + size > self.max_bytes:
                raise Problem(
                    503,
                    "server busy",
                    "the API holds as many request bodies as it may; retry shortly",
                    headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
                )
            self.held += size
            reserved += size
            return message

        try:
            await self.app(scope, receive_within_budget, send)
        finally:
            self.held -= reserved
