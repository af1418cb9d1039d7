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

from aiokafka import TopicPartition
from prometheus_client import Counter

from services.common.logs import get_logger
from services.common.registry import RegistryView
from services.common.registry.model import DEFAULT_RATE_LIMIT

log = get_logger("rctc.gateway.ratelimit")

HELD = Counter(
    "rctc_kafka_agency_holds_total",
    "Times an agency's Kafka topic was held back at its rate limit, by channel (submissions, acks).",
    ["channel"],
)


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
        return self.take(key, 1, per_second=per_second, burst=burst)[1]

    def take(self, key: str, n: int, *, per_second: float, burst: int) -> tuple[int, float]:
        """As many of `n` requests as `key` may make now (they are counted), and, if that is fewer than `n`, the
        seconds until the rest may be made (up to a burst of them; else 0.0). Records an agency wrote to Kafka
        are taken this way: a reader that waits that long takes them a burst at a time, not one by one."""
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
        # The epsilon: a caller that waited exactly the time it was told finds 2.9999999 tokens, not 3.
        taken = min(max(n, 0), math.floor(bucket.tokens + 1e-9))
        bucket.tokens = max(0.0, bucket.tokens - taken)
        if taken == n:
            return taken, 0.0
        return taken, (min(n - taken, burst) - bucket.tokens) / per_second

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


class KafkaPace:
    """What an agency wrote to its own Kafka topic (submissions, acks), taken at its rate limit: a
    GroupConsumer's `pace` (services/common/librdkafka.py).

    Over HTTP a request past the limit is refused (429) and the agency sends it again later. A record on Kafka is
    already stored, so the reader does not refuse it: it leaves it on the topic and holds the agency's partition
    back until the bucket has refilled, while every other agency's records go on. Without this one reader over
    every agency's topic handled records in the order they were fetched: a compressed batch under the topic's
    size limit holds a hundred thousand empty records, each a rejection and a quarantine entry, and every other
    agency waited behind them (tests/integration/test_hostile_agency_topics.py). The limit is the registry's
    (the agency's own, else the default), in buckets of this reader's own, so Kafka and HTTP each get it."""

    def __init__(
        self,
        registry: RegistryView | None,
        agency_of: Callable[[str], str | None],
        channel: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._agency_of = agency_of
        self._channel = channel
        self._clock = clock
        self._limiter = RateLimiter(clock)
        self._logged: dict[str, float] = {}

    def __call__(self, tp: TopicPartition, n: int) -> tuple[int, float]:
        agency = self._agency_of(tp.topic)
        registry = self._registry.current if self._registry is not None else None
        if registry is not None and agency is not None and agency in registry.agencies:
            limit = registry.rate_limit_of(agency)
        else:  # a topic of no agency in force: its records are set aside, at the default pace
            limit = DEFAULT_RATE_LIMIT
        taken, wait_s = self._limiter.take(agency or tp.topic, n, per_second=limit.per_second, burst=limit.burst)
        if taken < n:
            HELD.labels(self._channel).inc()
            now = self._clock()
            key = agency or tp.topic
            if now - self._logged.get(key, -60.0) >= 60.0:  # a flooding agency is held every few seconds
                self._logged[key] = now
                log.warning(
                    "kafka.agency_held",
                    agency=agency,
                    topic=tp.topic,
                    channel=self._channel,
                    per_second=limit.per_second,
                    burst=limit.burst,
                    wait_s=round(wait_s, 2),
                )
        return taken, wait_s
