"""GET /v1/models and GET /v1/models/{id} (ids may contain '/')."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.handlers import json_response
from app.routing import ModelRoute
from app.state import StateDep

router = APIRouter()


def _model_object(route: ModelRoute, name: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": route.created,
        "owned_by": route.config.owned_by,
    }


@router.get("/v1/models", response_model=None)
async def list_models(request: Request, state: StateDep) -> Response:
    """The configured models the key may use and their exact aliases (patterns and
    passthrough names are served but not listed)."""
    key = state.keys.authenticate(request.scope)
    allowed = key.models if key is not None else None
    data = [
        _model_object(route, name)
        for name, route in state.router.listed_names
        if allowed is None or route.name in allowed
    ]
    return json_response({"object": "list", "data": data})


@router.get("/v1/models/{model_id:path}", response_model=None)
async def retrieve_model(model_id: str, request: Request, state: StateDep) -> Response:
    """One model, configured or reachable by passthrough; 404 otherwise, 403 if the key may
    not use it."""
    key = state.keys.authenticate(request.scope)
    route = state.router.resolve(model_id)
    if key is not None:
        key.check_model(route.name)
    return json_response(_model_object(route, model_id))
