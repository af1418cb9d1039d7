from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field

from services.common.settings import ServiceSettings


class CorrelatorSettings(ServiceSettings):
    # Two alerts correlate when submitted at most this far apart; sightings older than it are pruned.
    window_days: float = Field(30.0, gt=0)
    # Threads one value may connect within the window. A value carried by more (a public resolver's IP, a
    # popular domain) stops correlating anything new: each new alert would otherwise add a correlation with
    # every one of them (MISP's over-correlation limit).
    max_sightings_per_value: int = Field(50, ge=2)
    # How often each index partition is swept of sightings the window has passed (by the clock), so a value
    # nobody mentions again does not stay in the index forever. The sweep runs when the partition next
    # handles a sighting.
    sweep_interval_s: float = Field(3600.0, gt=0)
    # How often faust commits the offsets of what is fully handled (every record it produced acknowledged).
    commit_interval_s: float = Field(1.0, gt=0)
    # faust keeps a directory per app; the index itself is in memory and rebuilt from its changelog at start.
    # None: a temporary directory, removed at stop.
    data_dir: Path | None = None

    @property
    def window(self) -> timedelta:
        return timedelta(days=self.window_days)
