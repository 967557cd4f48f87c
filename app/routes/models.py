"""GET /v1/models and GET /v1/models/{id} (ids may contain '/').

OpenAI's list by default; Anthropic's (`data` of `{type: "model", id, display_name,
created_at}`, `has_more`, `first_id`, `last_id`) when the request carries an
`anthropic-version` header, as Anthropic's SDK and Claude Code send it. Anthropic's paging
(`limit`, `after_id`, `before_id`) is honoured.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from app.handlers import json_response
from app.routing import ModelRoute
from app.state import StateDep

router = APIRouter()
ANTHROPIC_VERSION = b"anthropic-version"


def _model_object(route: ModelRoute, name: str) -> dict[str, Any]:
    return {
        "id": name,
        "object": "model",
        "created": route.created,
        "owned_by": route.config.owned_by,
    }


def _anthropic_model(route: ModelRoute, name: str) -> dict[str, Any]:
    created = datetime.fromtimestamp(route.created, UTC)
    return {
        "type": "model",
        "id": name,
        "display_name": name,
        "created_at": created.isoformat().replace("+00:00", "Z"),
    }


def _wants_anthropic(request: Request) -> bool:
    return any(name == ANTHROPIC_VERSION for name, _ in request.scope["headers"])


@router.get("/v1/models", response_model=None)
async def list_models(
    request: Request,
    state: StateDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    after_id: str | None = None,
    before_id: str | None = None,
) -> Response:
    """The configured models the key may use and their exact aliases (patterns and
    passthrough names are served but not listed); Anthropic's paged list when asked."""
    key = state.keys.authenticate(request.scope)
    allowed = key.models if key is not None else None
    listed = [
        (name, route)
        for name, route in state.router.listed_names
        if allowed is None or route.name in allowed
    ]
    if _wants_anthropic(request):
        return json_response(anthropic_page(listed, limit, after_id, before_id))
    return json_response({"object": "list", "data": [_model_object(r, n) for n, r in listed]})


def anthropic_page(
    listed: list[tuple[str, ModelRoute]], limit: int, after_id: str | None, before_id: str | None
) -> dict[str, Any]:
    """One page of Anthropic's model list: `limit` models after `after_id` (or the last
    `limit` before `before_id`); an id not in the list pages from the start (or the end)."""
    names = [name for name, _ in listed]
    start, end = 0, len(listed)
    if before_id in names:
        end = names.index(before_id)
        start = max(0, end - limit)
    else:
        if after_id in names:
            start = names.index(after_id) + 1
        end = min(len(listed), start + limit)
    data = [_anthropic_model(route, name) for name, route in listed[start:end]]
    more = end < len(listed) if before_id not in names else start > 0
    return {
        "data": data,
        "has_more": more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


@router.get("/v1/models/{model_id:path}", response_model=None)
async def retrieve_model(model_id: str, request: Request, state: StateDep) -> Response:
    """One model, configured or reachable by passthrough; 404 otherwise, 403 if the key may
    not use it."""
    key = state.keys.authenticate(request.scope)
    route = state.router.resolve(model_id)
    if key is not None:
        key.check_model(route.name)
    if _wants_anthropic(request):
        return json_response(_anthropic_model(route, model_id))
    return json_response(_model_object(route, model_id))
