"""`skiplock.http`: one HTTP request as a job, for producers that cannot write a handler
(a SQL trigger, a Go service).

The request goes through the destination guard (skiplock.destinations): no loopback,
private, link-local, unique-local, CGNAT or metadata address unless the `[http] allow`
list names it, checked on the address actually connected to and on every redirect hop.
Credentials never travel in args: `"auth": {"secret": "stripe"}` names a secret of the
operator's settings, whose value is read from the worker's environment.

Outcomes: a success status stores {status, headers, body (bounded), …} as the result; a
connection error or timeout, a 5xx and a 429 are retried (after Retry-After when the
server sends one); any other status, a refused destination or an unknown secret ends in
the dead letters at once: sending it again would get the same answer.
"""

from __future__ import annotations

import base64
import email.utils
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from skiplock.builtins import check_keys
from skiplock.context import JobContext
from skiplock.destinations import DestinationRefused, Destinations
from skiplock.errors import ConfigError, Discard, Retry
from skiplock.retry import RetryPolicy

if TYPE_CHECKING:
    from skiplock.app import App

TASK = "skiplock.http"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 300.0
# A Retry-After further away than this is capped: the job's own deadline and attempts
# still bound it, and a server's "come back tomorrow" should not park a job silently.
MAX_RETRY_AFTER = 3600.0
# Headers the client derives from the request itself; set by args they would contradict it.
RESERVED_HEADERS = ("host", "content-length", "transfer-encoding", "connection")

ARGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "url": {
            "type": "string",
            "pattern": "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\\s]+",
            "maxLength": 8192,
        },
        "method": {"enum": [*METHODS, *(m.lower() for m in METHODS)], "default": "GET"},
        "headers": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "propertyNames": {
                "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
                "not": {"enum": [*RESERVED_HEADERS, *(h.title() for h in RESERVED_HEADERS)]},
            },
        },
        "json": {"description": "a JSON body (sent with Content-Type: application/json)"},
        "body": {"type": "string", "description": "a raw body, sent as UTF-8"},
        "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT},
        "success_statuses": {
            "type": "array",
            "items": {"type": "integer", "minimum": 100, "maximum": 599},
            "minItems": 1,
            "description": "the statuses that count as success (default: any 2xx)",
        },
        "follow_redirects": {"type": "boolean", "default": False},
        "auth": {
            "type": "object",
            "properties": {"secret": {"type": "string", "minLength": 1}},
            "required": ["secret"],
            "additionalProperties": False,
        },
    },
    "required": ["url"],
    "additionalProperties": False,
    "not": {"required": ["json", "body"]},
}


@dataclass(frozen=True)
class Secret:
    """A credential from the operator's settings: `header: prefix + $env`."""

    header: str
    value: str


@dataclass(frozen=True)
class HttpSettings:
    """The `[http]` table, checked."""

    destinations: Destinations = field(default_factory=Destinations)
    secrets: Mapping[str, Secret] = field(default_factory=dict)
    max_body_bytes: int = 65536
    max_redirects: int = 5

    @classmethod
    def parse(cls, section: Mapping[str, Any]) -> HttpSettings:
        """The settings of `section`; ConfigError naming the key otherwise."""
        check_keys(section, ("allow", "secrets", "max_body_bytes", "max_redirects"), "http")
        allowed = allowed_destinations(section)
        secrets = {name: _secret(name, spec) for name, spec in _table(section, "secrets").items()}
        return cls(
            allowed,
            secrets,
            _count(section, "max_body_bytes", cls.max_body_bytes, minimum=0),
            _count(section, "max_redirects", cls.max_redirects, minimum=0),
        )


def allowed_destinations(section: Mapping[str, Any]) -> Destinations:
    """The guard of the `[http]` table's allow-list (ConfigError naming a bad entry)."""
    return Destinations.parse(section.get("allow", []), what="http.allow")


def register(app: App, section: Mapping[str, Any]) -> None:
    """Register `skiplock.http` on `app` with the `[http]` settings; their allow-list
    becomes the app's, which webhook deliveries use too."""
    settings = HttpSettings.parse(section)
    app.destinations = settings.destinations

    @app.task(
        name=TASK,
        args_schema=ARGS_SCHEMA,
        description="Send one HTTP request; the result holds the response's status,"
        " headers and body (bounded). See docs/builtins.md.",
        max_attempts=10,
        retry_policy=RetryPolicy.exponential(5.0),
    )
    def http(ctx: JobContext, **args: Any) -> dict[str, Any]:
        # the app's guard at run time: one replaced after registering (a test's resolver) counts
        return send(args, settings=settings, destinations=app.destinations)


class HttpFailed(Exception):
    """The request failed in a way worth retrying: unreachable, timed out, 5xx or 429."""


