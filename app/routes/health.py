"""Health: GET /health (liveness) and GET /health/ready (can the proxy serve a model now?).

Neither needs a key nor calls an upstream. `/health` is 200 while the process serves requests.
`/health/ready` reports every deployment's state (healthy, cooling_down, probing), its load and
its counters, and answers 503 while every deployment of every model is cooling down, so a load
balancer stops sending traffic to a proxy whose upstreams are all down. It reports the
upstreams' health: a model without fallbacks still sends requests to its cooling deployments
(`app.deployments`), and the first that succeeds makes the proxy ready again.
"""

from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.responses import Response

from app.handlers import json_response
from app.state import StateDep

router = APIRouter()


@router.get("/health", response_model=None)
async def get_health() -> Response:
    return json_response({"status": "ok"})


@router.get("/health/ready", response_model=None)
async def get_ready(state: StateDep) -> Response:
    now = time.monotonic()
    routes = list(state.router.routes)
    if state.router.passthrough is not None:
        routes.append(state.router.passthrough)
    models = [
        {
            "model": route.name,
            "ready": route.deployments.can_serve(now),
            "waiting": route.deployments.waiting,
            "deployments": route.deployments.snapshot(now),
        }
        for route in routes
    ]
    ready = any(model["ready"] for model in models)
    return json_response(
        {"status": "ready" if ready else "unavailable", "models": models},
        200 if ready else 503,
    )
