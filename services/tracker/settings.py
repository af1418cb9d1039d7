from __future__ import annotations

from pydantic import Field, SecretStr

from services.common.internal import InternalToken
from services.common.settings import Section, ServiceSettings


class InternalHttpSettings(Section):
    """The tracker's query API, for the gateway only: keep it on a private interface (loopback by default;
    a deployment that moves it sets RCTC_HTTP__HOST and lets only the gateway reach the port)."""

    host: str = "127.0.0.1"
    port: int = 8085


class TrackerSettings(ServiceSettings):
    http: InternalHttpSettings = Field(default_factory=InternalHttpSettings)
    # How often deadlines are checked: the lateness an escalation may have.
    escalation_check_s: float = 1.0
    # How long a settled alert is held after its routing before it is retired to alerts.retired (retention.py:
    # well inside the 30 days its acks and deliveries stay on their topics), and how often that is looked for.
    retention_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    retire_check_s: float = Field(default=60.0, gt=0)
    # The credential every internal API request must carry (RCTC_INTERNAL_TOKEN, the gateway's too). There
    # is no default and no generated fallback: a tracker without one refuses to start, naming the variable,
    # because one that generated its own would refuse every gateway query (status pages answer 503 while the
    # process looks healthy), and one that accepted anything would be the hole this setting closes.
    internal_token: InternalToken = Field(default=SecretStr(""), validate_default=True)
