from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import KafkaSettings, LogSettings


class CliSettings(BaseSettings):
    """What `rctc` reads from the environment (RCTC_ prefix, like the services); flags override it."""

    model_config = SettingsConfigDict(env_prefix="RCTC_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    gateway_url: str = "http://127.0.0.1:8080"
    token: str | None = None
