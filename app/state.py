"""What a running proxy holds, built once in the app's lifespan and reached via dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from app.auth import KeyChecker
from app.config import ProxyConfig
from app.dispatch import Dispatcher
from app.ids import IdGenerator
from app.limits import Limiter
from app.response_cache import ResponseCache
from app.response_store import MemoryResponseStore, ResponseStore
from app.routing import Router
from app.upstream import UpstreamClient


@dataclass(frozen=True, slots=True)
class ProxyState:
    config: ProxyConfig
    router: Router
    upstream: UpstreamClient
    dispatcher: Dispatcher
    keys: KeyChecker
    fingerprint: str
    ids: IdGenerator
    limiter: Limiter | None = None  # None: no limits configured, nothing counted
    cache: ResponseCache | None = None  # None: no model has a response cache
    # The Responses API's stored responses (app.response_store; main.py opens the configured one)
    responses: ResponseStore = field(
        default_factory=lambda: MemoryResponseStore(max_entries=1000, ttl=86400.0)
    )


def proxy_state(request: Request) -> ProxyState:
    """The running proxy's state (for the hot routes, which skip dependency injection).

    A plain attribute of the app (app.main.ProxyApp.proxy): Starlette's `app.state` resolves
    attributes through `__getattr__`, which costs more than the lookup is worth per request."""
    state: ProxyState = request.scope["app"].proxy
    return state


async def get_state(request: Request) -> ProxyState:
    return proxy_state(request)


StateDep = Annotated[ProxyState, Depends(get_state)]
