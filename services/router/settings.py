from __future__ import annotations

from services.common.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    # Records routed in one transaction: larger amortises the commit, smaller shortens latency.
    max_batch: int = 200
    # How far back a partition's routed alert ids are read to refuse routing the same alert twice
    # (Idempotency-Key retries, enricher re-sends), and how old a thread may be and still take a new version,
    # a resend or a scheduled release (a release is at most MAX_SCHEDULE_AHEAD away: the router warns at start
    # if the window is not longer). Longer costs start-up time after a rebalance.
    dedup_window_hours: float = 168.0
    # How often each partition's routed position is also committed as the group's offset (for lag monitoring
    # and as a fallback): the routed log, written in every routing transaction, is what routing resumes from.
    offset_commit_interval_s: float = 5.0
    # Multiplies every acknowledgement deadline (deadlines.py). 1 in production; tests shrink time with it.
    ack_deadline_scale: float = 1.0
