"""GET /health: liveness (the process serves requests); no auth, no upstream call."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from app.handlers import json_response

router = APIRouter()


@router.get("/health", response_model=None)
async def get_health() -> Response:
    return json_response({"status": "ok"})
