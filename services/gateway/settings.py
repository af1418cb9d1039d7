from __future__ import annotations

from pydantic import BaseModel, Field

from services.common.settings import ServiceSettings


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 256 * 1024


class GatewaySettings(ServiceSettings):
    http: HttpSettings = Field(default_factory=HttpSettings)
    # Reads come from the service that owns the state: status queries are forwarded to the tracker.
    tracker_url: str = "http://127.0.0.1:8085"
    # How many Idempotency-Keys to remember per replica for detecting a reused key with another body.
    idempotency_cache_size: int = 100_000
