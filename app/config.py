"""The YAML config: which models the proxy serves and how it reaches them.

    models:
      - name: llama-2-13b
        api_base: http://127.0.0.1:9000/inference
        upstream_model: meta-llama/Llama-2-13b-hf
        prompt_template: llama2
        defaults: {max_tokens: 256, temperature: 0.7, top_p: 1.0, top_k: 40}
        timeout: 300
        headers: {Authorization: "Bearer ${UPSTREAM_TOKEN}"}
      - name: llama
        deployments:                 # instead of api_base: several upstreams for one model
          - {api_base: http://gpu-a:9000/inference, weight: 2}
          - {api_base: http://gpu-b:9000/inference, upstream_model: other, max_concurrency: 8}
        routing: least-busy          # or weighted
        fallbacks: [llama-2-13b]     # tried when every deployment failed
        max_retries: 2
    api_keys:
      - sk-plain-key                 # a plain key, or an object with a name, models and limits:
      - {key: "sha256:<64 hex>", name: alice, models: [llama], rpm: 60, tpm: 100000,
         expires: 2026-12-31}
    rate_limit: {policy: fail_open}  # counted in memory, or in Redis (PROXY_REDIS_URL)

`${VAR}` (or `${VAR:-fallback}`) in any string is taken from the environment when the file is
loaded; an unset variable without a fallback is an error. Every error names the file, the model
and the field. A model's own fields are in app.model_config.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from app.aliases import alias_conflicts
from app.model_config import (
    BatchingConfig,
    CacheConfig,
    CooldownConfig,
    DeploymentConfig,
    ModelConfig,
    QueueConfig,
    SamplingDefaults,
    Strict,
    TLSConfig,
)

# The model's part lives in app.model_config; importers take every config class from here.
__all__ = [
    "ApiKeyConfig",
    "BatchingConfig",
    "CacheConfig",
    "ConfigError",
    "CooldownConfig",
    "CorsConfig",
    "DeploymentConfig",
    "MetricsConfig",
    "ModelConfig",
    "ProxyConfig",
    "QueueConfig",
    "RateLimitConfig",
    "SamplingDefaults",
    "TLSConfig",
    "load_config",
    "with_extra_keys",
]

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The config cannot be used; the message says where and why."""


_SHA256_KEY = re.compile(r"sha256:[0-9a-fA-F]{64}")
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,63}")


