from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.settings import KafkaSettings, LogSettings

# `make run` writes how to reach its broker (as the bootstrap admin) here, so that `rctc` run from the
# repository's root works against it; the environment, and then flags, override the file.
LOCAL_ENV_FILE = Path(".run") / "rctc.env"


class CliSettings(BaseSettings):
    """What `rctc` reads from the environment (RCTC_ prefix, like the services); flags override it."""

    model_config = SettingsConfigDict(
        env_prefix="RCTC_", env_nested_delimiter="__", extra="ignore", env_file=LOCAL_ENV_FILE
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    gateway_url: str = "http://127.0.0.1:8080"
    token: str | None = None
