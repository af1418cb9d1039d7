"""The dispatcher's pure rules: retry schedule, circuit breaker, commit window, destination safety."""

from __future__ import annotations

import random

import pytest
from aiokafka import TopicPartition

from services.dispatcher.breaker import CircuitBreaker
from services.dispatcher.safety import UnsafeDestination, check_url, is_public
from services.dispatcher.schedule import TIERS, give_up_after, max_attempts, next_delay, parse_retry_after, tier_for
from services.dispatcher.window import CommitWindow


def test_immediate_alerts_retry_within_seconds_and_routine_ones_back_off() -> None:
    """The first retry of an Immediate alert is seconds away; an Expected one's is half a minute or more."""
    rng = random.Random(1)
    assert 4 <= next_delay("Immediate", 1, None, rng) <= 6  # type: ignore[operator]
    assert 24 <= next_delay("Expected", 1, None, rng) <= 36  # type: ignore[operator]
    assert next_delay("Immediate", max_attempts("Immediate"), None, rng) is None


def test_schedule_is_bounded_jittered_and_honours_retry_after() -> None:
    """Delays vary by ±20%, Retry-After lengthens them (capped at the longest tier), and the schedule ends."""
    rng = random.Random(2)
    delays = {round(next_delay("Immediate", 1, None, rng), 3) for _ in range(20)}  # type: ignore[arg-type]
    assert len(delays) > 10 and min(delays) >= 4 and max(delays) <= 6
    assert next_delay("Immediate", 1, 90, rng) == 90
    assert next_delay("Immediate", 1, 10**6, rng) == TIERS["1h"]
    assert all(next_delay(u, max_attempts(u), None, rng) is None for u in ("Immediate", "Expected", "Future"))
    assert give_up_after("Immediate") < give_up_after("Future")


def test_tiers_round_up() -> None:
    """A delay goes to the smallest tier at least as long; beyond the longest, the longest."""
    assert [tier_for(d) for d in (0.5, 5, 6, 100, 599, 601, 10**5)] == ["5s", "5s", "30s", "2m", "10m", "1h", "1h"]


def test_retry_after_parsing() -> None:
    """Delta-seconds are understood; dates and garbage are ignored rather than trusted."""
    assert [parse_retry_after(v) for v in ("120", " 3 ", "-1", "Wed, 21 Oct 2026 07:28:00 GMT", None)] == [
        120.0,
        3.0,
        None,
        None,
        None,
    ]


def test_breaker_opens_refuses_and_probes() -> None:
    """Five failures open it; while open it refuses; after the cooldown one probe decides."""
    now = [0.0]
    breaker = CircuitBreaker(threshold=5, cooldown_s=10, clock=lambda: now[0])
    assert [breaker.failure() for _ in range(5)] == [False, False, False, False, True]
    assert not breaker.allow() and breaker.remaining() == 10
    now[0] = 10.0
    assert breaker.allow() and not breaker.allow()  # one probe at a time
    assert breaker.failure()  # the probe failed: open again, for one cooldown longer
    now[0] = 29.0
    assert not breaker.allow()
    now[0] = 30.0
    assert breaker.allow()
    assert breaker.success() and breaker.state == "closed" and breaker.allow()


def test_a_circuit_that_keeps_failing_its_probes_stays_open_longer_each_time() -> None:
    """One cooldown more at each reopening, up to max_cooldown_s, back to one once it closes: a receiver holding
    each probe and failing it had its backlog put off 120 times a delivery (red team, round 4)."""
    now = [0.0]
    breaker = CircuitBreaker(threshold=1, cooldown_s=30, max_cooldown_s=100, clock=lambda: now[0])
    waits = []
    for _ in range(5):
        assert breaker.failure()  # opens (again)
        waits.append(breaker.remaining())
        now[0] += waits[-1]
        assert breaker.allow()  # the probe
    assert waits == [30, 60, 90, 100, 100]  # capped
    assert breaker.success() and breaker.opens == 0
    assert [breaker.failure()] == [True] and breaker.remaining() == 30


def test_breaker_counts_consecutive_failures_only() -> None:
    """A success in between resets the count: a flaky endpoint that succeeds half the time stays closed."""
    breaker = CircuitBreaker(threshold=3)
    for _ in range(10):
        breaker.failure()
        breaker.failure()
        breaker.success()
    assert breaker.state == "closed"


def test_commit_window_commits_the_finished_prefix_only() -> None:
    """Out-of-order completion commits up to the first unfinished offset, never past it."""
    tp = TopicPartition("t", 0)
    window = CommitWindow()
    for offset in (10, 11, 12, 13):
        window.started(tp, offset)
    window.finished(tp, 12)
    window.finished(tp, 13)
    assert window.committable() == {tp: 10}
    window.finished(tp, 10)
    assert window.committable() == {tp: 11}
    window.finished(tp, 11)
    window.skipped(tp, 14)
    assert window.committable() == {tp: 15} and window.in_flight() == 0


@pytest.mark.parametrize(
    ("url", "allow_private"),
    [
        ("http://receiver.example/hook", False),
        ("https://127.0.0.1/hook", False),
        ("https://10.1.2.3/hook", False),
        ("https://169.254.169.254/latest/meta-data", False),
        ("https://[::1]/hook", False),
        ("https://[::ffff:192.168.1.1]/hook", False),
    ],
)
def test_unsafe_destinations_are_refused(url: str, allow_private: bool) -> None:
    """Plain http, loopback, private, link-local (cloud metadata) and mapped addresses are refused."""
    with pytest.raises(UnsafeDestination):
        check_url(url, allow_private)


def test_allowed_destinations() -> None:
    """Public https passes; the registry's allow_private lets the demo use loopback over http."""
    check_url("https://receiver.example/hook", False)
    check_url("https://8.8.8.8/hook", False)
    check_url("http://127.0.0.1:8701/hooks/X", True)
    assert is_public("8.8.8.8") and not is_public("192.168.0.1") and not is_public("fe80::1")


async def test_safe_resolver_refuses_names_of_internal_hosts() -> None:
    """A name that resolves only to loopback is refused by the resolver the public session uses."""
    from services.dispatcher.safety import SafeResolver

    resolver = SafeResolver()
    try:
        with pytest.raises(UnsafeDestination):
            await resolver.resolve("localhost", 443)
    finally:
        await resolver.close()
