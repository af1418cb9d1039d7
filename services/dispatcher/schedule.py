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
