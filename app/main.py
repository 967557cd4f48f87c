"""The app factory: config, shared upstream client, routes and error handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from app import __version__, gc_tuning
from app.auth import KeyChecker
from app.config import ProxyConfig, load_config, with_extra_keys
from app.dispatch import Dispatcher
from app.handlers import install_error_handlers
from app.ids import IdGenerator
from app.limits import LimitsPlan, plan_limits
from app.middleware import TelemetryMiddleware
from app.pool_waits import PoolWaitReporter
from app.protocols.anthropic.schemas import CountTokensRequest, MessagesRequest
from app.protocols.openai.schemas import ChatCompletionRequest, CompletionRequest
from app.protocols.responses.schemas import CreateResponse
from app.response_cache import build_response_cache
from app.response_store import open_response_store
from app.routes import chat, completions, health, messages, metrics, models, responses
from app.routes.fast_dispatch import FastDispatch
from app.routes.openapi import DocumentedPost, install_openapi
from app.routing import Router, build_router, config_source, demo_config
from app.settings import Settings
from app.state import ProxyState
from app.telemetry import Telemetry
from app.upstream import PooledUpstream, UpstreamClient

log = logging.getLogger("app")

UpstreamFactory = Callable[[ProxyConfig], UpstreamClient]

# The hot routes: plain Starlette endpoints, registered first so they match first.
_ANTHROPIC_ERRORS = 'An Anthropic error envelope {"type": "error", "error": {"type", "message"}}'
_GENERATION_ROUTES = [
    (
        DocumentedPost("/v1/chat/completions", ChatCompletionRequest, "Create a chat completion"),
        chat.create_chat_completion,
    ),
    (
        DocumentedPost("/v1/completions", CompletionRequest, "Create a text completion (legacy)"),
        completions.create_completion,
    ),
    (
        DocumentedPost("/v1/responses", CreateResponse, "Create a model response"),
        responses.create_response,
    ),
    (
        DocumentedPost(
            "/v1/messages", MessagesRequest, "Create a message (Anthropic)", _ANTHROPIC_ERRORS
        ),
        messages.create_message,
    ),
    (
        DocumentedPost(
            "/v1/messages/count_tokens",
            CountTokensRequest,
            "Count a message's tokens (Anthropic)",
            _ANTHROPIC_ERRORS,
        ),
        messages.count_message_tokens,
    ),
]


class ProxyApp(FastAPI):
    """FastAPI with a lean front door for HTTP requests.

    FastAPI wraps every request in its own layers (an error middleware, a body-size check, a
    telemetry hook, the middleware stack, an exit stack), which together cost about as much
    per request as the proxy's translation. Here every HTTP request goes first through
    `front` (the proxy's telemetry, CORS if configured, FastDispatch): the generation POSTs
    are answered there, everything else goes on into FastAPI's usual stack. Lifespan events
    go straight to FastAPI.
    """

    front: ASGIApp | None = None
    proxy: ProxyState | None = None  # set by the lifespan: what the routes serve with

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if front is None or scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await front(scope, receive, send)

    async def through_fastapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def resolve_config(settings: Settings) -> ProxyConfig:
    """The config file if there is one; the demo config when the CLI started the mock upstream."""
    if settings.config is not None:
        config = load_config(settings.config)
    elif settings.api_base is None and settings.demo_upstream is not None:
        config = demo_config(settings.demo_upstream)
    else:
        config = ProxyConfig()
    return with_extra_keys(config, settings.api_keys, "PROXY_API_KEYS")


def prepare(settings: Settings, config: ProxyConfig | None = None) -> tuple[ProxyConfig, Router]:
    """Load and check everything start-up needs; raises ConfigError on a bad config."""
    config = resolve_config(settings) if config is None else config
    router = build_router(
        config,
        source=config_source(settings.config),
        api_base=settings.api_base,
        proxy_environment=settings.proxy_environment,
    )
    return config, router


def _default_upstream(config: ProxyConfig) -> UpstreamClient:
    return PooledUpstream(
        max_connections=config.upstream_max_connections,
        max_response_bytes=config.max_response_bytes,
        connect_timeout=config.connect_timeout,
        slot_waits=PoolWaitReporter(),
    )


def create_app(
    settings: Settings | None = None,
    *,
    config: ProxyConfig | None = None,
    upstream_factory: UpstreamFactory = _default_upstream,
    tune_gc: bool = False,
) -> ProxyApp:
    """Build the ASGI app. The config is checked here, so a bad one fails before serving.

    `config` replaces the one the settings name (tests and embedding use it). `tune_gc` is for
    a process that exists to serve this app (the CLI): it changes process-wide GC settings.
    """
    settings = settings or Settings()
    config, router = prepare(settings, config)
    limits = plan_limits(config, settings.redis_url)

    telemetry = Telemetry(log_content=config.log_content)

    @asynccontextmanager
    async def lifespan(app: ProxyApp) -> AsyncIterator[None]:
        log.info(
            "models: %s; other names %s; client keys: %s",
            ", ".join(route.name for route in router.routes) or "none",
            f"pass through to {settings.api_base}" if settings.api_base else "are not found",
            len(config.api_keys) or "none (open)",
        )
        _log_access(config, limits, settings.workers, settings.redis_url)
        _log_proxies(router)
        limiter = limits.start() if limits is not None else None
        stored = config.response_store
        response_store = open_response_store(
            settings.redis_url,
            ttl=stored.ttl_seconds,
            max_entries=stored.max_entries,
            timeout=stored.redis_timeout,
            prefix=stored.key_prefix,
        )
        cache = build_response_cache(router.routes, settings.redis_url)
        if cache is not None:
            log.info("response cache: %s, for %s", cache.description, ", ".join(cache.models))
        upstream = upstream_factory(config)
        gc_follower = None
        if tune_gc:
            gc_tuning.tune_gc()
            gc_follower = gc_tuning.ThresholdFollower(telemetry.in_flight)
            gc_follower.start()
        app.proxy = ProxyState(
            config=config,
            router=router,
            upstream=upstream,
            dispatcher=Dispatcher(upstream),
            keys=KeyChecker(config.api_keys),
            fingerprint=f"fp_clp_{__version__.replace('.', '')}",
            ids=IdGenerator(),
            limiter=limiter,
            responses=response_store,
            cache=cache,
        )
        telemetry.start_flushing()
        try:
            yield
        finally:
            if gc_follower is not None:
                gc_follower.stop()
            telemetry.close()
            if cache is not None:
                await cache.aclose()
            await upstream.aclose()
            await response_store.aclose()
            if limiter is not None:
                await limiter.aclose()

    app = ProxyApp(
        title="custom-llm-proxy",
        version=__version__,
        description="OpenAI-compatible proxy for custom LLM API endpoints.",
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry hooks cost a check per request; the proxy has its own.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    for post, endpoint in _GENERATION_ROUTES:
        # POSTs are served by FastDispatch before the router; the route answers other methods
        # with 405 and keeps the app's route table complete.
        app.router.routes.append(Route(post.path, endpoint, methods=["POST"]))
    app.state.telemetry = telemetry
    for module in (models, health, metrics, responses):
        app.include_router(module.router)
    install_openapi(app, [post for post, _ in _GENERATION_ROUTES])
    install_error_handlers(app)
    front: ASGIApp = FastDispatch(
        app.through_fastapi,
        endpoints={post.path: endpoint for post, endpoint in _GENERATION_ROUTES},
    )
    if config.cors is not None:
        # Outside FastDispatch, so that preflights and answers of the generation routes get it.
        front = CORSMiddleware(front, **config.cors.model_dump())
    app.front = TelemetryMiddleware(front, telemetry=telemetry)
    return app


def create_app_from_env() -> ProxyApp:
    """Factory for `uvicorn --factory` (and every worker process): settings from PROXY_*."""
    return create_app(Settings(), tune_gc=True)


def _log_access(
    config: ProxyConfig, limits: LimitsPlan | None, workers: int, settings_redis_url: str | None
) -> None:
    """Say at start-up who may call and how much: an open proxy is worth a warning."""
    if not config.api_keys:
        log.warning(
            "no client API keys configured: the proxy is open to anyone who can reach it "
            "(set api_keys in the config or PROXY_API_KEYS)"
        )
    if settings_redis_url is None and workers > 1:
        log.warning(
            "stored responses (the Responses API's previous_response_id) are kept in each of "
            "the %d worker processes separately; set PROXY_REDIS_URL to share them",
            workers,
        )
    if limits is None:
        return
    where = limits.describe()
    log.info("rate limits: %s", where)
    if limits.redis_url is None and workers > 1:
        log.warning(
            "rate limits are counted in each of the %d worker processes separately, so a key "
            "gets up to %d times its limit; set PROXY_REDIS_URL to share one budget",
            workers,
            workers,
        )


def _log_proxies(router: Router) -> None:
    """Say which upstreams are reached through a forward proxy; its URL without credentials."""
    routes = [*router.routes, *([router.passthrough] if router.passthrough else [])]
    for route in routes:
        for deployment in route.deployments.members:
            endpoint = deployment.endpoint
            if endpoint.proxy is not None:
                log.info(
                    "%s reaches %s through the proxy %s",
                    deployment.label,
                    endpoint.url,
                    endpoint.proxy.display,
                )
