from __future__ import annotations

from pydantic import BaseModel, Field

from services.common.settings import ServiceSettings


class InternalHttpSettings(BaseModel):
    """The tracker's query API, for the gateway only: keep it on a private interface."""

    host: str = "127.0.0.1"
    port: int = 8085


class TrackerSettings(ServiceSettings):
    http: InternalHttpSettings = Field(default_factory=InternalHttpSettings)
    # How often deadlines are checked: the lateness an escalation may have.
    escalation_check_s: float = 1.0
