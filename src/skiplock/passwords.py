"""Users' names and passwords: a password is kept only as an argon2id hash, made and
checked here (argon2-cffi's PasswordHasher with its default parameters, which follow
RFC 9106's recommendation), so the CLI and the API hash alike. A password is never
logged, stored or put in an exception's message.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from skiplock.errors import ConfigError

# The users table's rule for names (constraint name_is_valid), which is a token name's.
USER_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,100}")
USER_NAME_RULE = "1 to 100 of A-Z a-z 0-9 _ . : @ -"
# Long enough for any passphrase; the bound keeps one login from hashing megabytes.
MAX_PASSWORD_CHARS = 1024
PASSWORD_RULE = f"a string of 1 to {MAX_PASSWORD_CHARS} characters"

HASHER = PasswordHasher()


class Checked(NamedTuple):
    """A password check: whether it matched, and, when the stored hash was made with
    other parameters than today's, the new hash of the same password to store."""

    ok: bool
    rehash: str | None = None


def check_user_name(name: str) -> str:
    if not USER_NAME.fullmatch(name):
        raise ConfigError(f"user name must be {USER_NAME_RULE}, got {name!r}")
    return name


def password_problem(password: str) -> str | None:
    """Why `password` cannot be one (without quoting it), or None when it can."""
    if not 1 <= len(password) <= MAX_PASSWORD_CHARS:
        return f"password must be {PASSWORD_RULE}"
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return "password must be valid UTF-8 text"
    return None


def hash_password(password: str) -> str:
    """The argon2id hash of `password` (salted; slow on purpose: tens of milliseconds)."""
    problem = password_problem(password)
    if problem is not None:
        raise ConfigError(problem)
    return HASHER.hash(password)


@functools.cache
def _unknown_user_hash() -> str:
    return HASHER.hash("the hash a login of an unknown user is checked against")


def check_password(stored_hash: str | None, password: str) -> Checked:
    """Whether `password` matches `stored_hash`. With no hash (an unknown or disabled
    user) a dummy hash is checked all the same, so the answer takes as long and a
    caller cannot tell a wrong password from a wrong name by the time it takes."""
    try:
        HASHER.verify(stored_hash or _unknown_user_hash(), password)
    except (VerificationError, InvalidHashError):
        return Checked(ok=False)
    if stored_hash is None:
        return Checked(ok=False)
    if HASHER.check_needs_rehash(stored_hash):
        return Checked(ok=True, rehash=HASHER.hash(password))
    return Checked(ok=True)
