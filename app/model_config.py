"""A model's part of the config: its upstreams (one `api_base` or `deployments`), its template
and defaults, its resilience (retries, cooldown, queue), its network (proxy, TLS) and how it
writes tool calls and thoughts. The file as a whole, keys and limits: app.config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.output.types import ToolFormat
from app.proxy_url import parse_proxy

# chatml is the Hermes/Qwen family's template; other templates (and Jinja ones) default to hermes.
_TOOL_FORMAT_OF_TEMPLATE: dict[str, ToolFormat] = {
    "chatml": "hermes",
    "llama3": "llama3_json",
    "mistral": "mistral",
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplingDefaults(Strict):
    """Values sent upstream when the client does not give them."""

    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, ge=0.0, le=1.0)
    top_k: int = Field(default=40, ge=-1)


def _check_http_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _check_headers(value: dict[str, str]) -> dict[str, str]:
    for name, header in value.items():
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise ValueError(f"{name!r} is not a valid header name")
        if "\r" in header or "\n" in header:
            raise ValueError(f"the value of {name!r} contains a line break")
    return value


def _check_proxy_url(value: str | None) -> str | None:
    """A forward proxy URL that `app.proxy_url.parse_proxy` accepts; its message never
    repeats the value: it may hold a password."""
    if value is not None:
        parse_proxy(value)
    return value


class TLSConfig(Strict):
    """TLS to an https upstream: whose certificate to trust and which one to show it.
    Files are PEM; relative paths are relative to the config file's folder. Checked at start-up."""

    ca_file: Path | None = None  # CA certificates trusted instead of the system's
    cert_file: Path | None = None  # client certificate for mutual TLS (may hold the key too)
    key_file: Path | None = None  # its private key (unencrypted), when not in cert_file
    verify: bool = True  # false: the upstream's certificate is not checked at all

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TLSConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file needs cert_file")
        return self

    def relative_to(self, base: Path) -> TLSConfig:
        """The same settings with relative paths taken from `base`."""
        update = {
            name: base / path
            for name in ("ca_file", "cert_file", "key_file")
            if (path := getattr(self, name)) is not None and not path.is_absolute()
        }
        return self.model_copy(update=update) if update else self


class BatchingConfig(Strict):
    """Micro-batching (app.batching): concurrent requests that would send the same upstream
    call parameters go upstream as one call of up to `max_batch` prompts, sent when full or
    `max_wait_ms` after its first request (0: with only the requests already waiting)."""

    max_batch: int = Field(default=16, ge=1, le=4096)
    max_wait_ms: float = Field(default=5.0, ge=0, le=10_000)


class DeploymentConfig(Strict):
    """One upstream serving a model. Unset fields take the model's values."""

    api_base: str
    weight: int = Field(default=1, ge=1, le=1000)
    upstream_model: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)  # added to (and over) the model's
    timeout: float | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1)
    proxy: str | None = None  # see ModelConfig
    trust_env: bool | None = None
    tls: TLSConfig | None = None  # replaces the model's as a whole
    # This server's batch limits (needs the model's `batching`): see ModelConfig.batch_limits
    batching: BatchingConfig | None = None

    _http_url = field_validator("api_base")(_check_http_url)
    _header_safe = field_validator("headers")(_check_headers)
    _proxy_url = field_validator("proxy")(_check_proxy_url)


class CooldownConfig(Strict):
    """Circuit breaker: after `failures` failed requests in a row a deployment is skipped for
    `seconds`, then one probe request decides whether it is back."""

    failures: int = Field(default=3, ge=1)
    seconds: float = Field(default=10.0, gt=0)


class QueueConfig(Strict):
    """Requests waiting for a deployment below its `max_concurrency`: at most `size` wait, each
    at most `timeout` seconds; past either, the client gets 503 `overloaded`."""

    size: int = Field(default=1000, ge=0)
    timeout: float = Field(default=30.0, gt=0)


class CacheConfig(Strict):
    """The exact response cache (app.response_cache): a finished answer is kept `ttl` seconds,
    at most `max_entries` of them per model in memory (least recently used out first). Only
    answers at temperature 0 are kept unless `any_temperature`."""

    ttl: float = Field(default=600.0, gt=0)
    max_entries: int = Field(default=10_000, ge=1)
    any_temperature: bool = False


