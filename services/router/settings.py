from __future__ import annotations

from services.common.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    # Records routed in one transaction: larger amortises the commit, smaller shortens latency.
    max_batch: int = 200
