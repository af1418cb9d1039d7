from __future__ import annotations

from services.common.settings import ServiceSettings


class DispatcherSettings(ServiceSettings):
    # Records fetched at once per lane, and deliveries in flight per lane before fetching pauses.
    concurrency: int = 64
    max_in_flight: int = 2000
    # Requests in flight to one endpoint; the rest of its deliveries wait their turn, up to per_endpoint_queue of
    # them on this replica. Past that a delivery is put off to a retry tier for about as long as the queue takes
    # to drain (`endpoint_busy`, not an attempt): what waits here holds a place in its lane's max_in_flight,
    # which every agency shares, so a receiver slow to answer (even with a 2xx, which never opens its circuit)
    # would otherwise fill the lane and stall every other agency's deliveries (red team). A quarter of
    # max_in_flight: an honest burst to one endpoint waits here up to 500 deep before any of it is put off; and
    # past a floor, each endpoint waits only for its share of half a lane (queueing.py), so that four
    # endpoints slow at once no longer fill a lane.
    per_endpoint_concurrency: int = 4
    per_endpoint_queue: int = 500
    connect_timeout_s: float = 3.0
    response_timeout_s: float = 10.0
    max_response_bytes: int = 64 * 1024
    # Consecutive failures that open an endpoint's circuit, and how long it stays open before a probe.
    breaker_threshold: int = 5
    breaker_cooldown_s: float = 30.0
    # Each time it opens again without a success in between it stays open one cooldown longer, up to this: a
    # receiver that recovers waits at most this for its next probe (breaker.py).
    breaker_max_cooldown_s: float = 120.0
    # Multiplies every retry delay (schedule.py). 1 in production; tests shrink time with it.
    retry_time_scale: float = 1.0
    # Whether the registry's `allow_private` is honoured at all (plain http, loopback and private
    # addresses for that endpoint). Off unless a deployment opts in: `make run` and the tests do, for
    # the demo receivers on 127.0.0.1; compose and k8s set it false explicitly. Env:
    # RCTC_ALLOW_PRIVATE_ENDPOINTS.
    allow_private_endpoints: bool = False
