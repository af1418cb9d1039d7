from __future__ import annotations

from pydantic import Field

from services.common.settings import ServiceSettings


class EnricherSettings(ServiceSettings):
    """The settings every service has, and how often it commits. The watchlist is not one of them: operators
    keep it on watchlist.entries (`rctc watchlist`, which also imports a file of entries), and the enricher
    follows it (watchlist.py)."""

    # Handled batches' offsets are committed at most this often (and whenever the input runs dry): a commit per
    # batch was a broker round trip per alert at ordinary rates (services/common/consume.py). A crash hands the
    # next owner up to this much again, and the router drops what it already routed.
    commit_interval_s: float = Field(default=0.5, ge=0.0, le=10.0)