def send(
    args: Mapping[str, Any], *, settings: HttpSettings, destinations: Destinations
) -> dict[str, Any]:
    """Send the request `args` describe (ARGS_SCHEMA) and return the response as the
    result; HttpFailed, Retry or Discard as the module's docstring says."""
    method = str(args.get("method", "GET")).upper()
    url = str(args["url"])
    headers = dict(args.get("headers") or {})
    secret = _auth_secret(args.get("auth"), settings)
    if secret is not None:
        headers[secret.header] = secret.value
    # an uncompressed answer: the body is bounded as it arrives, and a small compressed
    # chunk cannot inflate to gigabytes in one read
    if not any(name.lower() == "accept-encoding" for name in headers):
        headers["Accept-Encoding"] = "identity"
    content: bytes | None = None
    if "json" in args:
        content = json.dumps(args["json"], separators=(",", ":")).encode()
        headers.setdefault("Content-Type", "application/json")
    elif "body" in args:
        content = str(args["body"]).encode()
    success = set(args.get("success_statuses") or range(200, 300))
    hops = settings.max_redirects if args.get("follow_redirects") else 0
    where = f"{method} {url}"
    try:
        with destinations.client(timeout=float(args.get("timeout", DEFAULT_TIMEOUT))) as client:
            request = client.build_request(method, url, headers=headers, content=content)
            while True:
                response = client.send(request, stream=True)
                try:
                    follow = response.next_request if response.is_redirect and hops > 0 else None
                    if follow is None:
                        body, truncated = _read_bounded(response, settings.max_body_bytes)
                        break
                finally:
                    response.close()
                hops -= 1
                if secret is not None and _origin(follow.url) != _origin(request.url):
                    # the operator's credential is for the origin the job named, not for
                    # wherever that origin redirects
                    follow.headers.pop(secret.header, None)
                request = follow
    except DestinationRefused as exc:
        raise Discard(f"{where}: {exc}") from None
    except httpx.InvalidURL as exc:
        raise Discard(f"{where}: invalid URL: {exc}") from None
    except (httpx.LocalProtocolError, UnicodeEncodeError) as exc:
        # a request this client cannot even send (a header value with a line break)
        raise Discard(f"{where}: cannot send this request: {exc}") from None
    except httpx.TransportError as exc:
        raise HttpFailed(f"{where}: {type(exc).__name__}: {exc}") from None
    status = response.status_code
    result = {
        "status": status,
        "url": str(response.url),
        "headers": {name: ", ".join(response.headers.get_list(name)) for name in response.headers},
        **_body_fields(body),
        "truncated": truncated,
    }
    if status in success:
        return result
    answered = f"{where} answered {status}"
    if status == 429 or status >= 500:
        delay = retry_after(response.headers.get("Retry-After"))
        if delay is not None:
            raise Retry(delay, f"{answered}; Retry-After {delay:g} s")
        raise HttpFailed(answered)
    raise Discard(f"{answered}, not a success status: {_excerpt(body)}")


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks to wait (delta-seconds or an HTTP date), at
    most MAX_RETRY_AFTER; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    wait = when.timestamp() - (time.time() if now is None else now)
    return min(max(wait, 0.0), MAX_RETRY_AFTER)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _read_bounded(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, and whether more was left unread."""
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) > limit:
            return bytes(data[:limit]), True
    return bytes(data), False


def _body_fields(body: bytes) -> dict[str, str]:
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(body).decode()}
    if "\x00" in text:  # jsonb stores no NUL character
        return {"body_base64": base64.b64encode(body).decode()}
    return {"body": text}


def _excerpt(body: bytes, size: int = 200) -> str:
    text = body[:size].decode(errors="replace").replace("\x00", "")
    return repr(text + ("…" if len(body) > size else ""))


def _auth_secret(auth: Any, settings: HttpSettings) -> Secret | None:
    if auth is None:
        return None
    name = auth["secret"]
    secret = settings.secrets.get(name)
    if secret is None:
        known = ", ".join(sorted(settings.secrets)) or "none"
        raise Discard(
            f"auth.secret {name!r} is not a secret of the [http] settings (known: {known})"
        )
    return secret


def _table(section: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = section.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"http.{key} must be a table, got {value!r}")
    return value


def _count(section: Mapping[str, Any], key: str, default: int, *, minimum: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"http.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _secret(name: str, spec: Any) -> Secret:
    """The secret `name` of [http.secrets], its value read from the environment now, so
    that a worker missing it fails at start rather than at its first job."""
    where = f"http.secrets.{name}"
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be a table {{header, env, prefix}}, got {spec!r}")
    check_keys(spec, ("header", "env", "prefix"), where)
    values = {key: spec.get(key, "") for key in ("header", "env", "prefix")}
    for key, value in values.items():
        if not isinstance(value, str) or (key != "prefix" and not value):
            raise ConfigError(f"{where}.{key} must be a non-empty string, got {value!r}")
    value = os.environ.get(values["env"])
    if not value:
        raise ConfigError(f"{where}: environment variable {values['env']} is not set")
    return Secret(values["header"], values["prefix"] + value)
