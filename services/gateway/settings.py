from __future__ import annotations

from pydantic import Field, SecretStr

from services.common.internal import InternalToken
from services.common.settings import Section, ServiceSettings


class HttpSettings(Section):
    # Loopback by default: a deployment that serves agencies sets RCTC_HTTP__HOST (compose, k8s).
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 256 * 1024


class GatewaySettings(ServiceSettings):
    http: HttpSettings = Field(default_factory=HttpSettings)
    # Reads come from the service that owns the state: status queries are forwarded to the tracker.
    tracker_url: str = "http://127.0.0.1:8085"
    # The credential sent with every call to the tracker (RCTC_INTERNAL_TOKEN, the tracker's too). Required:
    # a gateway without it could answer no status query, so it refuses to start and names the variable.
    internal_token: InternalToken = Field(default=SecretStr(""), validate_default=True)
    # How many of each agency's Idempotency-Keys to remember per replica for detecting a reused key with another
    # body (about 200 bytes each, measured: 20,000 keys are ~4 MB per agency that floods distinct keys, and
    # 16 minutes at the default rate limit of 20 submissions/s).
    idempotency_keys_per_agency: int = 20_000
