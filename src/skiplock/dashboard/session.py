"""The dashboard's session: a signed cookie that names the principal, and its CSRF token.

The cookie holds who logged in (a user's name or an API token's sha256), a CSRF token and
an expiry, signed with itsdangerous under the server's HS256 secret: the browser can read
it but not change it. It carries no scope: every request looks the user or token up again
(store.find_user, store.find_api_token), so a disabled user, a revoked token or a changed
scope takes effect on the next click, not when the cookie expires.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "skiplock_session"
# Before login there is no session: the login form's CSRF token is a random value set
# in this cookie and echoed in the form (double submit), so another site cannot post it.
LOGIN_COOKIE = "skiplock_login"
CSRF_FIELD = "csrf"
# Distinct from anything else signed with the same secret (the login JWTs).
SALT = "skiplock.dashboard.session"


@dataclass(frozen=True)
class Session:
    """A logged-in browser: `kind` is "user" (`subject` the name) or "token" (`subject`
    the token's sha256); `expires` is a Unix time."""

    kind: str
    subject: str
    csrf: str
    expires: int

    def to_json(self) -> dict[str, Any]:
        return {"k": self.kind, "s": self.subject, "c": self.csrf, "e": self.expires}


class SessionCodec:
    """Signs and reads session cookies with one secret."""

    def __init__(self, secret: str, lifetime: float) -> None:
        self.serializer = URLSafeTimedSerializer(secret, salt=SALT)
        self.lifetime = lifetime

    def new(self, kind: str, subject: str) -> Session:
        return Session(kind, subject, secrets.token_urlsafe(24), int(time.time() + self.lifetime))

    def dumps(self, session: Session) -> str:
        return self.serializer.dumps(session.to_json())

    def loads(self, cookie: str | None) -> Session | None:
        """The session in `cookie`; None when absent, forged, malformed or expired."""
        if not cookie:
            return None
        try:
            data = self.serializer.loads(cookie, max_age=int(self.lifetime))
        except BadSignature:
            return None
        if not isinstance(data, dict):
            return None
        kind, subject, csrf, expires = (data.get(k) for k in ("k", "s", "c", "e"))
        if kind not in ("user", "token") or not isinstance(subject, str):
            return None
        if not isinstance(csrf, str) or not isinstance(expires, int) or expires < time.time():
            return None
        return Session(kind, subject, csrf, expires)


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(
    request: Request, response: Response, name: str, value: str, max_age: int | None, path: str
) -> None:
    """HttpOnly (no script reads it), SameSite=Strict (no other site sends it), Secure
    when the page came over https."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=path,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def same_token(given: object, expected: str | None) -> bool:
    """A constant-time comparison of a submitted CSRF token with the expected one."""
    return (
        isinstance(given, str)
        and bool(expected)
        and hmac.compare_digest(given.encode(), (expected or "").encode())
    )
