"""OpenAI's Responses API: POST /v1/responses, GET and DELETE /v1/responses/{id}, and
GET /v1/responses/{id}/input_items.

A response is stored (`store`, true unless the client says false) under the label of the key
that made it, before it is answered: the next request's `previous_response_id` continues from
it, and only that key can read, continue or delete it. Another key's id, an unknown, expired
or unstored one is a 400 `previous_response_not_found` when continued, a 404 when read.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from app.auth import ApiKey
from app.errors import InvalidRequest, NotFound, StoreUnavailable, UnsupportedParameter
from app.generation import plan_generation
from app.handlers import json_response
from app.protocols.responses.answers import ResponseHead
from app.protocols.responses.door import ResponsesDoor
from app.protocols.responses.schemas import CreateResponse
from app.protocols.responses.translate import check_features, to_ask
from app.response_store import ResponseStore, StoredResponse
from app.response_store import StoreUnavailable as BackendDown
from app.routes._request import allowed_route, authorized_body, serve_job
from app.serving import Answer
from app.state import ProxyState, StateDep
from app.translate import check_count

router = APIRouter()


async def create_response(request: Request) -> Answer:
    """A model response (streamed or not) from the model's custom endpoint."""
    state, key, body = await authorized_body(request, CreateResponse)
    check_features(body)
    route = allowed_route(state, key, body.model)
    owner = _owner(key)
    earlier = await _earlier_turns(state.responses, owner, body.previous_response_id)
    ask = to_ask(body, earlier)
    check_count(len(ask.turns), state.config.max_messages, "input", "input items and turns")
    job = plan_generation(ask, route)
    head = ResponseHead(
        id=f"resp_{state.ids.next_hex()}", created_at=int(time.time()), model=body.model
    )
    save = partial(_save, state.responses, owner) if body.store is not False else None
    return await serve_job(
        request,
        state,
        key,
        job,
        prompt_param="input",
        stream=bool(body.stream),
        door=ResponsesDoor(head, body, earlier, save),
    )


@router.get("/v1/responses/{response_id}", response_model=None)
async def retrieve_response(response_id: str, request: Request, state: StateDep) -> Response:
    """A stored response of the caller's key, as it was answered; 404 for any other."""
    key = state.keys.authenticate(request.scope)
    if request.query_params.get("stream", "false").lower() not in ("false", "0"):
        raise UnsupportedParameter(
            "streaming a stored response again is not supported: retrieve it without 'stream'",
            param="stream",
        )
    stored = await _stored(state, key, response_id)
    return json_response(stored.response)


@router.get("/v1/responses/{response_id}/input_items", response_model=None)
async def list_input_items(
    response_id: str,
    request: Request,
    state: StateDep,
    limit: int = 20,
    order: str = "desc",
    after: str | None = None,
) -> Response:
    """The input items of a stored response of the caller's key, a page at a time (newest
    first unless `order=asc`, as OpenAI's)."""
    key = state.keys.authenticate(request.scope)
    if not 1 <= limit <= 100:
        raise InvalidRequest("'limit' must be between 1 and 100.", param="limit")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be 'asc' or 'desc'.", param="order")
    items = list((await _stored(state, key, response_id)).input_items)
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequest(f"No input item with id '{after}'.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return json_response(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else "",
            "last_id": page[-1]["id"] if page else "",
            "has_more": len(items) > limit,
        }
    )


@router.delete("/v1/responses/{response_id}", response_model=None)
async def delete_response(response_id: str, request: Request, state: StateDep) -> Response:
    """Forget a stored response of the caller's key; 404 for any other."""
    key = state.keys.authenticate(request.scope)
    try:
        deleted = await state.responses.delete(_owner(key), response_id)
    except BackendDown as exc:
        raise StoreUnavailable(str(exc)) from exc
    if not deleted:
        raise _not_found(response_id)
    return json_response({"id": response_id, "object": "response", "deleted": True})


def _owner(key: ApiKey | None) -> str:
    """Whose responses these are: the key's label ("" when the proxy is open)."""
    return key.label if key is not None else ""


async def _stored(state: ProxyState, key: ApiKey | None, response_id: str) -> StoredResponse:
    try:
        stored = await state.responses.get(_owner(key), response_id)
    except BackendDown as exc:
        raise StoreUnavailable(str(exc)) from exc
    if stored is None:
        raise _not_found(response_id)
    return stored


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")


async def _earlier_turns(
    store: ResponseStore, owner: str, response_id: str | None
) -> list[dict[str, Any]] | None:
    """The conversation through the response a request continues; None when it continues
    none. Asked before generating: a wrong id costs no upstream call."""
    if response_id is None:
        return None
    try:
        stored = await store.get(owner, response_id)
    except BackendDown as exc:
        raise StoreUnavailable(str(exc)) from exc
    if stored is None:
        raise InvalidRequest(
            f"Previous response with id '{response_id}' not found.",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return stored.turns


async def _save(
    store: ResponseStore,
    owner: str,
    response: dict[str, Any],
    turns: list[dict[str, Any]],
    items: list[dict[str, Any]],
) -> None:
    try:
        await store.put(owner, StoredResponse(response=response, turns=turns, input_items=items))
    except BackendDown as exc:
        raise StoreUnavailable(str(exc)) from exc
