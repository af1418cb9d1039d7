from __future__ import annotations

from services.common.settings import ServiceSettings


class AuditorSettings(ServiceSettings):
    # Routing decisions sealed onto the chain in one transaction.
    max_batch: int = 500
