"""When to try a failed webhook again. Pure: no I/O, randomness passed in.

Retries wait on delay-tier topics (`deliveries.retry.<tier>`), never in a consumer's memory, so a waiting
retry holds up no partition and survives a restart. Each tier is a FIFO of records due about the same
time after they were written; the schedule picks, for each retry, the smallest tier at least as long as
the wanted delay. How long to wait depends on the alert's urgency: an Immediate alert is retried within
seconds and gives up after about a quarter of an hour; a routine one backs off to hours. A receiver's
Retry-After (with 429 or 503) is honoured by waiting at least that long. Jitter of ±20% spreads retries to
one recovering endpoint.

    delay = next_delay("Immediate", attempts_made=1, retry_after=None, rng=random.Random())  # None: give up
    tier = tier_for(delay)
"""

from __future__ import annotations

import random
from typing import Final

# Tier name -> its delay in seconds. Names are part of the topic names: change them with services/common/topics.yaml.
TIERS: Final[dict[str, float]] = {"5s": 5, "30s": 30, "2m": 120, "10m": 600, "1h": 3600}

# Delays before the 2nd, 3rd, ... attempt; the length bounds the attempts (one more than delays).
SCHEDULES: Final[dict[str, tuple[float, ...]]] = {
    "Immediate": (5, 5, 30, 30, 120, 600),
    "Expected": (30, 120, 120, 600, 600, 3600),
    "Future": (120, 600, 3600, 3600, 3600, 3600),
    "Past": (120, 600, 3600, 3600),
    "Unknown": (30, 120, 600, 3600, 3600),
}


def give_up_after(urgency: str) -> float:
    """Seconds after which a delivery that could not even be attempted (its circuit stayed open) is dead.

    Twice the whole schedule: deferrals while a circuit is open do not count as attempts, so this bounds
    them instead.
    """
    return 2 * sum(SCHEDULES.get(urgency, SCHEDULES["Unknown"]))


def max_attempts(urgency: str) -> int:
    return len(SCHEDULES.get(urgency, SCHEDULES["Unknown"])) + 1


def next_delay(urgency: str, attempts_made: int, retry_after: float | None, rng: random.Random) -> float | None:
    """Seconds to wait before the next attempt, or None when the schedule is exhausted."""
    schedule = SCHEDULES.get(urgency, SCHEDULES["Unknown"])
    if attempts_made > len(schedule):
        return None
    delay = schedule[attempts_made - 1] * rng.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, TIERS["1h"]))
    return delay


def tier_for(delay: float) -> str:
    """The smallest tier that waits at least `delay` (the longest tier for anything beyond it)."""
    for name, seconds in TIERS.items():
        if seconds >= delay:
            return name
    return next(reversed(TIERS))


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the delta-seconds form; an HTTP date is ignored rather than trusted)."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


# How fast what an endpoint's slowest answer says about it fades: by half every 30 s.
LATENCY_HALF_LIFE_S = 30.0


def slowest_recent(known: tuple[float, float] | None, sample: float, now: float) -> float:
    """An endpoint's latency for pacing its backlog: a slow answer counts at once, and fades by half every
    LATENCY_HALF_LIFE_S. Not an average: a receiver answering 40 requests at once and holding the next 4 for
    9.5 s kept an average near a millisecond, so its backlog was put off 5 s at a time, 94 Kafka round trips a
    second, while it delivered 5 a second (red team). `known` is the previous value and when it was taken."""
    if known is None:
        return sample
    value, at = known
    faded: float = value * 0.5 ** (max(0.0, now - at) / LATENCY_HALF_LIFE_S)
    return max(sample, faded)


def busy_wait(
    latency: float | None, waiting: int, concurrency: int, rng: random.Random, time_scale: float = 1.0
) -> float:
    """Seconds to put off a delivery to an endpoint with `waiting` deliveries queued on this replica: the time
    that queue takes to drain at the endpoint's `latency` (slowest_recent), `concurrency` at a time, between
    the shortest tier and the longest, with the schedule's jitter so that what was put off together does not
    come back together. An endpoint with no answer yet (None: a burst after a restart) gets the shortest tier:
    taken to answer in the full response timeout, an honest burst was put off for 20 minutes (red team)."""
    drain = waiting * (latency or 0.0) / concurrency
    wait = min(max(drain, min(TIERS.values()) * time_scale), max(TIERS.values()) * time_scale)
    return wait * rng.uniform(0.8, 1.2)


def circuit_wait(remaining: float) -> float:
    """Seconds to put off a delivery refused by an endpoint's circuit, whose breaker says `remaining`: exactly
    that (at least 50 ms). No jitter either way, measured (red team, rounds 5 and 6, on a virtual clock with the
    real breaker): a fifth more sent a 30 s wait to the 2m tier and a 120 s one to the 10m tier, behind their
    longer waits; a fifth less had each delivery refused again for what was left, four times the put-offs. What
    bounds the put-offs is the breaker's cooldown growing at each reopening (breaker.py): about 16 a delivery
    to an endpoint that never recovers, against 54 with a fixed 30 s."""
    return max(remaining, 0.05)
