"""The bounds a worker puts on its claims while they are slow (claim_jobs' p_run_after
and p_priority_floor, sql/functions/040_claim.sql).

An old snapshot (an idle REPEATABLE READ transaction, a long report) keeps every job
claimed since it began as a dead entry at the front of the claim index; a claim that
walks the index from the front looks each one up, and grows slower by the second. With
a bound per queue, claim_jobs takes only jobs of at least a priority and a run_at, and
its index scan seeks past those entries instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from skiplock.jobs import ClaimedJob
from skiplock.store import ClaimBounds

log = logging.getLogger("skiplock.worker")

# A full claim slower than this bounds the claims after it: several times a normal full
# claim, below one that walks hundreds of thousands of dead entries.
SLOW_CLAIM_SECONDS = 0.025
# Full claims keep running while bounded, at most about one claim-time in this many.
FULL_CLAIM_SHARE = 10


class ClaimBound:
    """What the next claim passes as its bounds, and when a full claim is due.

    While full claims are fast there are no bounds: every claim is a full claim, as
    without this class. A slow full claim that started jobs bounds each queue it took
    from by the lowest priority and the oldest run_at it started there (queues it took
    nothing from stay unbounded). A claim takes a queue's jobs highest priority first,
    then oldest, so no job of those priorities older than the bound is left waiting in
    that queue: bounded claims keep each queue's order. A queue's lower priorities (and
    jobs enqueued with an older run_at) wait for the next full claim: due at once when a
    bounded claim comes back short or gets nothing from a bounded queue, else
    `poll_interval` seconds later or, while full claims are slow, FULL_CLAIM_SHARE times
    the last one's duration. A delay of a claim or two, never a loss.
    """

    def __init__(self, poll_interval: float) -> None:
        self.poll_interval = poll_interval
        self.bounds: ClaimBounds | None = None
        self._full_due = 0.0

    def next(self, now: float) -> ClaimBounds | None:
        """The bounds for a claim starting at `now` (loop time); None for a full claim."""
        return None if now >= self._full_due else self.bounds

    def record(
        self,
        bounds: ClaimBounds | None,
        started: float,
        took: float,
        limit: int,
        jobs: Sequence[ClaimedJob],
    ) -> None:
        """Note a claim of up to `limit` jobs made with `bounds` at `started` that took
        `took` seconds and started `jobs`."""
        if bounds is not None:
            # A bounded queue that gave nothing may have run dry above its floor while
            # lower priorities wait: look at everything next.
            if len(jobs) < limit or not bounds.keys() <= {job.queue for job in jobs}:
                self._full_due = 0.0
            return
        if took < SLOW_CLAIM_SECONDS:
            if self.bounds is not None:
                log.info("claims are fast again (%.1f ms); claiming without a bound", took * 1e3)
            self.bounds = None
            self._full_due = 0.0
            return
        full_every = max(self.poll_interval, FULL_CLAIM_SHARE * took)
        if self.bounds is None:
            log.info(
                "a claim took %.0f ms: an old transaction may be keeping claimed jobs in the"
                " claim index; bounding claims by priority and run_at, a full claim every"
                " %.1f s",
                took * 1e3,
                full_every,
            )
        if jobs:  # an empty claim leaves the bounds as they were: nothing below them appeared
            self.bounds = bounds_of(jobs)
        self._full_due = started + full_every


def bounds_of(jobs: Sequence[ClaimedJob]) -> ClaimBounds:
    """Per queue among `jobs`: the lowest priority and the oldest run_at started there."""
    bounds: dict[str, tuple[int, datetime]] = {}
    for job in jobs:
        low = bounds.get(job.queue)
        bounds[job.queue] = (
            (job.priority, job.run_at)
            if low is None
            else (min(low[0], job.priority), min(low[1], job.run_at))
        )
    return bounds
