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
    api_keys: ["sk-..."]

`${VAR}` (or `${VAR:-fallback}`) in any string is taken from the environment when the file is
loaded; an unset variable without a fallback is an error. Every error names the file, the model
and the field.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
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


class DeploymentConfig(_Strict):
    """One upstream serving a model. Unset fields take the model's values."""

    api_base: str
    weight: int = Field(default=1, ge=1, le=1000)
    upstream_model: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)  # added to (and over) the model's
    timeout: float | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1)

    _http_url = field_validator("api_base")(_check_http_url)
    _header_safe = field_validator("headers")(_check_headers)


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

    @field_validator("api_base")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value)

    _header_safe = field_validator("headers")(_check_headers)

    @model_validator(mode="after")
    def _one_upstream_form(self) -> ModelConfig:
        if (self.api_base is None) == (not self.deployments):
            raise ValueError("give either 'api_base' or a non-empty 'deployments' list")
        if self.name in self.fallbacks:
            raise ValueError("a model cannot be its own fallback")
        if self.max_tokens_cap is not None and self.defaults.max_tokens > self.max_tokens_cap:
            raise ValueError("defaults.max_tokens is above max_tokens_cap")
        return self

    @property
    def upstream_name(self) -> str:
        return self.upstream_model or self.name

    @property
    def all_deployments(self) -> list[DeploymentConfig]:
        """The deployments, with the single-`api_base` form as a list of one."""
        if self.api_base is not None:
            return [DeploymentConfig(api_base=self.api_base)]
        return self.deployments


class ProxyConfig(_Strict):
    """The whole file."""

    models: list[ModelConfig] = Field(default_factory=list)
    api_keys: list[str] = Field(default_factory=list)
    max_request_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_messages: int = Field(default=1000, ge=1)  # chat messages, or legacy prompts
    max_prompt_chars: int = Field(default=8_000_000, ge=1)  # text sent upstream, × n
    stream_keepalive_seconds: float = Field(default=10.0, gt=0)
    upstream_max_connections: int = Field(default=1000, ge=1)
    max_response_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    connect_timeout: float = Field(default=5.0, gt=0)

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
    """Tokenizer paths are relative to the config file's folder."""
    models = [
        model.model_copy(update={"tokenizer": base / model.tokenizer})
        if model.tokenizer is not None and not model.tokenizer.is_absolute()
        else model
        for model in config.models
    ]
    return config.model_copy(update={"models": models})


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
