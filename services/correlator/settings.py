from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pydantic import Field

from services.common.settings import ServiceSettings


class CorrelatorSettings(ServiceSettings):
    # Two alerts correlate when submitted at most this far apart; sightings older than it are pruned.
    window_days: float = Field(30.0, gt=0)
    # Originators whose threads one value may connect within the window. A value more agencies report (a
    # public resolver's IP, a popular domain) stops correlating anything from a new one: each new alert would
    # otherwise add a correlation with every thread (MISP's over-correlation limit). Counted by originator,
    # so that one agency cannot fill it alone (index.py).
    max_originators_per_value: int = Field(50, ge=2)
    # Threads of one originator one value may connect within the window: past it, that originator's new
    # threads carrying the value correlate nothing (the others' are unaffected).
    max_threads_per_originator: int = Field(20, ge=1)
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
