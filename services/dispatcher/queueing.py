"""Whether a delivery may wait for its endpoint's slots, or is put off to a retry tier instead. Pure.

A delivery waiting for a slot holds a place in its lane's in-flight limit (`max_in_flight`), and every
agency's deliveries share the lanes. Each endpoint may keep at most `per_endpoint_queue` waiting, but four
endpoints slow at once (500 each of 2,000) still filled a lane and stalled every other agency (red team).
So, once half of a lane's limit is taken by deliveries waiting for any endpoint, an endpoint already holding
its fair floor (FLOOR) waits no deeper: what it is sent next is put off for its queue's drain time
(schedule.busy_wait). Together the slow endpoints then hold at most half a lane plus a floor each, and the
other half stays free for endpoints that answer. An endpoint with a free slot never waits at all, so honest
receivers are untouched; one that is merely busy in a burst keeps FLOOR deliveries ready for its slots.

    may_queue(waiting=120, queued=1100, per_endpoint_queue=500, max_in_flight=2000)  # False: crowded
"""

from __future__ import annotations

from typing import Final

# Deliveries an endpoint may keep waiting however crowded the lanes are: four rounds of its default
# per-endpoint concurrency (4), enough to keep its slots busy between two fetches of its lane.
FLOOR: Final[int] = 16


def may_queue(*, waiting: int, queued: int, per_endpoint_queue: int, max_in_flight: int) -> bool:
    """Whether one more delivery may wait for an endpoint with `waiting` already waiting, when `queued` wait for
    any endpoint on this replica."""
    if waiting >= per_endpoint_queue:
        return False
    return queued < max_in_flight // 2 or waiting < FLOOR
