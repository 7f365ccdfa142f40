"""Result webhooks: a job's callback URL gets its outcome, POSTed and signed.

The SQL side (sql/functions/130_webhooks.sql) enqueues one `skiplock.webhook` job per
finished job that carries a callback URL; this module is that task's handler. Every
App's worker serves it without registration. Delivery is at least once: a receiver may
see one outcome twice (use the `Skiplock-Delivery` header to drop repeats). Deliveries
pass the destination guard of skiplock.http (skiplock.destinations, the App's
`destinations`). See docs/webhooks.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from collections.abc import Mapping
from typing import Any

from skiplock.context import JobContext
from skiplock.destinations import DestinationRefused, Destinations
from skiplock.errors import Discard

WEBHOOK_TASK = "skiplock.webhook"
SECRET_ENV = "SKIPLOCK_WEBHOOK_SECRET"
TIMEOUT = 10.0  # seconds per POST; a slow receiver fails the attempt, which is retried
MAX_URL_BYTES = 2048
# The same rule as the skiplock.callback_url domain (callback_url_http), so Python
# callers get a ValueError before any SQL is sent.
URL_PATTERN = r"^(?i:https?)://[^/?#\s\x00-\x1f\x7f]+([/?#][^\s\x00-\x1f\x7f]*)?$"
_URL = re.compile(URL_PATTERN)

TIMESTAMP_HEADER = "Skiplock-Timestamp"
SIGNATURE_HEADER = "Skiplock-Signature"
DELIVERY_HEADER = "Skiplock-Delivery"


def check_callback_url(url: str) -> str:
    """`url` if it can be a callback URL (http or https, at most 2048 bytes), else
    ValueError naming callback_url."""
    if not isinstance(url, str) or not _URL.fullmatch(url):
        raise ValueError(f"callback_url must be an http or https URL, got {url!r}")
    try:
        size = len(url.encode())
    except UnicodeEncodeError:  # a lone surrogate: not text PostgreSQL can store
        raise ValueError(f"callback_url is not valid UTF-8 text, got {url!r}") from None
    if size > MAX_URL_BYTES:
        raise ValueError(f"callback_url must be at most {MAX_URL_BYTES} bytes, got {size}")
    return url


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: `v1=` + hex HMAC-SHA256 of `timestamp.body`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


class WebhookRefused(Exception):
    """The receiver did not take the delivery (not 2xx, a redirect, or unreachable)."""


def post_outcome(
    url: str,
    outcome: Mapping[str, Any],
    *,
    secret: str,
    delivery_id: int,
    destinations: Destinations,
    timeout: float = TIMEOUT,
) -> int:
    """POST `outcome` as JSON to `url`, signed with `secret`; returns the 2xx status.
    WebhookRefused otherwise (the caller's job is then retried); DestinationRefused when
    the destination guard refuses the URL's address (nothing is sent).

    A redirect is a failure: following one would turn the POST into a GET (301-303) or
    send the signed outcome to a place nobody configured."""
    import httpx  # loaded by the processes that deliver, not by every producer

    body = json.dumps(outcome, separators=(",", ":")).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "skiplock-webhook",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        DELIVERY_HEADER: str(delivery_id),
    }
    try:
        with destinations.client(timeout=timeout) as client:
            status = client.post(url, content=body, headers=headers).status_code
    except httpx.HTTPError as exc:
        raise WebhookRefused(f"{url} could not be reached: {exc}") from None
    if not 200 <= status < 300:
        raise WebhookRefused(f"{url} answered {status}")
    return status


def webhook_secret(given: str | None = None) -> str | None:
    """The secret deliveries are signed with: `given` (a worker's --webhook-secret),
    else SKIPLOCK_WEBHOOK_SECRET; None when neither is set (nothing can be sent)."""
    return given or os.environ.get(SECRET_ENV) or None


def deliver_webhook(
    ctx: JobContext,
    url: str,
    outcome: Mapping[str, Any],
    *,
    secret: str | None,
    destinations: Destinations,
) -> dict[str, Any]:
    """The `skiplock.webhook` handler: POST one outcome; the result records the status.
    Without a secret nothing is sent unsigned, and nothing goes to an address the
    destination guard refuses: the delivery goes straight to the dead letters with a
    clear error (redrive it once the secret or the allow-list is set)."""
    secret = webhook_secret(secret)
    if not secret:
        raise Discard(
            f"no webhook secret: set {SECRET_ENV} or the worker's --webhook-secret;"
            " outcomes are never sent unsigned"
        )
    try:
        status = post_outcome(
            url, outcome, secret=secret, delivery_id=ctx.id, destinations=destinations
        )
    except DestinationRefused as exc:
        raise Discard(
            f"{exc}: allow it in the [http] allow-list of the worker's settings"
        ) from None
    return {"status": status}
