from __future__ import annotations

from services.common.settings import ServiceSettings


class EnricherSettings(ServiceSettings):
    """The settings every service has. The watchlist is not one of them: operators keep it on watchlist.entries
    (`rctc watchlist`, which also imports a file of entries), and the enricher follows it (watchlist.py)."""
