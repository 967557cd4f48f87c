"""POST /v1/messages and POST /v1/messages/count_tokens: Anthropic's Messages API.

The same way in as chat (key, body, model, limits) and the same way out (app.serving), with
Anthropic's request, answer and stream (app.protocols.anthropic). A key may come as
`x-api-key` or `Authorization: Bearer` (app.auth); the `anthropic-version` and
`anthropic-beta` headers and the `?beta=true` query are accepted and change nothing. Errors
on these paths are in Anthropic's envelope (app.handlers).
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from app.generation import plan_generation
from app.handlers import json_response
from app.protocols.anthropic.door import AnthropicDoor
from app.protocols.anthropic.schemas import CountTokensRequest, MessagesRequest
from app.protocols.anthropic.translate import to_ask
from app.routes._request import allowed_route, authorized_body, serve_job
from app.serving import Answer
from app.tokens import LARGE_TEXT
from app.translate import check_count, check_prompt_size


async def create_message(request: Request) -> Answer:
    """A message (streamed or not) from the model's custom endpoint."""
    state, key, body = await authorized_body(request, MessagesRequest)
    route = allowed_route(state, key, body.model)
    check_count(len(body.messages), state.config.max_messages, "messages", "messages")
    job = plan_generation(to_ask(body), route)
    return await serve_job(
        request,
        state,
        key,
        job,
        prompt_param="messages",
        stream=bool(body.stream),
        door=AnthropicDoor(state.ids.next_hex(), body.model),
    )


async def count_message_tokens(request: Request) -> Response:
    """The tokens of the prompt the same messages request would send: counted by the model's
    tokenizer when it names one, else by the documented estimate (app.tokens), as `usage`
    counts them."""
    state, key, body = await authorized_body(request, CountTokensRequest)
    route = allowed_route(state, key, body.model)
    check_count(len(body.messages), state.config.max_messages, "messages", "messages")
    job = plan_generation(to_ask(body), route)
    check_prompt_size(job.counted_prompts, state.config.max_prompt_chars, "messages")
    counter = route.counter
    tokens = 0
    for prompt in job.counted_prompts:
        if counter.exact and len(prompt) > LARGE_TEXT:
            # a real tokenizer takes seconds on megabytes: off the event loop (it frees the GIL)
            tokens += await asyncio.to_thread(counter.count, prompt)
        else:
            tokens += counter.count(prompt)
    return json_response({"input_tokens": tokens})