class ApiKeyConfig(Strict):
    """A client key: plain or `sha256:<64 hex>`; optionally named, limited to some models, with
    its own per-minute limits, and expiring. A plain string in `api_keys` is `{key: <string>}`.

    `expires` is a datetime (UTC unless it says otherwise) or a date, which means 00:00 UTC of
    that day: `expires: 2026-12-31` works until the end of 2026-12-30.
    """

    key: str = Field(min_length=1)
    name: str | None = None
    models: list[str] | None = None  # None: every model
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    expires: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _plain_string(cls, value: object) -> object:
        return {"key": value} if isinstance(value, str) else value

    @field_validator("key")
    @classmethod
    def _key_form(cls, value: str) -> str:
        if value.startswith("sha256:"):
            if not _SHA256_KEY.fullmatch(value):
                raise ValueError("a hashed key must be 'sha256:' followed by 64 hex digits")
        elif any(char.isspace() or not char.isprintable() for char in value):
            raise ValueError("a key cannot contain spaces or control characters")
        return value

    @field_validator("name")
    @classmethod
    def _name_form(cls, value: str | None) -> str | None:
        if value is not None and not _KEY_NAME.fullmatch(value):
            raise ValueError(
                "a key name is 1 to 64 letters, digits and . _ : @ / + - (it appears in logs "
                "and metrics)"
            )
        return value

    @field_validator("expires", mode="before")
    @classmethod
    def _date_is_midnight_utc(cls, value: object) -> object:
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        return value

    @field_validator("expires")
    @classmethod
    def _naive_is_utc(cls, value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    @property
    def digest(self) -> bytes:
        """The key's SHA-256 digest: what the proxy compares (and all it needs to keep)."""
        if self.key.startswith("sha256:"):
            return bytes.fromhex(self.key.removeprefix("sha256:"))
        return hashlib.sha256(self.key.encode()).digest()

    @property
    def label(self) -> str:
        """The key's name, or `key-<first 8 hex digits of its digest>`: never the key."""
        return self.name or f"key-{self.digest.hex()[:8]}"


class RateLimitConfig(Strict):
    """Where per-key and per-model limits are counted: in each process's memory, or in Redis,
    shared by every worker and replica. `policy` says what happens while Redis cannot answer."""

    backend: Literal["memory", "redis"] | None = None  # None: redis when a Redis URL is set
    redis_url: str | None = None  # PROXY_REDIS_URL wins over it
    policy: Literal["fail_open", "fail_closed"] = "fail_open"
    redis_timeout: float = Field(default=0.25, gt=0)  # seconds for one Redis call
    retry_seconds: float = Field(default=1.0, gt=0)  # Redis unreachable: ask again after this
    key_prefix: str = Field(default="clp:rl:", min_length=1)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


_ORIGIN = re.compile(r"https?://[^/\s]+")
_EXPOSED_HEADERS = [
    "x-request-id",
    "x-proxy-overhead-ms",
    "x-upstream-latency-ms",
    "retry-after",
    "x-cache",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
]


class CorsConfig(Strict):
    """Browser clients on other origins (Starlette's CORSMiddleware); no CORS unless set."""

    allow_origins: list[str] = Field(min_length=1)  # exact origins, or ["*"]
    allow_methods: list[str] = Field(default_factory=lambda: ["GET", "POST"])
    allow_headers: list[str] = Field(default_factory=lambda: ["*"])
    allow_credentials: bool = False
    expose_headers: list[str] = Field(default_factory=lambda: list(_EXPOSED_HEADERS))
    max_age: int = Field(default=600, ge=0)  # seconds a browser may cache a preflight answer

    @field_validator("allow_origins")
    @classmethod
    def _origin_form(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme://host[:port] without a path or a "
                    "trailing slash, or '*'"
                )
        return origins

    @model_validator(mode="after")
    def _credentials_need_origins(self) -> CorsConfig:
        if self.allow_credentials and "*" in self.allow_origins:
            raise ValueError("allow_credentials needs the origins listed, not '*'")
        return self


class ResponseStoreConfig(Strict):
    """Stored responses of the Responses API (`store`, `previous_response_id`): in each
    process's memory, at most `max_entries` (oldest first out), or in Redis when
    PROXY_REDIS_URL is set (shared by every worker and replica); each kept `ttl_seconds`."""

    ttl_seconds: float = Field(default=86400.0, gt=0)
    max_entries: int = Field(default=1000, ge=1)  # in memory only
    redis_timeout: float = Field(default=1.0, gt=0)  # seconds for one Redis call
    key_prefix: str = Field(default="clp:response", min_length=1)


class MetricsConfig(Strict):
    """GET /metrics: open to whoever reaches the proxy unless `require_key`."""

    require_key: bool = False


class ProxyConfig(Strict):
    """The whole file.

    `upstream_max_connections` caps the connections in use at once per upstream host:port;
    requests beyond it wait (shown by a metric and a warning, app.pool_waits). None, the
    default, is no cap: a request in flight holds its own connection, so the proxy's open-file
    limit is the bound, and each deployment's `max_concurrency` and `queue` are the way to
    protect an upstream: they answer 503 when full instead of queueing out of sight.
    """

    models: list[ModelConfig] = Field(default_factory=list)
    api_keys: list[ApiKeyConfig] = Field(default_factory=list)
    rate_limit: RateLimitConfig = RateLimitConfig()
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_messages: int = Field(default=1000, ge=1)  # chat messages, or legacy prompts
    max_prompt_chars: int = Field(default=8_000_000, ge=1)  # text sent upstream, × n
    stream_keepalive_seconds: float = Field(default=10.0, gt=0)
    upstream_max_connections: int | None = Field(default=None, ge=1)
    max_response_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    connect_timeout: float = Field(default=5.0, gt=0)
    log_content: bool = False  # prompt and completion text in the access log
    cors: CorsConfig | None = None
    metrics: MetricsConfig = MetricsConfig()
    response_store: ResponseStoreConfig = ResponseStoreConfig()

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        seen: set[str] = set()
        for model in models:
            if model.name in seen:
                raise ValueError(f"model name {model.name!r} is used twice")
            seen.add(model.name)
        for model in models:
            for fallback in model.fallbacks:
                if fallback not in seen:
                    raise ValueError(
                        f"model {model.name!r}: fallback {fallback!r} is not a configured model"
                    )
        conflicts = alias_conflicts((model.name, model.aliases) for model in models)
        if conflicts:
            raise ValueError("aliases overlap: " + "; ".join(conflicts))
        return models

    @field_validator("api_keys")
    @classmethod
    def _distinct_keys(cls, keys: list[ApiKeyConfig]) -> list[ApiKeyConfig]:
        return _check_distinct_keys(keys)


def _check_distinct_keys(keys: list[ApiKeyConfig]) -> list[ApiKeyConfig]:
    """Each key once, each label once: limits and metrics are counted per label."""
    digests: dict[bytes, int] = {}
    labels: dict[str, int] = {}
    for index, key in enumerate(keys):
        first = digests.setdefault(key.digest, index)
        if first != index:
            raise ValueError(f"api_keys[{index}] is the same key as api_keys[{first}]")
        first = labels.setdefault(key.label, index)
        if first != index:
            raise ValueError(f"api_keys[{index}] has the same name as api_keys[{first}]")
    return keys


def with_extra_keys(config: ProxyConfig, keys: list[str], source: str) -> ProxyConfig:
    """The config with plain keys from elsewhere (PROXY_API_KEYS) added to its `api_keys`."""
    if not keys:
        return config
    try:
        extra = [ApiKeyConfig.model_validate(key) for key in keys]
        merged = [*config.api_keys, *extra]
        _check_distinct_keys(merged)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {exc.errors()[0]['msg']}") from exc
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    return config.model_copy(update={"api_keys": merged})


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> ProxyConfig:
    """Read, expand and validate a config file; raise ConfigError naming file, model and field."""
    env = os.environ if environ is None else environ
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with a 'models' list")
    expanded = _expand(raw, env, path, raw, ())
    try:
        config = ProxyConfig.model_validate(expanded)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _describe_location(raw, first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from exc
    return _resolve_paths(config, path.parent)


def _resolve_paths(config: ProxyConfig, base: Path) -> ProxyConfig:
    """Tokenizer and TLS file paths are relative to the config file's folder."""
    models = [_model_paths(model, base) for model in config.models]
    return config.model_copy(update={"models": models})


def _model_paths(model: ModelConfig, base: Path) -> ModelConfig:
    update: dict[str, Any] = {}
    if model.tokenizer is not None and not model.tokenizer.is_absolute():
        update["tokenizer"] = base / model.tokenizer
    if model.tls is not None:
        update["tls"] = model.tls.relative_to(base)
    if any(deployment.tls is not None for deployment in model.deployments):
        update["deployments"] = [
            deployment.model_copy(update={"tls": deployment.tls.relative_to(base)})
            if deployment.tls is not None
            else deployment
            for deployment in model.deployments
        ]
    return model.model_copy(update=update) if update else model


def _expand(
    node: Any, env: Mapping[str, str], path: Path, root: Any, loc: tuple[str | int, ...]
) -> Any:
    if isinstance(node, str):
        return _expand_string(node, env, path, root, loc)
    if isinstance(node, dict):
        return {key: _expand(value, env, path, root, (*loc, key)) for key, value in node.items()}
    if isinstance(node, list):
        return [_expand(value, env, path, root, (*loc, i)) for i, value in enumerate(node)]
    return node


def _expand_string(
    text: str, env: Mapping[str, str], path: Path, root: Any, loc: tuple[str | int, ...]
) -> str:
    def substitute(match: re.Match[str]) -> str:
        name, fallback = match.group(1), match.group(2)
        value = env.get(name)
        if fallback is not None and not value:
            return fallback  # `:-` as in the shell and compose: unset or empty
        if value is not None:
            return value
        where = _describe_location(root, loc)
        raise ConfigError(f"{path}: {where}: environment variable {name} is not set")

    return _ENV_REF.sub(substitute, text)


def _describe_location(root: Any, loc: tuple[Any, ...]) -> str:
    """`models[1] (llama).timeout` from a validation location."""
    parts: list[str] = []
    node = root
    for key in loc:
        if isinstance(key, int):
            parts[-1] = f"{parts[-1]}[{key}]" if parts else f"[{key}]"
            node = node[key] if isinstance(node, list) and key < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                parts[-1] += f" ({node['name']})"
        else:
            parts.append(str(key))
            node = node.get(key) if isinstance(node, dict) else None
    return ".".join(parts) or "top level"
