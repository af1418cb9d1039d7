"""Whether a delivery may wait for its endpoint's slots, or is put off to a retry tier instead. Pure.

A delivery waiting for a slot holds a place in its lane's in-flight limit (`max_in_flight`), and every
agency's deliveries share the lanes. Each endpoint may keep at most `per_endpoint_queue` waiting, but four
endpoints slow at once (500 each of 2,000) still filled a lane and stalled every other agency (red team).
And a cap on the total alone let a slow endpoint's own backlog count against everyone else: two receivers
holding 500 each had 90% of an honest endpoint's burst of 200 put off (red team, round 5). So an endpoint
past its FLOOR may wait deeper only for its fair share of half a lane, that half split between the endpoints
that have deliveries waiting, and only while three quarters of a lane is not taken. A slow receiver keeps
what it queued, but an endpoint that starts waiting after it gets its own share, and together they cannot
fill a lane: it takes some 30 endpoints slow at once, each past its FLOOR, to reach it. An endpoint with a
free slot never waits at all, so receivers that keep up are untouched.

    may_queue(waiting=120, queued=1100, endpoints=3, per_endpoint_queue=500, max_in_flight=2000)  # True
"""

from __future__ import annotations

from typing import Final

# Deliveries an endpoint may keep waiting however crowded the lanes are: four rounds of its default
# per-endpoint concurrency (4), enough to keep its slots busy between two fetches of its lane.
FLOOR: Final[int] = 16


def may_queue(*, waiting: int, queued: int, endpoints: int, per_endpoint_queue: int, max_in_flight: int) -> bool:
    """Whether one more delivery may wait for an endpoint with `waiting` already waiting, when `queued` wait for
    `endpoints` endpoints (this one among them once it has any waiting) on this replica."""
    if waiting >= per_endpoint_queue:
        return False
    if waiting < FLOOR:
        return True
    if queued >= max_in_flight * 3 // 4:
        return False
    return waiting < (max_in_flight // 2) // max(endpoints, 1)
