"""ClaimBound: when the worker bounds its claims by run_at, and when it claims in full."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from skiplock.jobs import ClaimedJob
from skiplock.worker.claim_bound import FULL_CLAIM_SHARE, SLOW_CLAIM_SECONDS, ClaimBound

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
SLOW = SLOW_CLAIM_SECONDS * 4


def job(minutes: int) -> ClaimedJob:
    at = T0 + timedelta(minutes=minutes)
    return ClaimedJob(minutes, "t", {}, "default", 0, 1, 1, None, at, [], {}, at)


def test_fast_claims_stay_unbounded() -> None:
    bound = ClaimBound(poll_interval=1.0)
    for now in range(5):
        assert bound.next(now) is None
        bound.record(None, now, SLOW_CLAIM_SECONDS / 2, [job(3), job(1)])
    assert bound.run_after is None


def test_a_slow_full_claim_bounds_by_its_oldest_job_until_the_next_full_claim() -> None:
    bound = ClaimBound(poll_interval=1.0)
    bound.record(None, 100.0, SLOW, [job(7), job(5), job(9)])
    full_every = max(1.0, FULL_CLAIM_SHARE * SLOW)
    assert bound.next(100.0 + full_every / 2) == T0 + timedelta(minutes=5)
    # bounded claims do not move the bound
    bound.record(T0 + timedelta(minutes=5), 100.5, SLOW, [job(30)])
    assert bound.next(100.0 + full_every * 0.9) == T0 + timedelta(minutes=5)
    # the full claim falls due; a slow one moves the bound, an empty one keeps it
    assert bound.next(100.0 + full_every) is None
    bound.record(None, 200.0, SLOW, [job(12)])
    assert bound.next(200.1) == T0 + timedelta(minutes=12)
    bound.record(None, 300.0, SLOW, [])
    assert bound.next(300.1) == T0 + timedelta(minutes=12)


def test_a_fast_full_claim_lifts_the_bound() -> None:
    bound = ClaimBound(poll_interval=1.0)
    bound.record(None, 0.0, SLOW, [job(5)])
    assert bound.run_after is not None
    bound.record(None, 50.0, SLOW_CLAIM_SECONDS / 2, [job(6)])
    assert bound.run_after is None
    assert bound.next(50.1) is None


def test_full_claims_are_spaced_by_their_own_duration() -> None:
    bound = ClaimBound(poll_interval=0.5)
    very_slow = 2.0
    bound.record(None, 0.0, very_slow, [job(1)])
    assert bound.next(FULL_CLAIM_SHARE * very_slow - 0.01) is not None
    assert bound.next(FULL_CLAIM_SHARE * very_slow) is None
