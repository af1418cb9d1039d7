from __future__ import annotations

from pathlib import Path

from services.common.settings import ServiceSettings


class EnricherSettings(ServiceSettings):
    # A YAML list of indicator values and subject names to flag (case-insensitive); none by default.
    watchlist_file: Path | None = None
