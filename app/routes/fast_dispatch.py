"""Pure ASGI dispatch of the generation routes, ahead of FastAPI.

POST /v1/chat/completions and /v1/completions carry nearly all of the proxy's traffic. This
layer of the app's front door (app.main.ProxyApp) sends them straight to their endpoints,
skipping FastAPI's own layers, the router's matching, Starlette's exception middleware and
FastAPI's exit stack — layers that cost as much per request as the proxy's own translation.
What it skips, it provides: a ProxyError becomes its envelope here; anything unexpected
propagates to TelemetryMiddleware, which answers a 500 envelope. Every other request (and other
methods on these paths, which get 405) goes through FastAPI as usual.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import ProxyError
from app.handlers import proxy_error_response

Endpoint = Callable[[Request], Awaitable[ASGIApp]]


class FastDispatch:
    def __init__(self, app: ASGIApp, *, endpoints: dict[str, Endpoint]) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = (
            self.endpoints.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            answer = await endpoint(request)
            await answer(scope, receive, send)
        except ProxyError as exc:  # raised before anything was sent (see KeepAliveSSE)
            await proxy_error_response(request, exc)(scope, receive, send)
