"""Retry policies: how long to wait before the next attempt. The maths lives in SQL
(skiplock.retry_delay); this is the typed way to write the policy's JSON."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from skiplock.errors import ConfigError

RetryKind = Literal["exponential", "linear", "fixed"]


class RetryPolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Delay after failed attempt n: exponential base*2^(n-1), linear base*n, fixed base;
    capped at max_delay seconds, then up to `jitter` (0..1) of it taken off at random.
    Seconds are >= 0."""

    kind: RetryKind = "exponential"
    base: float = 1.0
    max_delay: float = 3600.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in ("exponential", "linear", "fixed"):
            raise ConfigError(f"retry kind must be exponential, linear or fixed, got {self.kind!r}")
        if self.base < 0:
            raise ConfigError(f"retry base must be >= 0, got {self.base}")
        if self.max_delay < 0:
            raise ConfigError(f"retry max_delay must be >= 0, got {self.max_delay}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"retry jitter must be between 0 and 1, got {self.jitter}")

    @classmethod
    def exponential(
        cls, base: float = 1.0, *, max_delay: float = 3600.0, jitter: float = 0.1
    ) -> RetryPolicy:
        return cls("exponential", base, max_delay, jitter)

    @classmethod
    def linear(
        cls, base: float = 1.0, *, max_delay: float = 3600.0, jitter: float = 0.1
    ) -> RetryPolicy:
        return cls("linear", base, max_delay, jitter)

    @classmethod
    def fixed(cls, delay: float = 1.0, *, jitter: float = 0.0) -> RetryPolicy:
        return cls("fixed", delay, delay, jitter)

    @classmethod
    def from_json(cls, value: Any) -> RetryPolicy:
        """The policy a JSON object describes (as skiplock.retry_policy_is_valid reads
        it); ConfigError naming what is wrong otherwise."""
        try:
            return msgspec.convert(value, cls)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"invalid retry policy: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)
