"""Failed authentication attempts per client address (bad tokens and failed logins
alike), so that guessing tokens or passwords soon answers 429 with Retry-After."""

from __future__ import annotations

import collections
import time


class FailureLimiter:
    """Failed attempts per client address in a sliding window, in this process only.

    Memory is bounded: addresses whose window has emptied are dropped on a sweep, and
    the table never holds more than `max_clients` (the oldest go first).
    """

    def __init__(self, max_failures: int, window: float, *, max_clients: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )

    def _recent(self, client: str, now: float) -> collections.deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may try again, or None when it may now."""
        now = time.monotonic()
        times = self._recent(client, now)
        if times is None or len(times) < self.max_failures:
            return None
        return max(1, round(times[0] + self.window - now + 0.5))

    def fail(self, client: str) -> None:
        now = time.monotonic()
        times = self._recent(client, now)
        if times is None:
            times = self._failures[client] = collections.deque()
            if len(self._failures) > self.max_clients:
                for stale in list(self._failures)[: len(self._failures) // 10 or 1]:
                    del self._failures[stale]
        self._failures.move_to_end(client)
        times.append(now)
