"""The gateway's per-agency token bucket: bounded in every window, fair to one who waits as told."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.gateway.ratelimit import RateLimiter, retry_after


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_admits_a_burst_then_refuses_with_the_wait() -> None:
    """`burst` requests pass at once; the next is told how long until a token is back."""
    clock = Clock()
    limiter = RateLimiter(clock)
    admitted = [limiter.admit("IQ-A", per_second=2.0, burst=3) for _ in range(3)]
    assert admitted == [0.0, 0.0, 0.0]
    assert limiter.admit("IQ-A", per_second=2.0, burst=3) == 0.5


def test_waiting_the_answer_is_enough() -> None:
    """A request made after the wait it was given is admitted."""
    clock = Clock()
    limiter = RateLimiter(clock)
    limiter.admit("IQ-A", per_second=0.25, burst=1)
    wait = limiter.admit("IQ-A", per_second=0.25, burst=1)
    clock.now += wait
    assert (wait, limiter.admit("IQ-A", per_second=0.25, burst=1)) == (4.0, 0.0)


def test_agencies_have_their_own_buckets() -> None:
    """One agency spending its burst does not touch another's."""
    limiter = RateLimiter(Clock())
    limiter.admit("IQ-A", per_second=1.0, burst=1)
    assert limiter.admit("IQ-A", per_second=1.0, burst=1) > 0
    assert limiter.admit("JO-B", per_second=1.0, burst=1) == 0.0


def test_a_lower_limit_applies_at_once() -> None:
    """A registry that lowers the burst caps the tokens already saved at the new burst."""
    limiter = RateLimiter(Clock())
    limiter.admit("IQ-A", per_second=1.0, burst=100)
    assert [limiter.admit("IQ-A", per_second=1.0, burst=2) for _ in range(2)] == [0.0, 0.0]
    assert limiter.admit("IQ-A", per_second=1.0, burst=2) > 0


def test_retain_forgets_agencies_no_longer_registered() -> None:
    """Buckets exist only for the agencies of the registry in force."""
    limiter = RateLimiter(Clock())
    for code in ("IQ-A", "JO-B", "SA-C"):
        limiter.admit(code, per_second=1.0, burst=1)
    limiter.retain(["JO-B"])
    assert len(limiter) == 1


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    """Retry-After is an integer number of seconds, never 0 for a refusal."""
    assert [retry_after(w) for w in (0.001, 1.0, 1.2, 2.5)] == ["1", "1", "2", "3"]


@given(
    per_second=st.floats(min_value=0.01, max_value=1000.0),
    burst=st.integers(min_value=1, max_value=50),
    gaps_ms=st.lists(st.integers(min_value=0, max_value=2000), max_size=200),
)
def test_never_more_than_burst_plus_rate_times_t_in_any_window(
    per_second: float, burst: int, gaps_ms: list[int]
) -> None:
    """For any request times, any window of t seconds holds at most burst + per_second * t admitted requests."""
    clock = Clock()
    limiter = RateLimiter(clock)
    admitted: list[float] = []
    for gap in gaps_ms:
        clock.now += gap / 1000
        if limiter.admit("IQ-A", per_second=per_second, burst=burst) == 0.0:
            admitted.append(clock.now)
    # The fullest windows start and end on admitted requests; the tolerance absorbs float rounding only.
    for i, start in enumerate(admitted):
        for j in range(i, len(admitted)):
            assert j - i + 1 <= burst + per_second * (admitted[j] - start) + 1e-6


@given(
    per_second=st.floats(min_value=0.01, max_value=1000.0),
    burst=st.integers(min_value=1, max_value=50),
    refill_ms=st.integers(min_value=0, max_value=5000),
)
def test_waiting_the_retry_after_is_always_enough(per_second: float, burst: int, refill_ms: int) -> None:
    """After an emptied bucket refilled for any while, a refused request retried after Retry-After is admitted."""
    clock = Clock()
    limiter = RateLimiter(clock)
    for _ in range(burst):
        limiter.admit("IQ-A", per_second=per_second, burst=burst)
    clock.now += refill_ms / 1000
    while (wait := limiter.admit("IQ-A", per_second=per_second, burst=burst)) == 0.0:
        pass  # spend what refilled
    assert wait > 0
    clock.now += int(retry_after(wait))
    assert limiter.admit("IQ-A", per_second=per_second, burst=burst) == 0.0
