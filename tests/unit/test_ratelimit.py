"""The gateway's per-agency token bucket: bounded in every window, fair to one who waits as told."""

from __future__ import annotations

from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from services.common.codec import Codec
from services.common.registry import RegistryDocument
from services.common.registry.model import Agency, Defaults, RateLimit
from services.gateway.ratelimit import KafkaPace, RateLimiter, retry_after
from tests.support.views import loaded_views


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


@given(
    per_second=st.floats(min_value=0.01, max_value=1000.0),
    burst=st.integers(min_value=1, max_value=50),
    batches=st.lists(
        st.tuples(st.integers(min_value=0, max_value=2000), st.integers(min_value=0, max_value=500)), max_size=100
    ),
)
def test_records_taken_in_batches_keep_the_same_bound_and_the_wait_is_enough(
    per_second: float, burst: int, batches: list[tuple[int, int]]
) -> None:
    """`take` (records an agency wrote to Kafka, a batch at a time) is the same bucket: in any window of t seconds
    at most burst + per_second * t records are taken, never more than asked; when fewer are taken than asked,
    one more is taken after the wait it answered."""
    clock = Clock()
    limiter = RateLimiter(clock)
    taken_at: list[tuple[float, int]] = []
    for gap, n in batches:
        clock.now += gap / 1000
        taken, wait = limiter.take("IQ-A", n, per_second=per_second, burst=burst)
        assert 0 <= taken <= n and (wait == 0.0) == (taken == n)
        taken_at.append((clock.now, taken))
        if taken < n:
            later = Clock()
            later.now = clock.now + wait + 1e-6
            probe = RateLimiter(later)
            probe._buckets = {k: type(b)(**vars(b)) for k, b in limiter._buckets.items()}
            assert probe.take("IQ-A", 1, per_second=per_second, burst=burst)[0] == 1
    for i, (start, _) in enumerate(taken_at):
        for j in range(i, len(taken_at)):
            count = sum(t for _, t in taken_at[i : j + 1])
            assert count <= burst + per_second * (taken_at[j][0] - start) + 1e-6


def test_kafka_pace_takes_each_agencys_records_at_its_own_limit(codec: Codec) -> None:
    """The registry's limit per agency (its own, else the default); a topic of no agency in force gets the
    default; each agency its own bucket, so one agency held back leaves the others' records alone."""
    doc = RegistryDocument(
        agencies=[
            Agency(code="IQ-A", name="a", country="IQ"),
            Agency(code="JO-B", name="b", country="JO", rate_limit=RateLimit(per_second=1.0, burst=2)),
        ],
        defaults=Defaults(rate_limit=RateLimit(per_second=10.0, burst=5)),
    )
    registry, _, _ = loaded_views(doc, codec)
    clock = Clock()
    pace = KafkaPace(registry, lambda topic: topic.split(".")[1], "submissions", clock)

    def tp(code: str) -> TopicPartition:
        return TopicPartition(f"agency.{code}.submissions", 0)

    assert pace(tp("IQ-A"), 8) == (5, 0.3)  # the default: 5 now; the other 3 in 0.3 s
    assert pace(tp("JO-B"), 8) == (2, 2.0)  # its own: 2 now; then a burst of 2 in 2 s
    assert pace(tp("XX-GONE"), 100)[0] == 100  # no agency in force: the code default (20/s, burst 100)
    clock.now += 0.3
    assert pace(tp("IQ-A"), 3) == (3, 0.0)
