"""Which upstream serves a model name: pre-built per-model state, resolved by one dict lookup.

A model's route holds its deployments (`app.deployments`), its template, its token counter and
its config, all built once at start-up and shared by every request.

A configured `name` wins, then a model's `aliases` (exact names, then glob patterns: app.aliases).
Otherwise, when a default upstream (`PROXY_API_BASE`) is set, any
other name passes through to it: `custom/<X>` (LiteLLM's convention) and plain `<X>` both reach
upstream model `<X>`. Otherwise the model is not found. Clients never choose the upstream URL.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from app.aliases import is_pattern, matches
from app.config import ConfigError, DeploymentConfig, ModelConfig, ProxyConfig
from app.deployments import Deployment, DeploymentGroup
from app.errors import ModelNotFound
from app.prompts import PromptTemplate, TemplateError, compile_template
from app.tokens import TokenCounter, load_counter
from app.upstream import UpstreamEndpoint
from app.upstream_network import NetworkPlanner

PASSTHROUGH_PREFIX = "custom/"


@dataclass(frozen=True, slots=True)
class ModelRoute:
    """Everything needed to serve one model, built once at start-up."""

    name: str
    upstream_model: str  # for deployments that do not name their own
    deployments: DeploymentGroup
    template: PromptTemplate
    counter: TokenCounter
    config: ModelConfig
    created: int


class Router:
    """Model name → route."""

    def __init__(self, routes: dict[str, ModelRoute], passthrough: ModelRoute | None) -> None:
        self._routes = routes
        self._passthrough = passthrough
        # Exact aliases resolve by the same lookup as names; patterns after them, in order.
        self._names = dict(routes)
        self._patterns: list[tuple[str, ModelRoute]] = []
        for route in routes.values():
            for alias in route.config.aliases:
                if is_pattern(alias):
                    self._patterns.append((alias, route))
                else:
                    self._names.setdefault(alias, route)

    @property
    def routes(self) -> list[ModelRoute]:
        """The configured models, in config order."""
        return list(self._routes.values())

    @property
    def passthrough(self) -> ModelRoute | None:
        """The route other names pass through to, when a default upstream is set."""
        return self._passthrough

    @property
    def listed_names(self) -> list[tuple[str, ModelRoute]]:
        """Every name `/v1/models` lists: the configured ones, then their exact aliases."""
        return list(self._names.items())

    def resolve(self, model: str) -> ModelRoute:
        """The route for a client's model name (a configured name, an alias, a pattern's
        match, or the passthrough upstream), or ModelNotFound. A route found by an alias is
        the configured model's own: its name is the configured one."""
        route = self._names.get(model)
        if route is not None:
            return route
        for pattern, route in self._patterns:
            if matches(pattern, model):
                return route
        if self._passthrough is not None:
            upstream = model.removeprefix(PASSTHROUGH_PREFIX)
            if upstream:
                # The same deployments: their health and load are shared by every name.
                return replace(self._passthrough, name=model, upstream_model=upstream)
        raise ModelNotFound(
            f"The model '{model}' does not exist or you do not have access to it.", param="model"
        )


def build_route(
    model: ModelConfig, *, source: str, index: int, network: NetworkPlanner | None = None
) -> ModelRoute:
    """Compile a model's template, load its tokenizer and decide how each deployment reaches
    its upstream (`network`; default: no proxy from the environment); ConfigError names what
    is wrong."""
    where = f"{source}: models[{index}] ({model.name})"
    try:
        template = compile_template(
            model.prompt_template, bos_token=model.bos_token, eos_token=model.eos_token
        )
    except TemplateError as exc:
        raise ConfigError(f"{where}.prompt_template: {exc}") from exc
    try:
        counter = load_counter(model.tokenizer)
    except Exception as exc:  # tokenizers raises its own exception types for bad files
        raise ConfigError(f"{where}.tokenizer: cannot load {model.tokenizer}: {exc}") from exc
    return ModelRoute(
        name=model.name,
        upstream_model=model.upstream_name,
        deployments=build_deployments(model, where, network or NetworkPlanner({})),
        template=template,
        counter=counter,
        config=model,
        created=int(time.time()),
    )


def build_deployments(model: ModelConfig, where: str, network: NetworkPlanner) -> DeploymentGroup:
    """A model's deployments; each one's unset fields take the model's values."""
    members = [
        build_deployment(model, index, deployment, where, network)
        for index, deployment in enumerate(model.all_deployments)
    ]
    return DeploymentGroup(
        members, model.routing, model.queue, model.name, has_fallbacks=bool(model.fallbacks)
    )


def build_deployment(
    model: ModelConfig,
    index: int,
    deployment: DeploymentConfig,
    where: str,
    network: NetworkPlanner,
) -> Deployment:
    """One deployment, with how it reaches its upstream (proxy, TLS) decided now."""
    own = f"{where}.deployments[{index}]"
    route = network.plan(
        deployment.api_base,
        proxy=(deployment.proxy, own) if deployment.proxy else (model.proxy, where),
        trust_env=model.trust_env if deployment.trust_env is None else deployment.trust_env,
        tls=(deployment.tls, own) if deployment.tls else (model.tls, where),
    )
    return Deployment(
        label=f"{model.name}[{index}]",
        endpoint=UpstreamEndpoint(
            url=deployment.api_base,
            headers={"content-type": "application/json", **model.headers, **deployment.headers},
            timeout=deployment.timeout or model.timeout,
            proxy=route.proxy,
            tls=route.tls,
        ),
        upstream_model=deployment.upstream_model,
        weight=deployment.weight,
        max_concurrency=deployment.max_concurrency or model.max_concurrency,
        cooldown=model.cooldown,
    )


def build_router(
    config: ProxyConfig,
    *,
    source: str,
    api_base: str | None,
    proxy_environment: Mapping[str, str] | None = None,
) -> Router:
    """All routes of a config, plus the passthrough route when a default upstream is set.
    `proxy_environment`: Settings.proxy_environment (HTTP(S)_PROXY, NO_PROXY), read once."""
    network = NetworkPlanner(proxy_environment or {})
    routes = {
        model.name: build_route(model, source=source, index=index, network=network)
        for index, model in enumerate(config.models)
    }
    passthrough = None
    if api_base is not None:
        try:
            default = ModelConfig(name="passthrough", api_base=api_base)
        except ValueError as exc:
            raise ConfigError(f"PROXY_API_BASE: {exc}") from exc
        passthrough = build_route(default, source="PROXY_API_BASE", index=0, network=network)
    return Router(routes, passthrough)


def demo_config(api_base: str) -> ProxyConfig:
    """The embedded default: model `demo` on the built-in mock upstream."""
    return ProxyConfig(models=[ModelConfig(name="demo", api_base=api_base, upstream_model="demo")])


def config_source(path: Path | None) -> str:
    return str(path) if path is not None else "(built-in config)"
