from __future__ import annotations

from services.common.settings import ServiceSettings


class DispatcherSettings(ServiceSettings):
    # Deliveries in flight at once across all endpoints.
    concurrency: int = 64
    connect_timeout_s: float = 3.0
    response_timeout_s: float = 10.0
    # Attempts before a delivery goes to deliveries.dead, and the pauses between them (seconds).
    # Retry topics with delay tiers replace these in-process pauses (issue 4).
    retry_delays_s: tuple[float, ...] = (0.5, 2.0)
    max_response_bytes: int = 64 * 1024
