"""ClaimBound: when the worker bounds its claims by priority and run_at per queue, and when
it claims in full."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from skiplock.jobs import ClaimedJob
from skiplock.worker.claim_bound import (
    FULL_CLAIM_SHARE,
    SLOW_CLAIM_SECONDS,
    ClaimBound,
    bounds_of,
)

T0 = datetime(2030, 1, 1, tzinfo=timezone.utc)
SLOW = SLOW_CLAIM_SECONDS * 4


def job(minutes: int, queue: str = "default", priority: int = 0) -> ClaimedJob:
    at = T0 + timedelta(minutes=minutes)
    return ClaimedJob(minutes, "t", {}, queue, priority, 1, 1, None, at, [], {}, at)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_fast_claims_stay_unbounded() -> None:
    bound = ClaimBound(poll_interval=1.0)
    for now in range(5):
        assert bound.next(now) is None
        bound.record(None, now, SLOW_CLAIM_SECONDS / 2, 10, [job(3), job(1)])
    assert bound.bounds is None


def test_bounds_are_per_queue_lowest_priority_and_oldest_run_at() -> None:
    jobs = [job(7, "a", 10), job(5, "a", 10), job(9, "a", 5), job(30, "b", 0), job(20, "b", 3)]
    assert bounds_of(jobs) == {"a": (5, at(5)), "b": (0, at(20))}


def test_a_slow_full_claim_bounds_by_its_jobs_until_the_next_full_claim() -> None:
    bound = ClaimBound(poll_interval=1.0)
    bound.record(None, 100.0, SLOW, 3, [job(7), job(5), job(9)])
    full_every = max(1.0, FULL_CLAIM_SHARE * SLOW)
    assert bound.next(100.0 + full_every / 2) == {"default": (0, at(5))}
    # a full bounded claim does not move the bounds
    bound.record({"default": (0, at(5))}, 100.5, SLOW, 1, [job(30)])
    assert bound.next(100.0 + full_every * 0.9) == {"default": (0, at(5))}
    # the full claim falls due; a slow one moves the bounds, an empty one keeps them
    assert bound.next(100.0 + full_every) is None
    bound.record(None, 200.0, SLOW, 5, [job(12)])
    assert bound.next(200.1) == {"default": (0, at(12))}
    bound.record(None, 300.0, SLOW, 5, [])
    assert bound.next(300.1) == {"default": (0, at(12))}


def test_a_bounded_queue_that_gives_nothing_makes_the_next_claim_full() -> None:
    bound = ClaimBound(poll_interval=5.0)
    bound.record(None, 0.0, SLOW, 2, [job(1, "a", 10), job(2, "b", 10)])
    bounds = {"a": (10, at(1)), "b": (10, at(2))}
    assert bound.next(0.1) == bounds
    bound.record(bounds, 0.1, SLOW, 2, [job(3, "a", 10), job(4, "a", 10)])
    assert bound.next(0.2) is None


def test_a_short_bounded_claim_makes_the_next_claim_full() -> None:
    bound = ClaimBound(poll_interval=5.0)
    bound.record(None, 0.0, SLOW, 2, [job(1, priority=10), job(2, priority=10)])
    assert bound.next(0.1) == {"default": (10, at(1))}
    # the jobs of priority 10 ran out; lower ones wait for a full claim, due at once
    bound.record({"default": (10, at(1))}, 0.1, SLOW, 2, [job(3, priority=10)])
    assert bound.next(0.2) is None


def test_a_fast_full_claim_lifts_the_bound() -> None:
    bound = ClaimBound(poll_interval=1.0)
    bound.record(None, 0.0, SLOW, 1, [job(5)])
    assert bound.bounds is not None
    bound.record(None, 50.0, SLOW_CLAIM_SECONDS / 2, 1, [job(6)])
    assert bound.bounds is None
    assert bound.next(50.1) is None


def test_full_claims_are_spaced_by_their_own_duration() -> None:
    bound = ClaimBound(poll_interval=0.5)
    very_slow = 2.0
    bound.record(None, 0.0, very_slow, 1, [job(1)])
    assert bound.next(FULL_CLAIM_SHARE * very_slow - 0.01) is not None
    assert bound.next(FULL_CLAIM_SHARE * very_slow) is None
