"""GET /metrics: the proxy's Prometheus metrics (app.metrics), every worker's added up.

Open, like /health, unless the config's `metrics.require_key` asks for a client key. A scrape
first moves this process's latest counts into the metric objects (app.telemetry), then
renders them in a worker thread: with several workers that means reading their files.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from app import metrics
from app.state import StateDep
from app.telemetry import Telemetry

router = APIRouter()


@router.get("/metrics", response_model=None, include_in_schema=False)
async def get_metrics(request: Request, state: StateDep) -> Response:
    if state.config.metrics.require_key:
        state.keys.authenticate(request.scope)
    telemetry: Telemetry = request.app.state.telemetry
    telemetry.flush()
    body = await asyncio.to_thread(metrics.exposition)
    return Response(body, media_type=metrics.CONTENT_TYPE)
