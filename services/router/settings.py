from __future__ import annotations

from typing import Self

from pydantic import model_validator

from services.common.records import MAX_SCHEDULE_AHEAD
from services.common.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    # Records routed in one transaction: larger amortises the commit, smaller shortens latency.
    max_batch: int = 200
    # How far back a partition's routed alert ids are read to refuse routing the same alert twice
    # (Idempotency-Key retries, enricher re-sends). Longer costs start-up time after a rebalance.
    dedup_window_hours: float = 168.0
    # How often each partition's routed position is also committed as the group's offset (for lag monitoring
    # and as a fallback): the routed log, written in every routing transaction, is what routing resumes from.
    offset_commit_interval_s: float = 5.0
    # Multiplies every acknowledgement deadline (deadlines.py). 1 in production; tests shrink time with it.
    ack_deadline_scale: float = 1.0

    @model_validator(mode="after")
    def _window_holds_every_schedule(self) -> Self:
        # A release is decided against its thread; a router restarted after the window since the thread's
        # original would not know it and would refuse the release (router/schedule.py).
        horizon = MAX_SCHEDULE_AHEAD.total_seconds() / 3600
        if self.dedup_window_hours <= horizon:
            raise ValueError(f"dedup_window_hours must be longer than the longest release schedule ({horizon:g} hours)")
        return self
