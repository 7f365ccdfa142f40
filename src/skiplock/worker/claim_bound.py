"""The run_at bound a worker puts on its claims while they are slow (claim_jobs'
p_run_after, sql/functions/040_claim.sql).

An old snapshot (an idle REPEATABLE READ transaction, a long report) keeps every job
claimed since it began as a dead entry at the front of the claim index; a claim that
walks the index from the front looks each one up, and grows slower by the second. With
a bound, claim_jobs takes only jobs whose run_at is at or after it, and its index scan
seeks past those entries instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from skiplock.jobs import ClaimedJob

log = logging.getLogger("skiplock.worker")

# A full claim slower than this bounds the claims after it: several times a normal full
# claim, below one that walks hundreds of thousands of dead entries.
SLOW_CLAIM_SECONDS = 0.025
# Full claims keep running while bounded, at most about one claim-time in this many.
FULL_CLAIM_SHARE = 10


class ClaimBound:
    """What the next claim passes as p_run_after, and when a full claim is due.

    While full claims are fast the bound is None: every claim is a full claim, as
    without this class. A slow full claim that started jobs sets the bound to the oldest
    run_at among them: no queued job of the same priority is older, and jobs claimed
    since are what the bound skips. Jobs it may leave behind (enqueued with an older
    run_at, or of a lower priority and older) are taken by the next full claim, due
    `poll_interval` seconds later or, while full claims are slow, FULL_CLAIM_SHARE times
    the last one's duration: a delay, never a loss.
    """

    def __init__(self, poll_interval: float) -> None:
        self.poll_interval = poll_interval
        self.run_after: datetime | None = None
        self._full_due = 0.0

    def next(self, now: float) -> datetime | None:
        """The bound for a claim starting at `now` (loop time); None for a full claim."""
        return None if now >= self._full_due else self.run_after

    def record(
        self, run_after: datetime | None, started: float, took: float, jobs: Sequence[ClaimedJob]
    ) -> None:
        """Note a claim made with `run_after` at `started` that took `took` seconds."""
        if run_after is not None:
            return
        if took < SLOW_CLAIM_SECONDS:
            if self.run_after is not None:
                log.info("claims are fast again (%.1f ms); claiming without a bound", took * 1e3)
            self.run_after = None
            self._full_due = 0.0
            return
        full_every = max(self.poll_interval, FULL_CLAIM_SHARE * took)
        if self.run_after is None:
            log.info(
                "a claim took %.0f ms: an old transaction may be keeping claimed jobs in the"
                " claim index; bounding claims by run_at, a full claim every %.1f s",
                took * 1e3,
                full_every,
            )
        if jobs:  # an empty claim leaves the bound as it was: nothing below it appeared
            self.run_after = min(job.run_at for job in jobs)
        self._full_due = started + full_every
