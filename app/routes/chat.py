"""POST /v1/chat/completions."""

from __future__ import annotations

from starlette.requests import Request

from app.errors import InvalidRequest
from app.prompts import PromptRenderError
from app.routes._request import authorized_body
from app.schemas.openai import ChatCompletionRequest
from app.serving import Answer, Generation, serve_generation
from app.streaming import chat_chunks
from app.translate import (
    chat_max_tokens,
    check_chat_features,
    flatten_messages,
    resolve_sampling,
    stop_sequences,
    to_chat_completion,
)


async def create_chat_completion(request: Request) -> Answer:
    """Chat completion (streamed or not) from the model's custom endpoint."""
    state, chat = await authorized_body(request, ChatCompletionRequest)
    route = state.router.resolve(chat.model)
    check_chat_features(chat)
    try:
        prompt = route.template.render(flatten_messages(chat.messages))
    except PromptRenderError as exc:
        raise InvalidRequest(f"The messages cannot be rendered: {exc}", param="messages") from exc
    sampling = resolve_sampling(chat, route.config.defaults, chat_max_tokens(chat))
    job = Generation(
        route=route,
        prompts=[prompt] * (chat.n or 1),
        sampling=sampling,
        stops=stop_sequences(chat.stop),
        counted_prompts=[prompt],
        chat=True,
    )
    return await serve_generation(
        state,
        job,
        request_id=request.scope["request_id"],
        client=chat,
        id_prefix="chatcmpl",
        build_answer=to_chat_completion,
        build_chunks=chat_chunks,
    )
