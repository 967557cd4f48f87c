"""Process settings from the environment (prefix `PROXY_`), read once at start-up.

Settings say how the process starts; the YAML config (`app.config`) says what it serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal
from urllib.request import getproxies_environment

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def read_proxy_environment() -> dict[str, str]:
    """HTTP_PROXY, HTTPS_PROXY and NO_PROXY (lower-case names win, as in curl) by scheme:
    {"http": ..., "https": ..., "no": ...}; urllib's reading, which the NO_PROXY matching in
    app.upstream_network expects."""
    wanted = ("http", "https", "no")
    return {scheme: url for scheme, url in getproxies_environment().items() if scheme in wanted}


class Settings(BaseSettings):
    """Everything the process reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="PROXY_", extra="ignore")

    config: Path | None = Field(default=None, description="YAML config file (models, keys)")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    api_base: str | None = Field(
        default=None, description="default upstream for models the config does not name"
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated client keys; empty: no auth"
    )
    redis_url: str | None = Field(
        default=None,
        description="Redis for rate limits (over the config's rate_limit.redis_url) and "
        "stored responses, shared by every worker and replica",
    )
    demo_upstream: str | None = Field(
        default=None,
        description="set by `serve` when it starts the built-in mock upstream for the demo model",
    )
    log_level: str = "info"
    log_format: Literal["text", "json"] = Field(
        default="text", description="text for people; json: one object per line (the container)"
    )
    access_log: bool = Field(
        default=True, description="one line per API request on the app.access logger (INFO)"
    )
    shutdown_grace_seconds: int = Field(
        default=30,
        ge=0,
        description="on SIGTERM: how long requests in flight may take to finish",
    )
    loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", description="event loop: uvloop or asyncio (see README, Performance)"
    )
    proxy_environment: dict[str, str] = Field(
        default_factory=read_proxy_environment,
        description="HTTP_PROXY, HTTPS_PROXY and NO_PROXY (either case) by scheme, as the "
        "process found them: the forward proxy for upstreams (app.upstream_network)",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value