class ModelConfig(Strict):
    """One model clients can ask for by `name`: `api_base` or a list of `deployments`."""

    name: str = Field(min_length=1)
    # Other names clients may ask for: exact, or glob patterns like "claude-*" (app.aliases)
    aliases: list[str] = Field(default_factory=list)
    api_base: str | None = None
    deployments: list[DeploymentConfig] = Field(default_factory=list)
    routing: Literal["least-busy", "weighted"] = "least-busy"
    fallbacks: list[str] = Field(default_factory=list)
    max_retries: int = Field(default=2, ge=0, le=10)
    retry_read_timeouts: bool = False
    retry_backoff_seconds: float = Field(default=0.1, ge=0)
    retry_backoff_max_seconds: float = Field(default=2.0, ge=0)
    deadline: float = Field(default=600.0, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1)
    max_tokens_cap: int | None = Field(default=None, ge=1)  # a client asking more gets a 400
    # Send the client's own key upstream as `Authorization: Bearer <key>` (instead of keys in
    # `headers`): for upstreams that check the same keys as the proxy.
    forward_client_auth: bool = False
    queue: QueueConfig = QueueConfig()
    cooldown: CooldownConfig = CooldownConfig()
    upstream_model: str | None = None
    prompt_template: str = "raw"
    bos_token: str | None = None
    eos_token: str | None = None
    defaults: SamplingDefaults = SamplingDefaults()
    timeout: float = Field(default=300.0, gt=0)
    headers: dict[str, str] = Field(default_factory=dict)
    strip_prompt: Literal["auto", "always", "never"] = "auto"
    tokenizer: Path | None = None
    owned_by: str = "custom-llm-proxy"
    log_content: bool | None = None  # prompt and completion in the access log; None: top level's
    # Exact response cache (app.response_cache); None: off. `cache: true` takes the defaults.
    # Entries are the client key's own unless `cache_scope` is global (shared by every key).
    cache: CacheConfig | None = None
    cache_scope: Literal["key", "global"] = "key"
    rpm: int | None = Field(default=None, ge=1)  # for all keys together, per minute
    tpm: int | None = Field(default=None, ge=1)
    # How the upstream is reached (app.upstream_network): an explicit forward proxy, else the
    # environment's HTTPS_PROXY / HTTP_PROXY / NO_PROXY unless trust_env is false; TLS settings.
    proxy: str | None = None  # http://[user:password@]host:port
    trust_env: bool = True
    tls: TLSConfig | None = None
    # Agents (app.output, app.tool_prompts): how this model writes tool calls (None: from
    # prompt_template, see `tools_syntax`), whether it thinks in <think> tags first, and how
    # many times a missing or invalid tool call or JSON answer is asked for again.
    tool_format: ToolFormat | None = None
    reasoning: Literal["think_tags", "none"] = "none"
    output_retries: int = Field(default=1, ge=0, le=5)
    # Micro-batching of concurrent requests into one upstream call (app.batching); None: off.
    batching: BatchingConfig | None = None

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)

    _header_safe = field_validator("headers")(_check_headers)
    _proxy_url = field_validator("proxy")(_check_proxy_url)

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_switch(cls, value: object) -> object:
        if value is True:
            return {}
        return None if value is False else value

    @model_validator(mode="after")
    def _one_upstream_form(self) -> ModelConfig:
        if (self.api_base is None) == (not self.deployments):
            raise ValueError("give either 'api_base' or a non-empty 'deployments' list")
        if self.name in self.fallbacks:
            raise ValueError("a model cannot be its own fallback")
        if any(not alias.strip() for alias in self.aliases):
            raise ValueError("an alias cannot be empty")
        if self.forward_client_auth and any(
            name.lower() == "authorization"
            for headers in (self.headers, *(d.headers for d in self.deployments))
            for name in headers
        ):
            raise ValueError("forward_client_auth and an Authorization header exclude each other")
        if self.max_tokens_cap is not None and self.defaults.max_tokens > self.max_tokens_cap:
            raise ValueError("defaults.max_tokens is above max_tokens_cap")
        if self.batching is None and any(d.batching for d in self.deployments):
            raise ValueError("a deployment's 'batching' needs the model's 'batching' on")
        return self

    @property
    def batch_limits(self) -> BatchingConfig | None:
        """The batching every deployment can take (None: off). A deployment's `batching`
        takes the model's values for the fields it leaves out; a batch may go to any of the
        model's deployments (a retry moves it), so each limit is the smallest of theirs."""
        model = self.batching
        if model is None:
            return None
        own = [d.batching for d in self.deployments if d.batching is not None]
        if not own:
            return model
        every = [
            (
                b.max_batch if "max_batch" in b.model_fields_set else model.max_batch,
                b.max_wait_ms if "max_wait_ms" in b.model_fields_set else model.max_wait_ms,
            )
            for b in own
        ]
        if len(own) < len(self.deployments):
            every.append((model.max_batch, model.max_wait_ms))
        return BatchingConfig.model_construct(  # each value was checked already
            max_batch=min(size for size, _ in every),
            max_wait_ms=min(wait for _, wait in every),
        )

    @property
    def upstream_name(self) -> str:
        return self.upstream_model or self.name

    @property
    def tools_syntax(self) -> ToolFormat:
        """`tool_format`, or the one the template's model family was trained on."""
        if self.tool_format is not None:
            return self.tool_format
        return _TOOL_FORMAT_OF_TEMPLATE.get(self.prompt_template, "hermes")

    @property
    def all_deployments(self) -> list[DeploymentConfig]:
        """The deployments, with the single-`api_base` form as a list of one."""
        if self.api_base is not None:
            return [DeploymentConfig(api_base=self.api_base)]
        return self.deployments
