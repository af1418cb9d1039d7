"""Per-agency rate limits at the gateway: one token bucket per agency, with the clock injected.

    limiter = RateLimiter(clock=time.monotonic)
    wait = limiter.admit("IQ-NAB", per_second=20.0, burst=100)   # 0.0: go ahead
    if wait:                                                     # else seconds until one more is allowed
        answer 429 with Retry-After: ceil(wait)

A bucket holds at most `burst` tokens and gains `per_second` of them a second; a request takes one or is
refused (taking nothing). So in any window of t seconds at most `burst + per_second * t` requests are
accepted (tests/unit/test_ratelimit.py states it for every input), and an agency that waits the
`Retry-After` it was given is let in.

Memory is bounded by the registry: buckets are keyed by agency code, only authenticated agencies reach
`admit`, and `retain` drops the buckets of agencies no longer in the registry.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class _Bucket:
    per_second: float
    burst: int
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, key: str, *, per_second: float, burst: int) -> float:
        """0.0 when `key` may make one more request now (and it is counted), else the seconds to wait."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(per_second, burst, float(burst), now)
        elif (bucket.per_second, bucket.burst) != (per_second, burst):
            # A new registry changed the limit: keep what was spent, within the new capacity.
            bucket.per_second, bucket.burst = per_second, burst
            bucket.tokens = min(bucket.tokens, float(burst))
        # max(): a clock is monotonic, but a bucket must never lose tokens if one were not.
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(burst), bucket.tokens + elapsed * per_second)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / per_second

    def retain(self, keys: Iterable[str]) -> None:
        """Forget every bucket but those of `keys` (the agencies of the registry in force)."""
        keep = set(keys)
        for key in [k for k in self._buckets if k not in keep]:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after(wait: float) -> str:
    """A Retry-After header value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait)))
