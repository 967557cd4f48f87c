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
and the field.
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
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from app.output.types import ToolFormat
from app.proxy_url import parse_proxy

# chatml is the Hermes/Qwen family's template; other templates (and Jinja ones) default to hermes.
_TOOL_FORMAT_OF_TEMPLATE: dict[str, ToolFormat] = {
    "chatml": "hermes",
    "llama3": "llama3_json",
    "mistral": "mistral",
}

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """The config cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SamplingDefaults(_Strict):
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


class TLSConfig(_Strict):
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


class DeploymentConfig(_Strict):
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

    _http_url = field_validator("api_base")(_check_http_url)
    _header_safe = field_validator("headers")(_check_headers)
    _proxy_url = field_validator("proxy")(_check_proxy_url)


class CooldownConfig(_Strict):
    """Circuit breaker: after `failures` failed requests in a row a deployment is skipped for
    `seconds`, then one probe request decides whether it is back."""

    failures: int = Field(default=3, ge=1)
    seconds: float = Field(default=10.0, gt=0)


class QueueConfig(_Strict):
    """Requests waiting for a deployment below its `max_concurrency`: at most `size` wait, each
    at most `timeout` seconds; past either, the client gets 503 `overloaded`."""

    size: int = Field(default=1000, ge=0)
    timeout: float = Field(default=30.0, gt=0)


class ModelConfig(_Strict):
    """One model clients can ask for by `name`: `api_base` or a list of `deployments`."""

    name: str = Field(min_length=1)
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

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)

    _header_safe = field_validator("headers")(_check_headers)
    _proxy_url = field_validator("proxy")(_check_proxy_url)

    @model_validator(mode="after")
    def _one_upstream_form(self) -> ModelConfig:
        if (self.api_base is None) == (not self.deployments):
            raise ValueError("give either 'api_base' or a non-empty 'deployments' list")
        if self.name in self.fallbacks:
            raise ValueError("a model cannot be its own fallback")
        if self.forward_client_auth and any(
            name.lower() == "authorization"
            for headers in (self.headers, *(d.headers for d in self.deployments))
            for name in headers
        ):
            raise ValueError("forward_client_auth and an Authorization header exclude each other")
        if self.max_tokens_cap is not None and self.defaults.max_tokens > self.max_tokens_cap:
            raise ValueError("defaults.max_tokens is above max_tokens_cap")
        return self

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


_SHA256_KEY = re.compile(r"sha256:[0-9a-fA-F]{64}")
_KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,63}")


class ApiKeyConfig(_Strict):
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


class RateLimitConfig(_Strict):
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
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
]


class CorsConfig(_Strict):
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


class MetricsConfig(_Strict):
    """GET /metrics: open to whoever reaches the proxy unless `require_key`."""

    require_key: bool = False


class ProxyConfig(_Strict):
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
